// SPDX-License-Identifier: BSD-2-Clause
//! virtio for Microkit VMMs whose guest RAM is [`guest_ram`]'s.
//!
//! Three layers, each host-tested, because a hostile guest controls all of
//! their input:
//!
//! - [`mmio`]: the virtio-mmio (version 2) register file and device status
//!   state machine, run by the VMM on each trapped guest access;
//! - [`queue`]: split virtqueues: layout checks, descriptor-chain walking
//!   over a local snapshot of the descriptor table;
//! - [`blk`]: a virtio-blk backend that serves a queue through any
//!   [`GuestDma`] (in a driver PD, guest-ram's copy client over PPC) from
//!   any [`Disk`].
//!
//! [`shared`] is the layout of the page the VMM and a backend PD share to
//! hand over queue configuration.
//!
//! `#![no_std]`, no allocation, no panics on guest input: every bad value
//! is an error or a counted, logged refusal.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod blk;
pub mod device;
pub mod mmio;
pub mod queue;
pub mod shared;

pub use blk::{Disk, GuestDma};
