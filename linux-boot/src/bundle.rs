// SPDX-License-Identifier: BSD-2-Clause
//! The boot bundle: the kernel `Image` and the initrd in one blob with a
//! header saying where each lies, so that whatever puts the blob into
//! memory before seL4 starts (QEMU's `-device loader`, a board's boot
//! firmware) needs to know nothing of the guest, and the VMM learns the
//! exact lengths from the blob itself.
//!
//! Why a blob at all: a Microkit memory region prefilled from a file is
//! filled by seL4's CapDL initialiser, frame by frame, before any PD runs
//! (about 2.4 s for a 33 MiB kernel and initrd under QEMU's TCG). A
//! region at a fixed physical address outside seL4's RAM (device
//! untyped, never zeroed) keeps what was loaded there, so the VMM's one
//! copy into guest RAM is the only copy.
//!
//! Layout (all integers little-endian; [`HEADER_LEN`] bytes of header):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`MAGIC`] |
//! | 8 | 4 | version, [`VERSION`] |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | kernel offset from the blob's start |
//! | 24 | 8 | kernel length (the `Image` file's) |
//! | 32 | 8 | initrd offset |
//! | 40 | 8 | initrd length (0: none) |
//! | 48 | 16 | reserved, 0 |
//!
//! `guest-ram-sdf`'s `guest_ram_sdf.bundle` writes it (kernel at 4 KiB,
//! initrd at the next 4 KiB boundary after it); [`Bundle::parse`] checks
//! every field against the region the blob lies in.

use core::fmt;

use guest_ram::{Access, SharedBuffer};

use crate::image::{le32, le64};

/// The blob's first eight bytes.
pub const MAGIC: [u8; 8] = *b"GRLINUX\0";
/// The layout version this parser reads.
pub const VERSION: u32 = 1;
/// The header's length: the parts start at or after it.
pub const HEADER_LEN: usize = 64;

/// One part of the blob: `len` bytes at `offset` from its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// From the blob's start.
    pub offset: u64,
    /// In bytes.
    pub len: u64,
}

impl Part {
    fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// A checked header: both parts lie after the header, inside the region
/// and apart from each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The kernel `Image` (never empty).
    pub kernel: Part,
    /// The initrd (`len` 0: none).
    pub initrd: Part,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// The region is shorter than a header.
    TooShort,
    /// The first eight bytes are not [`MAGIC`] (nothing was loaded there?).
    BadMagic,
    /// A version this parser does not read.
    Version(u32),
    /// A reserved field is not zero.
    Reserved,
    /// The kernel is empty.
    NoKernel,
    /// A part starts inside the header, wraps, or ends past the region.
    OutOfBounds(&'static str),
    /// The kernel and the initrd overlap.
    Overlap,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::TooShort => write!(f, "boot bundle: region shorter than its header"),
            BundleError::BadMagic => write!(f, "boot bundle: bad magic (nothing loaded there?)"),
            BundleError::Version(v) => write!(f, "boot bundle: version {v}, not {VERSION}"),
            BundleError::Reserved => write!(f, "boot bundle: reserved field not zero"),
            BundleError::NoKernel => write!(f, "boot bundle: no kernel"),
            BundleError::OutOfBounds(what) => {
                write!(
                    f,
                    "boot bundle: {what} not inside the region after the header"
                )
            }
            BundleError::Overlap => write!(f, "boot bundle: kernel and initrd overlap"),
        }
    }
}

impl Bundle {
    /// Parses the header of a blob that lies in a region of `region_len`
    /// bytes. O(1).
    pub fn parse(header: &[u8; HEADER_LEN], region_len: u64) -> Result<Self, BundleError> {
        if region_len < HEADER_LEN as u64 {
            return Err(BundleError::TooShort);
        }
        if header[..8] != MAGIC {
            return Err(BundleError::BadMagic);
        }
        let version = le32(header, 8);
        if version != VERSION {
            return Err(BundleError::Version(version));
        }
        if le32(header, 12) != 0 || header[48..].iter().any(|&b| b != 0) {
            return Err(BundleError::Reserved);
        }
        let kernel = Part {
            offset: le64(header, 16),
            len: le64(header, 24),
        };
        let initrd = Part {
            offset: le64(header, 32),
            len: le64(header, 40),
        };
        if kernel.len == 0 {
            return Err(BundleError::NoKernel);
        }
        let inside = |part: &Part| {
            part.offset >= HEADER_LEN as u64 && part.end().is_some_and(|end| end <= region_len)
        };
        if !inside(&kernel) {
            return Err(BundleError::OutOfBounds("kernel"));
        }
        if initrd.len != 0 {
            if !inside(&initrd) {
                return Err(BundleError::OutOfBounds("initrd"));
            }
            // Both ends exist: checked by `inside`.
            let apart = kernel.end().is_some_and(|end| end <= initrd.offset)
                || initrd.end().is_some_and(|end| end <= kernel.offset);
            if !apart {
                return Err(BundleError::Overlap);
            }
        }
        Ok(Bundle { kernel, initrd })
    }

    /// Reads and checks the header of the blob in `region`, and returns
    /// the kernel's and the initrd's bytes as buffers of their own (the
    /// initrd's empty if there is none), ready for [`crate::load()`].
    pub fn split<A: Access>(
        region: &SharedBuffer<A>,
    ) -> Result<(SharedBuffer<A>, SharedBuffer<A>), BundleError> {
        let mut header = [0u8; HEADER_LEN];
        region
            .read(0, &mut header)
            .map_err(|_| BundleError::TooShort)?;
        let bundle = Self::parse(&header, region.len() as u64)?;
        let sub = |part: Part, what| {
            // `parse` checked both ends lie inside the region, whose
            // length is a usize.
            let offset =
                usize::try_from(part.offset).map_err(|_| BundleError::OutOfBounds(what))?;
            let len = usize::try_from(part.len).map_err(|_| BundleError::OutOfBounds(what))?;
            region
                .sub(offset, len)
                .map_err(|_| BundleError::OutOfBounds(what))
        };
        let kernel = sub(bundle.kernel, "kernel")?;
        let initrd = if bundle.initrd.len == 0 {
            sub(Part { offset: 0, len: 0 }, "initrd")?
        } else {
            sub(bundle.initrd, "initrd")?
        };
        Ok((kernel, initrd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(kernel: (u64, u64), initrd: (u64, u64)) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&kernel.0.to_le_bytes());
        h[24..32].copy_from_slice(&kernel.1.to_le_bytes());
        h[32..40].copy_from_slice(&initrd.0.to_le_bytes());
        h[40..48].copy_from_slice(&initrd.1.to_le_bytes());
        h
    }

    /// The header `guest_ram_sdf.bundle` writes for a 5-byte kernel and a
    /// 3-byte initrd (its test checks the same bytes).
    const WRITER_GOLDEN: &str = "47524c494e555800010000000000000000100000000000000500000000000000\
                                 0020000000000000030000000000000000000000000000000000000000000000";

    #[test]
    fn parses_what_the_writer_writes() {
        let mut h = [0u8; HEADER_LEN];
        for (i, byte) in h.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&WRITER_GOLDEN[2 * i..2 * i + 2], 16).unwrap();
        }
        let b = Bundle::parse(&h, 0x2003).unwrap();
        assert_eq!(
            b.kernel,
            Part {
                offset: 0x1000,
                len: 5
            }
        );
        assert_eq!(
            b.initrd,
            Part {
                offset: 0x2000,
                len: 3
            }
        );
        assert_eq!(
            Bundle::parse(&h, 0x2002),
            Err(BundleError::OutOfBounds("initrd"))
        );
    }

    #[test]
    fn refuses_bad_headers() {
        let good = header((0x1000, 0x100), (0x2000, 0x10));
        assert!(Bundle::parse(&good, 0x3000).is_ok());
        assert_eq!(Bundle::parse(&good, 63), Err(BundleError::TooShort));
        let mut h = good;
        h[0] = b'X';
        assert_eq!(Bundle::parse(&h, 0x3000), Err(BundleError::BadMagic));
        let mut h = good;
        h[8] = 2;
        assert_eq!(Bundle::parse(&h, 0x3000), Err(BundleError::Version(2)));
        let mut h = good;
        h[63] = 1;
        assert_eq!(Bundle::parse(&h, 0x3000), Err(BundleError::Reserved));
        let h = header((0x1000, 0), (0, 0));
        assert_eq!(Bundle::parse(&h, 0x3000), Err(BundleError::NoKernel));
        let h = header((8, 0x100), (0, 0));
        assert_eq!(
            Bundle::parse(&h, 0x3000),
            Err(BundleError::OutOfBounds("kernel"))
        );
        let h = header((u64::MAX, 2), (0, 0));
        assert_eq!(
            Bundle::parse(&h, u64::MAX),
            Err(BundleError::OutOfBounds("kernel"))
        );
        let h = header((0x1000, 0x100), (0x1080, 0x100));
        assert_eq!(Bundle::parse(&h, 0x3000), Err(BundleError::Overlap));
        // No initrd: its offset does not matter.
        let h = header((0x1000, 0x100), (u64::MAX, 0));
        assert!(Bundle::parse(&h, 0x3000).is_ok());
    }

    proptest! {
        /// Any header either is refused or names two disjoint parts inside
        /// the region after the header (the model).
        #[test]
        fn accepted_parts_lie_inside(
            k in (0u64..0x4000, 0u64..0x4000),
            i in (0u64..0x4000, 0u64..0x4000),
            big in any::<bool>(),
            region_len in 0u64..0x8000,
        ) {
            let k = if big { (u64::MAX - k.0, k.1) } else { k };
            let h = header(k, i);
            if let Ok(b) = Bundle::parse(&h, region_len) {
                let model_inside = |o: u64, l: u64| {
                    o >= 64 && u128::from(o) + u128::from(l) <= u128::from(region_len)
                };
                prop_assert!(b.kernel.len > 0 && model_inside(b.kernel.offset, b.kernel.len));
                if b.initrd.len > 0 {
                    prop_assert!(model_inside(b.initrd.offset, b.initrd.len));
                    let (ks, ke) = (b.kernel.offset, b.kernel.offset + b.kernel.len);
                    let (is, ie) = (b.initrd.offset, b.initrd.offset + b.initrd.len);
                    prop_assert!(ke <= is || ie <= ks);
                }
            }
        }
    }
}
