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
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod esr;
pub mod hvc;
pub mod psci;
pub mod trap;
