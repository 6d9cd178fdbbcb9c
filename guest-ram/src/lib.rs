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
