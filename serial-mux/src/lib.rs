// SPDX-License-Identifier: BSD-2-Clause
//! One UART for the consoles of several VMs.
//!
//! A serial PD owns the one UART and is the backend of every VM's virtio
//! console. This crate is its logic, with no seL4 and no hardware in it:
//!
//! - [`output`]: each VM's console output (guest-controlled, arbitrary
//!   bytes) is held per VM until a whole line is there, then written to the
//!   UART with a `vm<n>| ` prefix, so lines of different VMs never
//!   interleave.
//! - [`input`]: the UART's input bytes go to one VM at a time; `Ctrl-\`
//!   (0x1c) and a digit moves the focus. Each VM has a queue that holds
//!   bytes until its guest posts receive buffers.
//! - [`power`]: which VMs are still running, so that the machine powers
//!   off after the last one stops.
//!
//! ```
//! use serial_mux::{Input, Output, Routed};
//! let mut out = Output::<2, 80>::new();
//! let mut uart = Vec::new();
//! let mut sink = |b: &[u8]| uart.extend_from_slice(b);
//! out.push(1, b"hello, ", &mut sink).unwrap();
//! out.push(0, b"linux: ok\r\n", &mut sink).unwrap();
//! out.push(1, b"world\r\n", &mut sink).unwrap();
//! assert_eq!(uart, b"vm0| linux: ok\r\nvm1| hello, world\r\n");
//!
//! let mut input = Input::<2, 16>::new();
//! assert_eq!(input.input(0x1c), Routed::Escape);
//! assert_eq!(input.input(b'1'), Routed::Switched { vm: 1 });
//! assert_eq!(input.input(b'x'), Routed::Queued { vm: 1 });
//! assert_eq!(input.pending(1).unwrap(), (&b"x"[..], &b""[..]));
//! ```
//!
//! `#![no_std]`, no allocation, no `unsafe`; no input (guest output, UART
//! input, VM index) can make it panic: `make no-panic` checks that.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod input;
pub mod output;
pub mod power;

pub use input::{Input, Routed, ESCAPE};
pub use output::{Output, Uart};
pub use power::PowerTracker;

use core::fmt;

/// What the multiplexer refuses. A refused call changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `vm` is not below the number of VMs, `vms`.
    NoSuchVm {
        /// The index asked for.
        vm: usize,
        /// How many VMs there are.
        vms: usize,
    },
    /// [`Input::consume`] was asked to remove more bytes than are pending.
    NotPending {
        /// The VM.
        vm: usize,
        /// How many bytes it was asked to remove.
        asked: usize,
        /// How many are pending.
        pending: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoSuchVm { vm, vms } => write!(f, "no VM {vm} (there are {vms})"),
            Error::NotPending { vm, asked, pending } => write!(
                f,
                "cannot consume {asked} input bytes of VM {vm}: {pending} pending"
            ),
        }
    }
}

/// `Ok(vm)` if `vm < vms`.
fn check_vm(vm: usize, vms: usize) -> Result<usize, Error> {
    if vm < vms {
        Ok(vm)
    } else {
        Err(Error::NoSuchVm { vm, vms })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn errors_display() {
        assert_eq!(
            Error::NoSuchVm { vm: 3, vms: 2 }.to_string(),
            "no VM 3 (there are 2)"
        );
        assert_eq!(
            Error::NotPending {
                vm: 1,
                asked: 5,
                pending: 2
            }
            .to_string(),
            "cannot consume 5 input bytes of VM 1: 2 pending"
        );
        assert_eq!(check_vm(1, 2), Ok(1));
        assert_eq!(check_vm(2, 2), Err(Error::NoSuchVm { vm: 2, vms: 2 }));
    }
}
