// SPDX-License-Identifier: BSD-2-Clause
//! A flattened device tree (devicetree specification v0.4, chapter 5):
//! find a property by node path, rewrite its value in place.
//!
//! The VMM does not build the guest's device tree: a DTS in the repository
//! (or yours) is compiled with `dtc`, with placeholder values of the right
//! size where the VMM knows better (`/memory`'s `reg`, `/chosen`'s
//! `linux,initrd-start` and `linux,initrd-end`). The loader overwrites
//! those values and nothing else, so the blob's layout never changes.
//!
//! Every offset in the blob is checked: a truncated, misaligned or
//! self-contradicting blob is an [`FdtError`], never a panic or a read
//! outside it. Walking is `O(blob size)`.
//!
//! ```
//! # let blob = linux_boot::fdt::tests_support::chosen_blob();
//! use linux_boot::fdt::{self, Fdt};
//! let mut blob = blob;
//! fdt::set_u64(&mut blob, "/chosen", "linux,initrd-start", 0x4400_0000).unwrap();
//! let fdt = Fdt::new(&blob).unwrap();
//! assert_eq!(fdt.u64_property("/chosen", "linux,initrd-start"), Ok(0x4400_0000));
//! ```

use core::fmt;

/// The blob's first word.
pub const MAGIC: u32 = 0xd00d_feed;
/// Bytes of header this reader needs (version 17 has 40).
pub const HEADER_LEN: usize = 40;

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// A blob this reader cannot use, or a property it cannot find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Shorter than the header, or than the header's `totalsize`.
    Truncated,
    /// The first word is not `0xd00dfeed`.
    BadMagic(u32),
    /// A version older than 16 (before 2008's layout).
    OldVersion(u32),
    /// The structure or strings block lies outside `totalsize`, or a
    /// token, name or value runs past the structure block.
    BadBlock,
    /// A token that is not one of the five the format has.
    BadToken(u32),
    /// Nodes do not nest properly (`END_NODE` without a node, no `END`).
    BadNesting,
    /// No node at that path, or no such property in it.
    NotFound,
    /// The property exists but its value is not the size asked for.
    WrongSize {
        /// Bytes the value has.
        has: usize,
        /// Bytes the caller asked to read or write.
        want: usize,
    },
    /// The blob is larger than this guest can take (2 MiB, Linux's limit).
    TooLarge,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtError::Truncated => f.write_str("device tree blob is truncated"),
            FdtError::BadMagic(m) => write!(f, "not a device tree blob (magic {m:#010x})"),
            FdtError::OldVersion(v) => write!(f, "device tree blob version {v} is older than 16"),
            FdtError::BadBlock => f.write_str("device tree blob has a block or entry outside it"),
            FdtError::BadToken(t) => write!(f, "device tree blob has an unknown token {t:#x}"),
            FdtError::BadNesting => f.write_str("device tree blob's nodes do not nest"),
            FdtError::NotFound => f.write_str("device tree has no such node or property"),
            FdtError::WrongSize { has, want } => {
                write!(f, "device tree property has {has} bytes, {want} expected")
            }
            FdtError::TooLarge => f.write_str("device tree blob is larger than 2 MiB"),
        }
    }
}

/// Linux's limit on the blob it is handed (`booting.rst`).
pub const MAX_SIZE: usize = 2 << 20;

fn be32(blob: &[u8], at: usize) -> Result<u32, FdtError> {
    let end = at.checked_add(4).ok_or(FdtError::BadBlock)?;
    let bytes = blob.get(at..end).ok_or(FdtError::BadBlock)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A checked, read-only view of a blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: (usize, usize),
    strings: (usize, usize),
}

/// Where a property's value lies in the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property {
    /// Offset of the value from the blob's start.
    pub offset: usize,
    /// Bytes of value.
    pub len: usize,
}

/// Whether node `name` is what path component `want` names: the same, or
/// `want` without a unit address matching `name`'s part before the `@`.
fn name_matches(name: &[u8], want: &[u8]) -> bool {
    if name == want {
        return true;
    }
    !want.contains(&b'@') && name.split(|b| *b == b'@').next() == Some(want)
}

/// The NUL-terminated string at `at`, not reaching `limit`.
fn c_str(blob: &[u8], at: usize, limit: usize) -> Result<&[u8], FdtError> {
    let rest = blob.get(at..limit).ok_or(FdtError::BadBlock)?;
    let len = rest
        .iter()
        .position(|b| *b == 0)
        .ok_or(FdtError::BadBlock)?;
    rest.get(..len).ok_or(FdtError::BadBlock)
}

fn align4(n: usize) -> Result<usize, FdtError> {
    n.checked_add(3).map(|n| n & !3).ok_or(FdtError::BadBlock)
}

impl<'a> Fdt<'a> {
    /// Checks the header and the blocks' bounds. The blob may be longer
    /// than its `totalsize` (a page-rounded region); the rest is ignored.
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        if blob.len() < HEADER_LEN {
            return Err(FdtError::Truncated);
        }
        let magic = be32(blob, 0)?;
        if magic != MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let total = be32(blob, 4)? as usize;
        if total > MAX_SIZE {
            return Err(FdtError::TooLarge);
        }
        if total < HEADER_LEN || total > blob.len() {
            return Err(FdtError::Truncated);
        }
        let version = be32(blob, 20)?;
        if version < 16 {
            return Err(FdtError::OldVersion(version));
        }
        let block = |off_at: usize, size_at: usize| -> Result<(usize, usize), FdtError> {
            let start = be32(blob, off_at)? as usize;
            let size = be32(blob, size_at)? as usize;
            let end = start.checked_add(size).ok_or(FdtError::BadBlock)?;
            if end > total || start < HEADER_LEN {
                return Err(FdtError::BadBlock);
            }
            Ok((start, end))
        };
        let structs = block(8, 36)?;
        let strings = block(12, 32)?;
        if structs.0 % 4 != 0 {
            return Err(FdtError::BadBlock);
        }
        Ok(Fdt {
            blob: &blob[..total],
            structs,
            strings,
        })
    }

    /// The blob's `totalsize`: the bytes to hand the guest.
    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// Finds property `name` of the node at `path` ("/" for the root,
    /// "/chosen", "/memory" for the first `memory@...` node). The whole
    /// structure block is walked (and checked) up to the property.
    pub fn property(&self, path: &str, name: &str) -> Result<Property, FdtError> {
        let path = path.as_bytes();
        if path.first() != Some(&b'/') {
            return Err(FdtError::NotFound);
        }
        let components = || path[1..].split(|b| *b == b'/').filter(|c| !c.is_empty());
        let want_depth = components().count() + 1;
        let (mut at, end) = self.structs;
        // `depth`: nodes open; `matched`: how many of them lie on `path`
        // (the root always does). The node at `depth` is on the path
        // exactly when `matched == depth`.
        let (mut depth, mut matched) = (0usize, 0usize);
        loop {
            let token = be32(self.blob, at)?;
            at += 4;
            if at > end {
                return Err(FdtError::BadBlock);
            }
            match token {
                BEGIN_NODE => {
                    let node = c_str(self.blob, at, end)?;
                    at = align4(at + node.len() + 1)?;
                    depth += 1;
                    let on_path = matched + 1 == depth
                        && match depth {
                            1 => true,
                            d => components()
                                .nth(d - 2)
                                .is_some_and(|c| name_matches(node, c)),
                        };
                    if on_path {
                        matched = depth;
                    }
                }
                END_NODE => {
                    if depth == 0 {
                        return Err(FdtError::BadNesting);
                    }
                    if matched == depth {
                        matched -= 1;
                    }
                    depth -= 1;
                }
                PROP => {
                    let len = be32(self.blob, at)? as usize;
                    let name_offset = be32(self.blob, at + 4)? as usize;
                    let value = at + 8;
                    let value_end = value.checked_add(len).ok_or(FdtError::BadBlock)?;
                    if value_end > end {
                        return Err(FdtError::BadBlock);
                    }
                    if matched == depth && depth == want_depth {
                        let at_name = self
                            .strings
                            .0
                            .checked_add(name_offset)
                            .ok_or(FdtError::BadBlock)?;
                        if c_str(self.blob, at_name, self.strings.1)? == name.as_bytes() {
                            return Ok(Property { offset: value, len });
                        }
                    }
                    at = align4(value_end)?;
                }
                NOP => {}
                END => {
                    return Err(if depth == 0 {
                        FdtError::NotFound
                    } else {
                        FdtError::BadNesting
                    });
                }
                other => return Err(FdtError::BadToken(other)),
            }
            if at >= end {
                return Err(FdtError::BadNesting);
            }
        }
    }

    /// The value of a property of exactly `N` bytes.
    pub fn bytes<const N: usize>(&self, path: &str, name: &str) -> Result<[u8; N], FdtError> {
        let p = self.property(path, name)?;
        if p.len != N {
            return Err(FdtError::WrongSize {
                has: p.len,
                want: N,
            });
        }
        let mut value = [0u8; N];
        let src = self
            .blob
            .get(p.offset..p.offset + N)
            .ok_or(FdtError::BadBlock)?;
        value.copy_from_slice(src);
        Ok(value)
    }

    /// A one-cell (4-byte) property.
    pub fn u32_property(&self, path: &str, name: &str) -> Result<u32, FdtError> {
        self.bytes::<4>(path, name).map(u32::from_be_bytes)
    }

    /// A two-cell (8-byte) property.
    pub fn u64_property(&self, path: &str, name: &str) -> Result<u64, FdtError> {
        self.bytes::<8>(path, name).map(u64::from_be_bytes)
    }

    /// A `reg` of one (address, size) pair with two cells each: 16 bytes.
    pub fn reg(&self, path: &str) -> Result<(u64, u64), FdtError> {
        let v = self.bytes::<16>(path, "reg")?;
        let (a, s) = v.split_at(8);
        let word = |b: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            u64::from_be_bytes(w)
        };
        Ok((word(a), word(s)))
    }
}

/// Overwrites property `name` of node `path` with `value`, which must be
/// exactly as long as the value there (the blob's layout never changes).
pub fn set(blob: &mut [u8], path: &str, name: &str, value: &[u8]) -> Result<(), FdtError> {
    let p = Fdt::new(blob)?.property(path, name)?;
    if p.len != value.len() {
        return Err(FdtError::WrongSize {
            has: p.len,
            want: value.len(),
        });
    }
    blob.get_mut(p.offset..p.offset + p.len)
        .ok_or(FdtError::BadBlock)?
        .copy_from_slice(value);
    Ok(())
}

/// Overwrites a two-cell property.
pub fn set_u64(blob: &mut [u8], path: &str, name: &str, value: u64) -> Result<(), FdtError> {
    set(blob, path, name, &value.to_be_bytes())
}

/// Overwrites a `reg` of one (address, size) pair of two cells each.
pub fn set_reg(blob: &mut [u8], path: &str, address: u64, size: u64) -> Result<(), FdtError> {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&address.to_be_bytes());
    value[8..].copy_from_slice(&size.to_be_bytes());
    set(blob, path, "reg", &value)
}

/// Builds small blobs for examples and tests (not a general writer).
#[doc(hidden)]
pub mod tests_support {
    /// A builder of structure-block tokens.
    pub struct Builder {
        structs: [u8; 1024],
        strings: [u8; 256],
        s: usize,
        t: usize,
    }

    impl Default for Builder {
        fn default() -> Self {
            Builder {
                structs: [0; 1024],
                strings: [0; 256],
                s: 0,
                t: 0,
            }
        }
    }

    impl Builder {
        fn word(&mut self, w: u32) {
            self.structs[self.s..self.s + 4].copy_from_slice(&w.to_be_bytes());
            self.s += 4;
        }
        fn bytes(&mut self, b: &[u8]) {
            self.structs[self.s..self.s + b.len()].copy_from_slice(b);
            self.s = (self.s + b.len() + 3) & !3;
        }
        /// Opens a node.
        pub fn begin(&mut self, name: &str) -> &mut Self {
            self.word(super::BEGIN_NODE);
            let mut n = [0u8; 64];
            n[..name.len()].copy_from_slice(name.as_bytes());
            self.bytes(&n[..name.len() + 1]);
            self
        }
        /// Closes a node.
        pub fn end(&mut self) -> &mut Self {
            self.word(super::END_NODE);
            self
        }
        /// Adds a property.
        pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let offset = self.t;
            self.strings[self.t..self.t + name.len()].copy_from_slice(name.as_bytes());
            self.t += name.len() + 1;
            self.word(super::PROP);
            self.word(value.len() as u32);
            self.word(offset as u32);
            self.bytes(value);
            self
        }
        /// The blob: header, empty reservation map, structs, strings.
        pub fn finish(&mut self) -> [u8; 2048] {
            self.word(super::END);
            let mut blob = [0u8; 2048];
            let (rsv, structs) = (40, 56);
            let strings = structs + self.s;
            let total = strings + self.t;
            let header = [
                super::MAGIC,
                total as u32,
                structs as u32,
                strings as u32,
                rsv as u32,
                17,
                16,
                0,
                self.t as u32,
                self.s as u32,
            ];
            for (i, w) in header.iter().enumerate() {
                blob[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            blob[structs..strings].copy_from_slice(&self.structs[..self.s]);
            blob[strings..total].copy_from_slice(&self.strings[..self.t]);
            blob
        }
    }

    /// A root with a `memory@40000000` and a `/chosen` holding zeroed
    /// initrd properties.
    pub fn chosen_blob() -> [u8; 2048] {
        Builder::default()
            .begin("")
            .prop("#address-cells", &2u32.to_be_bytes())
            .begin("memory@40000000")
            .prop("device_type", b"memory\0")
            .prop("reg", &[0; 16])
            .end()
            .begin("chosen")
            .prop("bootargs", b"console=ttyAMA0\0")
            .prop("linux,initrd-start", &[0; 8])
            .prop("linux,initrd-end", &[0; 8])
            .end()
            .end()
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{chosen_blob, Builder};
    use super::*;

    #[test]
    fn finds_by_path_and_unit_address() {
        let blob = chosen_blob();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.u32_property("/", "#address-cells"), Ok(2));
        assert_eq!(fdt.reg("/memory"), Ok((0, 0)));
        assert_eq!(fdt.reg("/memory@40000000"), Ok((0, 0)));
        assert_eq!(fdt.reg("/memory@0"), Err(FdtError::NotFound));
        assert_eq!(
            fdt.u64_property("/chosen", "bootargs").unwrap_err(),
            FdtError::WrongSize { has: 16, want: 8 }
        );
        assert_eq!(fdt.property("/chosen", "nope"), Err(FdtError::NotFound));
        assert_eq!(
            fdt.property("/chosen/deeper", "reg"),
            Err(FdtError::NotFound)
        );
        assert_eq!(fdt.property("chosen", "bootargs"), Err(FdtError::NotFound));
        // A property of the root is not one of /chosen's, and vice versa.
        assert_eq!(
            fdt.property("/chosen", "#address-cells"),
            Err(FdtError::NotFound)
        );
        assert_eq!(fdt.property("/", "bootargs"), Err(FdtError::NotFound));
    }

    #[test]
    fn patches_in_place() {
        let mut blob = chosen_blob();
        let before = Fdt::new(&blob).unwrap().total_size();
        set_reg(&mut blob, "/memory", 0x4000_0000, 0x800_0000).unwrap();
        set_u64(&mut blob, "/chosen", "linux,initrd-start", 0x4220_0000).unwrap();
        set_u64(&mut blob, "/chosen", "linux,initrd-end", 0x4237_7000).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.total_size(), before);
        assert_eq!(fdt.reg("/memory"), Ok((0x4000_0000, 0x800_0000)));
        assert_eq!(
            fdt.u64_property("/chosen", "linux,initrd-end"),
            Ok(0x4237_7000)
        );
        assert_eq!(
            set(&mut blob, "/chosen", "linux,initrd-end", &[0; 4]),
            Err(FdtError::WrongSize { has: 8, want: 4 })
        );
    }

    #[test]
    fn bad_blobs() {
        let good = chosen_blob();
        assert_eq!(Fdt::new(&good[..39]).unwrap_err(), FdtError::Truncated);
        let mut b = good;
        b[0] = 0;
        assert!(matches!(Fdt::new(&b), Err(FdtError::BadMagic(_))));
        let mut b = good;
        b[20..24].copy_from_slice(&15u32.to_be_bytes());
        assert_eq!(Fdt::new(&b).unwrap_err(), FdtError::OldVersion(15));
        let mut b = good;
        b[4..8].copy_from_slice(&4096u32.to_be_bytes());
        assert_eq!(Fdt::new(&b).unwrap_err(), FdtError::Truncated);
        let mut b = good;
        b[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Fdt::new(&b).unwrap_err(), FdtError::BadBlock);
        // An unknown token in place of the first BEGIN_NODE.
        let mut b = good;
        b[56..60].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            Fdt::new(&b).unwrap().property("/", "x"),
            Err(FdtError::BadToken(7))
        );
        // Unbalanced: END_NODE first.
        let blob = Builder::default().end().finish();
        assert_eq!(
            Fdt::new(&blob).unwrap().property("/", "x"),
            Err(FdtError::BadNesting)
        );
        // No END_NODE for the root before END.
        let blob = Builder::default().begin("").finish();
        assert_eq!(
            Fdt::new(&blob).unwrap().property("/", "x"),
            Err(FdtError::BadNesting)
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let good = chosen_blob();
        let total = Fdt::new(&good).unwrap().total_size();
        for cut in 0..total {
            let mut b = good;
            b[4..8].copy_from_slice(&(cut as u32).to_be_bytes());
            if let Ok(fdt) = Fdt::new(&b[..cut.max(40)]) {
                let _ = fdt.property("/chosen", "linux,initrd-end");
            }
        }
    }
}
