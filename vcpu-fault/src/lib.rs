// SPDX-License-Identifier: BSD-2-Clause
//! What an AArch64 vCPU's trap means to a Microkit VMM.
//!
//! - [`esr`]: a stage-2 data abort's syndrome (ESR_EL2, which seL4 hands
//!   the VMM as a `VmFault`'s `fsr`) decoded into an [`esr::MmioAccess`] to
//!   emulate: address, width, direction, register, sign extension.
//! - [`hvc`]: the hypercall ABI between a guest and this VMM (a guest
//!   `hvc #0` reaches the VMM as an `UnknownSyscall` fault).
//! - [`trap`]: a `VCPUFault`'s syndrome (`wfi`, `wfe`, `smc`).
//! - [`psci`]: PSCI 1.0 over SMC for a one-vCPU guest.
//!
//! Pure functions over integers: no seL4, no `unsafe`, host-tested and
//! fuzzed, since the guest controls every bit of their input.
//!
//! ```
//! use vcpu_fault::{esr, psci, trap};
//! // A VmFault's fsr: `ldr w3, [x1]` from the virtio window.
//! let fsr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16);
//! let load = esr::decode_data_abort(fsr, 0x0a00_0070).unwrap();
//! assert_eq!((load.width, load.write, load.register), (4, false, 3));
//! // A VCPUFault's hsr: the guest's `smc #0`, x0 = PSCI_VERSION.
//! assert_eq!(trap::decode(0x5e00_0000), trap::VcpuTrap::Smc { imm: 0 });
//! assert_eq!(psci::call(0x8400_0000, 0, 0, 0), psci::Outcome::Return(psci::VERSION_1_0));
//! ```
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod esr;
pub mod hvc;
pub mod psci;
pub mod trap;
