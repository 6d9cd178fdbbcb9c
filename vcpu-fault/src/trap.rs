// SPDX-License-Identifier: BSD-2-Clause
//! A `VCPUFault`'s syndrome: why the vCPU trapped to its VMM.
//!
//! seL4 reports traps that are neither stage-2 faults nor system calls as
//! a `VCPUFault` carrying ESR_EL2 (its `hsr`). Two matter to a Linux guest:
//! `wfi`/`wfe` (seL4 leaves their trapping on) and `smc` (seL4 sets
//! `HCR_EL2.TSC`; PSCI goes through it). In both, the fault's pc is the
//! trapping instruction itself, so the VMM resumes at pc + 4.
//!
//! ```
//! use vcpu_fault::trap::{decode, VcpuTrap};
//! assert_eq!(decode(0x07e0_0000), VcpuTrap::Wfi);
//! assert_eq!(decode(0x5e00_0000), VcpuTrap::Smc { imm: 0 });
//! assert_eq!(decode(0x0000_0000), VcpuTrap::Other { ec: 0 });
//! ```

/// Exception class of a trapped `wfi` or `wfe`.
pub const EC_WFX: u32 = 0x01;
/// Exception class of a trapped AArch64 `smc`.
pub const EC_SMC64: u32 = 0x17;
/// Exception class of an AArch64 `hvc` (seL4 delivers these as system
/// calls or `UnknownSyscall`, not here).
pub const EC_HVC64: u32 = 0x16;

/// What trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuTrap {
    /// `wfi`: the guest is idle until an interrupt.
    Wfi,
    /// `wfe`: the guest waits for an event (spin-lock back-off).
    Wfe,
    /// `smc #imm`: an SMCCC call (PSCI), function id in `x0`.
    Smc {
        /// The instruction's immediate.
        imm: u16,
    },
    /// Anything else, by exception class; the VMM stops the guest.
    Other {
        /// ESR_EL2.EC.
        ec: u32,
    },
}

/// Decodes a `VCPUFault`'s syndrome (only its low 32 bits are ESR_EL2's
/// defined ones).
pub fn decode(hsr: u64) -> VcpuTrap {
    let esr = hsr as u32;
    let ec = esr >> 26;
    match ec {
        EC_WFX if esr & 1 == 0 => VcpuTrap::Wfi,
        EC_WFX => VcpuTrap::Wfe,
        EC_SMC64 => VcpuTrap::Smc {
            imm: (esr & 0xffff) as u16,
        },
        _ => VcpuTrap::Other { ec },
    }
}

/// When an idle guest's virtual timer fires, on the physical counter: the
/// deadline a VMM arms a timer of its own for before it stops the vCPU at a
/// `wfi` (the vCPU's timer cannot fire while the vCPU is switched out).
/// `cntv_ctl`, `cntv_cval` and `cntvoff` are the vCPU's registers; `None`
/// when the timer is off or its interrupt masked (then only a device
/// interrupt wakes the guest, as on hardware).
///
/// ```
/// use vcpu_fault::trap::vtimer_deadline;
/// // Enabled, unmasked: fires when CNTVCT = CNTPCT - CNTVOFF reaches CVAL.
/// assert_eq!(vtimer_deadline(1, 5_000, 100), Some(5_100));
/// assert_eq!(vtimer_deadline(0b11, 5_000, 100), None); // IMASK
/// assert_eq!(vtimer_deadline(0, 5_000, 100), None); // disabled
/// ```
pub fn vtimer_deadline(cntv_ctl: u64, cntv_cval: u64, cntvoff: u64) -> Option<u64> {
    const ENABLE: u64 = 1;
    const IMASK: u64 = 2;
    (cntv_ctl & (ENABLE | IMASK) == ENABLE).then(|| cntv_cval.wrapping_add(cntvoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_on_sel4() {
        // Both syndromes were seen from a guest on seL4 (QEMU virt).
        assert_eq!(decode(0x07e0_0000), VcpuTrap::Wfi);
        assert_eq!(decode(0x5e00_0000), VcpuTrap::Smc { imm: 0 });
        assert_eq!(decode(0x07e0_0001), VcpuTrap::Wfe);
        assert_eq!(decode(0x5e00_1234 | 1 << 40), VcpuTrap::Smc { imm: 0x1234 });
        assert_eq!(decode(0x5a00_0000), VcpuTrap::Other { ec: EC_HVC64 });
    }
}
