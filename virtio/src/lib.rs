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
//! - [`virtq`]: the device side of a split virtqueue that every backend
//!   shares: the ring snapshot in one call, the used ring in another;
//! - [`blk`]: a virtio-blk backend that serves a queue through any
//!   [`GuestDma`] (in a driver PD, guest-ram's copy client over PPC) from
//!   any [`Disk`];
//! - [`console`]: virtio-console, for a serial PD that multiplexes VMs'
//!   consoles onto one UART;
//! - [`net`]: virtio-net, for a `net` PD that switches Ethernet frames
//!   between VMs without mapping their RAM.
//!
//! [`shared`] is the layout of the page the VMM and a backend PD share to
//! hand over queue configuration.
//!
//! `#![no_std]`, no allocation, no panics on guest input: every bad value
//! is an error or a counted, logged refusal.
//!
//! ```
//! use virtio::mmio::{reg, status, Access, BlkConfig, MmioDevice, MAGIC};
//! // The VMM's register file for a 1 MiB disk, driven by trapped accesses.
//! let mut dev = MmioDevice::new(BlkConfig::new(2048));
//! assert_eq!(dev.read(reg::MAGIC_VALUE, 4).value(), u64::from(MAGIC));
//! dev.write(reg::STATUS, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER));
//! // A byte-wide read of a word register is refused, not emulated.
//! assert!(matches!(dev.read(reg::MAGIC_VALUE, 1), Access::Ignored(_)));
//! ```
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Unit tests may allocate; the library never does.
#[cfg(test)]
extern crate std;

pub mod blk;
pub mod blk_async;
pub mod console;
pub mod device;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod shared;
pub mod virtq;

pub use blk::{Disk, GuestDma};
