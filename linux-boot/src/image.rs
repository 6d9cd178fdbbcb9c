// SPDX-License-Identifier: BSD-2-Clause
//! The arm64 Linux `Image` header: 64 bytes at the start of the file.
//!
//! ```text
//! 0x00 code0, code1     0x08 text_offset     0x10 image_size
//! 0x18 flags            0x20..0x38 reserved  0x38 magic "ARM\x64"
//! ```
//!
//! ```
//! use linux_boot::image::{ImageHeader, HEADER_LEN, MAGIC};
//! let mut header = [0u8; HEADER_LEN];
//! header[0x10..0x18].copy_from_slice(&0x201_0000u64.to_le_bytes()); // image_size
//! header[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());        // LE, 4K, anywhere
//! header[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
//! let h = ImageHeader::parse(&header, 32_954_880).unwrap();
//! assert_eq!((h.text_offset, h.image_size), (0, 0x201_0000));
//! ```

use core::fmt;

/// Bytes of header.
pub const HEADER_LEN: usize = 64;
/// `"ARM\x64"`, little-endian, at offset 0x38.
pub const MAGIC: u32 = 0x644d_5241;
/// The kernel's base must be aligned to this (`text_offset` is added).
pub const BASE_ALIGN: u64 = 2 << 20;

/// The fields a loader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Where the image goes from a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address, BSS included.
    pub image_size: u64,
    /// Raw flags (bit 0: big-endian; bits 1-2: page size; bit 3: may be
    /// placed anywhere in RAM rather than close to its start).
    pub flags: u64,
}

/// A header this loader will not boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Fewer than 64 bytes.
    TooShort,
    /// No `ARM\x64` at 0x38: not an arm64 `Image` (a compressed
    /// `vmlinuz`, an ELF `vmlinux` or an EFI zboot image are not).
    BadMagic(u32),
    /// `image_size` is 0: a kernel older than 3.17, whose size is unknown.
    NoImageSize,
    /// The file is larger than `image_size` says the kernel is.
    LargerThanImageSize,
    /// A big-endian kernel (flags bit 0).
    BigEndian,
    /// `text_offset` is not below 2 MiB, or not 4 KiB-aligned.
    BadTextOffset(u64),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::TooShort => f.write_str("kernel image shorter than its 64-byte header"),
            ImageError::BadMagic(m) => write!(
                f,
                "kernel is not an arm64 Image (magic {m:#010x} at 0x38, want {MAGIC:#010x}; a gzip'd vmlinuz or an ELF vmlinux must be unpacked first)"
            ),
            ImageError::NoImageSize => {
                f.write_str("kernel Image has image_size 0 (older than Linux 3.17): its BSS size is unknown")
            }
            ImageError::LargerThanImageSize => {
                f.write_str("kernel Image file is larger than its header's image_size")
            }
            ImageError::BigEndian => f.write_str("kernel Image is big-endian; the guest is little-endian"),
            ImageError::BadTextOffset(o) => {
                write!(f, "kernel Image text_offset {o:#x} is not a 4 KiB-aligned offset below 2 MiB")
            }
        }
    }
}

/// The little-endian u64 at `at` in `bytes` (0 where `bytes` ends
/// first). Also the boot bundle's header reader.
pub(crate) fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

/// The little-endian u32 at `at` in `bytes`, as [`le64`].
pub(crate) fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

impl ImageHeader {
    /// Parses and checks the header of a `file_len`-byte Image.
    pub fn parse(header: &[u8], file_len: u64) -> Result<Self, ImageError> {
        if header.len() < HEADER_LEN {
            return Err(ImageError::TooShort);
        }
        let magic = le64(header, 0x38) as u32;
        if magic != MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let h = ImageHeader {
            text_offset: le64(header, 0x08),
            image_size: le64(header, 0x10),
            flags: le64(header, 0x18),
        };
        if h.image_size == 0 {
            return Err(ImageError::NoImageSize);
        }
        if file_len > h.image_size {
            return Err(ImageError::LargerThanImageSize);
        }
        if h.flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        if h.text_offset >= BASE_ALIGN || h.text_offset % 0x1000 != 0 {
            return Err(ImageError::BadTextOffset(h.text_offset));
        }
        Ok(h)
    }

    /// The kernel's page size from the flags, if it says (4, 16 or 64 KiB).
    pub fn page_size(&self) -> Option<u64> {
        match (self.flags >> 1) & 3 {
            1 => Some(4 << 10),
            2 => Some(16 << 10),
            3 => Some(64 << 10),
            _ => None,
        }
    }

    /// Whether the kernel may sit at any 2 MiB-aligned base (flags bit 3)
    /// rather than as close to the start of RAM as possible.
    pub fn place_anywhere(&self) -> bool {
        self.flags & 8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64, magic: u32) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&magic.to_le_bytes());
        h
    }

    #[test]
    fn debian_6_1() {
        let h = ImageHeader::parse(&header(0, 0x201_0000, 0xa, MAGIC), 32_954_880).unwrap();
        assert_eq!(h.page_size(), Some(4096));
        assert!(h.place_anywhere());
    }

    #[test]
    fn every_bad_header_is_an_error() {
        let cases = [
            (
                header(0, 0x1000, 0, MAGIC ^ 1),
                0,
                ImageError::BadMagic(MAGIC ^ 1),
            ),
            (header(0, 0, 0, MAGIC), 0, ImageError::NoImageSize),
            (
                header(0, 0x1000, 0, MAGIC),
                0x1001,
                ImageError::LargerThanImageSize,
            ),
            (header(0, 0x1000, 1, MAGIC), 0, ImageError::BigEndian),
            (
                header(2 << 20, 0x1000, 0, MAGIC),
                0,
                ImageError::BadTextOffset(2 << 20),
            ),
            (
                header(0x80, 0x1000, 0, MAGIC),
                0,
                ImageError::BadTextOffset(0x80),
            ),
        ];
        for (h, len, want) in cases {
            assert_eq!(ImageHeader::parse(&h, len), Err(want));
        }
        assert_eq!(ImageHeader::parse(&[0; 63], 0), Err(ImageError::TooShort));
        // 0x80000, the text_offset of kernels before 5.8, is fine.
        assert!(ImageHeader::parse(&header(0x8_0000, 0x1000, 0, MAGIC), 0).is_ok());
    }
}
