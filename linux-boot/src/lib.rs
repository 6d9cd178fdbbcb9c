// SPDX-License-Identifier: BSD-2-Clause
//! Booting an arm64 Linux kernel from a Microkit VMM whose guest RAM is a
//! [`guest_ram::GuestRam`].
//!
//! - [`image`]: the arm64 `Image` header (`Documentation/arch/arm64/booting.rst`):
//!   magic, `text_offset`, `image_size` (which covers the BSS: reserve it,
//!   not the file's length), flags.
//! - [`fdt`]: a flattened device tree reader that finds a property by node
//!   path and rewrites its value in place, so that the guest's `/memory`
//!   and `/chosen` initrd range say what the VMM really did.
//! - [`bundle`]: the kernel and initrd in one blob with a header, as a
//!   boot loader (QEMU's `-device loader`, a board's firmware) puts it
//!   into memory outside seL4's RAM: the VMM takes both from there.
//! - [`mod@load`]: places the kernel at a 2 MiB-aligned base, the initrd and
//!   the device tree with `allocate_aligned` (never overlapping: the
//!   allocator says so), patches the device tree, copies all three in,
//!   and returns the layout and the entry state of vCPU 0.
//!
//! `#![no_std]`, no allocation; every bad header or blob is an error value.
//!
//! ```
//! use linux_boot::image::{ImageHeader, ImageError};
//! // A gzip'd vmlinuz is not an Image: a clear error, not a crash.
//! let mut header = [0u8; 64];
//! header[..2].copy_from_slice(&[0x1f, 0x8b]);
//! assert!(matches!(ImageHeader::parse(&header, 64), Err(ImageError::BadMagic(_))));
//! ```
//!
//! [`load()`] does the whole job; `linux-boot/tests/load.rs` runs it on real
//! memory with this repository's device tree.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bundle;
pub mod fdt;
pub mod image;
pub mod load;

pub use bundle::{Bundle, BundleError};
pub use load::{load, BootLayout, LoadError};
