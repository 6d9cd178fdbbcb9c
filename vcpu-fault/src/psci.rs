// SPDX-License-Identifier: BSD-2-Clause
//! PSCI (Arm DEN 0022) for a one-vCPU guest, called through SMC.
//!
//! seL4 sets `HCR_EL2.TSC`, so a guest `smc` traps to the VMM as a
//! `VCPUFault` whose syndrome has exception class 0x17
//! ([`trap::VcpuTrap::Smc`](crate::trap::VcpuTrap::Smc)). The guest's device tree says
//! `method = "smc"`: an `hvc` with an arbitrary `x7` would be a seL4 system
//! call, not a trap. The VMM passes `x0..x3` to [`call`] and either writes
//! the returned value to `x0` and resumes past the `smc`, or powers the
//! guest off or resets it.
//!
//! ```
//! use vcpu_fault::psci::{call, fid, Outcome, NOT_SUPPORTED};
//! assert_eq!(call(fid::VERSION.into(), 0, 0, 0), Outcome::Return(0x1_0000)); // PSCI 1.0
//! assert_eq!(call(fid::SYSTEM_OFF.into(), 0, 0, 0), Outcome::SystemOff);
//! assert_eq!(call(0xc400_0001, 0, 0, 0), Outcome::Return(NOT_SUPPORTED)); // CPU_SUSPEND
//! ```

/// Function ids (SMC32 unless named `_64`).
pub mod fid {
    /// `PSCI_VERSION`.
    pub const VERSION: u32 = 0x8400_0000;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// `CPU_ON`, SMC32.
    pub const CPU_ON: u32 = 0x8400_0003;
    /// `CPU_ON`, SMC64.
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// `AFFINITY_INFO`, SMC32.
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// `AFFINITY_INFO`, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = 0x8400_000a;
}

/// The version this VMM implements: 1.0 (major in bits 31:16).
pub const VERSION_1_0: u64 = 0x1_0000;
/// `SUCCESS`.
pub const SUCCESS: u64 = 0;
/// `NOT_SUPPORTED` (-1), as the 64-bit register holds it.
pub const NOT_SUPPORTED: u64 = -1i64 as u64;
/// `INVALID_PARAMETERS` (-2).
pub const INVALID_PARAMETERS: u64 = -2i64 as u64;
/// `ALREADY_ON` (-4).
pub const ALREADY_ON: u64 = -4i64 as u64;
/// `MIGRATE_INFO_TYPE`'s answer: no Trusted OS that needs migrating.
pub const MIGRATE_NOT_REQUIRED: u64 = 2;
/// `AFFINITY_INFO`'s answer for a running CPU.
pub const AFFINITY_ON: u64 = 0;

/// What the VMM does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Put this in `x0` and resume after the `smc`.
    Return(u64),
    /// `SYSTEM_OFF`: stop the guest for good.
    SystemOff,
    /// `SYSTEM_RESET`: restart the guest (or stop it, if the VMM cannot).
    SystemReset,
    /// `CPU_OFF` of the only vCPU: stop it (nothing can turn it on again).
    CpuOff,
}

/// The functions [`call`] implements, for `PSCI_FEATURES`.
const IMPLEMENTED: [u32; 10] = [
    fid::VERSION,
    fid::CPU_OFF,
    fid::CPU_ON,
    fid::CPU_ON_64,
    fid::AFFINITY_INFO,
    fid::AFFINITY_INFO_64,
    fid::MIGRATE_INFO_TYPE,
    fid::SYSTEM_OFF,
    fid::SYSTEM_RESET,
    fid::FEATURES,
];

/// Whether `x0` is a PSCI function id at all (SMCCC service "standard
/// secure", function number below 0x20); other SMCs are not PSCI's.
pub fn is_psci(x0: u64) -> bool {
    let Ok(fid) = u32::try_from(x0) else {
        return false;
    };
    fid & 0x8000_0000 != 0 && (fid >> 24) & 0x3f == 4 && fid & 0xffff < 0x20
}

/// Carries out PSCI call `x0` with arguments `x1..x3` for a guest whose
/// only vCPU has MPIDR affinity 0. Any other `x0`, including a non-PSCI
/// SMC, answers [`NOT_SUPPORTED`].
pub fn call(x0: u64, x1: u64, _x2: u64, _x3: u64) -> Outcome {
    // SMC32 calls pass their arguments in the low halves.
    let Ok(fid) = u32::try_from(x0) else {
        return Outcome::Return(NOT_SUPPORTED);
    };
    let smc32 = fid & 0x4000_0000 == 0;
    let arg = |x: u64| if smc32 { x & 0xffff_ffff } else { x };
    match fid {
        fid::VERSION => Outcome::Return(VERSION_1_0),
        fid::MIGRATE_INFO_TYPE => Outcome::Return(MIGRATE_NOT_REQUIRED),
        fid::SYSTEM_OFF => Outcome::SystemOff,
        fid::SYSTEM_RESET => Outcome::SystemReset,
        fid::CPU_OFF => Outcome::CpuOff,
        // One vCPU, already on: affinity 0 is it, any other is no CPU.
        fid::CPU_ON | fid::CPU_ON_64 => Outcome::Return(if arg(x1) == 0 {
            ALREADY_ON
        } else {
            INVALID_PARAMETERS
        }),
        fid::AFFINITY_INFO | fid::AFFINITY_INFO_64 => Outcome::Return(if arg(x1) == 0 {
            AFFINITY_ON
        } else {
            INVALID_PARAMETERS
        }),
        fid::FEATURES => Outcome::Return(match u32::try_from(x1 & 0xffff_ffff) {
            Ok(f) if IMPLEMENTED.contains(&f) => SUCCESS,
            _ => NOT_SUPPORTED,
        }),
        _ => Outcome::Return(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_linux_6_1_asks() {
        assert_eq!(call(0x8400_0000, 0, 0, 0), Outcome::Return(VERSION_1_0));
        assert_eq!(call(0x8400_0006, 0, 0, 0), Outcome::Return(2));
        for f in [0x8000_0000, 0xc400_0001, 0xc400_000e, 0xc400_0012] {
            assert_eq!(call(0x8400_000a, f, 0, 0), Outcome::Return(NOT_SUPPORTED));
        }
        assert_eq!(
            call(0x8400_000a, 0x8400_0008, 0, 0),
            Outcome::Return(SUCCESS)
        );
        assert_eq!(call(0x8400_0008, 0, 0, 0), Outcome::SystemOff);
        assert_eq!(call(0x8400_0009, 0, 0, 0), Outcome::SystemReset);
    }

    #[test]
    fn one_cpu() {
        assert_eq!(
            call(0xc400_0003, 0, 0x4000_0000, 0),
            Outcome::Return(ALREADY_ON)
        );
        assert_eq!(
            call(0xc400_0003, 1, 0x4000_0000, 0),
            Outcome::Return(INVALID_PARAMETERS)
        );
        // SMC32: only the low half of x1 counts.
        assert_eq!(
            call(0x8400_0003, 1 << 32, 0, 0),
            Outcome::Return(ALREADY_ON)
        );
        assert_eq!(call(0xc400_0004, 0, 0, 0), Outcome::Return(AFFINITY_ON));
        assert_eq!(call(0x8400_0002, 0, 0, 0), Outcome::CpuOff);
    }

    #[test]
    fn unknown_and_non_psci() {
        for x0 in [
            0,
            0x8400_001f,
            0x8400_0001,
            0xc200_0000,
            1 << 32 | 0x8400_0000,
            u64::MAX,
        ] {
            assert_eq!(call(x0, 0, 0, 0), Outcome::Return(NOT_SUPPORTED), "{x0:#x}");
        }
        assert!(is_psci(0x8400_0000) && is_psci(0xc400_0003));
        assert!(!is_psci(0x8400_0020) && !is_psci(0x8200_0000) && !is_psci(1 << 32));
    }
}
