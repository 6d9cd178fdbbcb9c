// SPDX-License-Identifier: BSD-2-Clause
//! Guest RAM for seL4 Microkit virtual machine monitors.
//!
//! This is the Microkit redesign of libsel4vm's `guest_ram.h`. Guest RAM is
//! pre-mapped into the VMM protection domain by memory regions declared in
//! `system.xml`, so this crate maps nothing at run time: [`GuestRam`] keeps
//! the bookkeeping (what is RAM, what is allocated) and turns guest-physical
//! addresses (`gpa`) into VMM virtual addresses (`vaddr`) by offset
//! arithmetic. On top of it, [`protocol`], [`server`] and [`client`] let
//! other PDs copy to and from guest RAM over protected procedure calls
//! without ever mapping it.
//!
//! `#![no_std]`, no allocation: every table has a capacity fixed by a const
//! generic. Every bad input is an [`Error`] value; every `gpa + len` is
//! checked. Raw-pointer dereferences live in one private module (`mem`):
//! no safe function hands out a Rust reference into guest memory, because
//! the guest may change it at any time.
//!
//! ```
//! use core::ptr::NonNull;
//! use guest_ram::{GuestRam, MappedRegion};
//!
//! // In a PD, the mapping comes from system.xml (`setvar_vaddr`); here, a
//! // host buffer stands in for it.
//! let mut memory = vec![0u8; 1 << 20];
//! let vaddr = NonNull::new(memory.as_mut_ptr()).unwrap();
//! // SAFETY: `memory` outlives `ram` and is only used through it.
//! let region = unsafe { MappedRegion::new(0x4000_0000, vaddr, 1 << 20) };
//! let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
//! ram.register_at(0x4000_0000, 1 << 20).unwrap();
//!
//! // Bookkeeping: the kernel where the guest expects it, the rest placed.
//! ram.mark_allocated(0x4000_0000, 0x8_0000).unwrap();
//! let dtb = ram.allocate_aligned(0x1000, 0x1000).unwrap();
//! assert_eq!(dtb, 0x4008_0000);
//!
//! // Copies by offset arithmetic over the fixed mapping, every range checked.
//! ram.write(dtb, b"\xd0\x0d\xfe\xed").unwrap();
//! let mut magic = [0u8; 4];
//! ram.read(dtb, &mut magic).unwrap();
//! assert_eq!(magic, [0xd0, 0x0d, 0xfe, 0xed]);
//! assert!(ram.read(0x4010_0000 - 2, &mut magic).is_err()); // past the end of RAM
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod backing;
mod error;
mod extents;
mod mem;
mod ram;
#[doc(hidden)]
pub mod table;

pub mod benchmark;
pub mod client;
pub mod protocol;
pub mod selftest;
pub mod server;
pub mod transport;

pub use backing::{Access, Direction, GpaRange, MappedRegion, ReadOnly, ReadWrite, SharedBuffer};
pub use error::Error;
pub use ram::{Chunk, GuestRam, RamExtent, TouchError, PAGE_SIZE};

/// The bookkeeping structures, for the benchmarks: the tree `GuestRam`
/// uses and the sorted table it replaced. Not a stable API.
#[doc(hidden)]
pub mod bookkeeping {
    pub use crate::extents::{Extent, Extents as Tree, RangeState, Run};
    pub use crate::table::Table;
}
