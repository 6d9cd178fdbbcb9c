// SPDX-License-Identifier: BSD-2-Clause
//! Data-abort syndromes (Arm ARM, D17.2.37 ESR_EL2, ISS encoding for a
//! Data Abort exception).
//!
//! A guest access to a gpa that stage 2 does not map traps to the
//! hypervisor with the faulting gpa and ESR_EL2. When `ISV` is set the
//! syndrome describes the instruction completely (a single `ldr`/`str` of
//! 1, 2, 4 or 8 bytes to or from one general-purpose register), and the
//! VMM can emulate it without reading guest memory. When `ISV` is clear
//! (load/store pair, post- or pre-indexed addressing, SIMD registers) it
//! cannot, and the VMM stops the guest rather than guess.
//!
//! ```
//! use vcpu_fault::esr::{decode_data_abort, MmioAccess};
//! // `str w1, [x0]`: EC 0x24, IL, ISV, SAS = word, SRT = 1, WnR.
//! let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6);
//! let access = decode_data_abort(esr, 0x0a00_0070).unwrap();
//! assert_eq!(access, MmioAccess { gpa: 0x0a00_0070, width: 4, write: true, register: 1,
//!                                 sign_extend: false, wide: false, instruction_len: 4 });
//! assert_eq!(access.store_value(0xdead_beef_1234_5678), 0x1234_5678);
//! ```

use core::fmt;

/// Exception class: Data Abort from a lower exception level.
pub const EC_DATA_ABORT_LOWER: u32 = 0x24;
/// Exception class: Instruction Abort from a lower exception level.
pub const EC_INSTRUCTION_ABORT_LOWER: u32 = 0x20;

/// The register number that means the zero register (`xzr`/`wzr`) in a
/// load or store.
pub const ZERO_REGISTER: u8 = 31;

/// One guest load or store to emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The faulting guest-physical address.
    pub gpa: u64,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub width: u8,
    /// A store (the guest writes) rather than a load.
    pub write: bool,
    /// The transfer register, 0..=30, or [`ZERO_REGISTER`].
    pub register: u8,
    /// A load sign-extends the value (`ldrsb`, `ldrsh`, `ldrsw`).
    pub sign_extend: bool,
    /// The register is 64-bit (`x`) rather than 32-bit (`w`).
    pub wide: bool,
    /// Bytes to advance the pc past the instruction (2 or 4).
    pub instruction_len: u8,
}

impl MmioAccess {
    /// The value a store writes, from the transfer register's contents:
    /// the low `width` bytes.
    pub fn store_value(&self, register_value: u64) -> u64 {
        if self.register == ZERO_REGISTER {
            return 0;
        }
        register_value & width_mask(self.width)
    }

    /// What a load leaves in the transfer register for a device value:
    /// truncated to `width`, sign-extended if the instruction says so, and
    /// cut to 32 bits for a `w` register (which zeroes the upper half).
    pub fn load_value(&self, device_value: u64) -> u64 {
        let mut value = device_value & width_mask(self.width);
        if self.sign_extend && self.width < 8 {
            let shift = 64 - 8 * u32::from(self.width);
            value = (((value << shift) as i64) >> shift) as u64;
        }
        if !self.wide {
            value &= 0xffff_ffff;
        }
        value
    }

    /// Whether a load changes a register (not for the zero register).
    pub fn writes_register(&self) -> bool {
        !self.write && self.register != ZERO_REGISTER
    }
}

fn width_mask(width: u8) -> u64 {
    match width {
        8 => u64::MAX,
        w => (1u64 << (8 * u32::from(w))) - 1,
    }
}

/// Why a fault cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// Not a data abort from the guest (the exception class).
    NotDataAbort(u32),
    /// `ISV` clear: the syndrome does not describe the instruction.
    NoSyndrome,
    /// A stage-1 page-table walk faulted at stage 2: the guest's own page
    /// tables point outside its RAM.
    PageTableWalk,
    /// A cache maintenance instruction on the device window.
    CacheMaintenance,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::NotDataAbort(ec) => {
                write!(f, "exception class {ec:#x} is not a data abort")
            }
            FaultError::NoSyndrome => {
                f.write_str("no instruction syndrome (ISV = 0: pair, writeback or SIMD access)")
            }
            FaultError::PageTableWalk => f.write_str("stage-1 page-table walk outside RAM"),
            FaultError::CacheMaintenance => f.write_str("cache maintenance on a device window"),
        }
    }
}

/// Decodes a data abort at `gpa` with syndrome `esr` into the access to
/// emulate.
pub fn decode_data_abort(esr: u64, gpa: u64) -> Result<MmioAccess, FaultError> {
    let esr = esr as u32;
    let ec = esr >> 26;
    if ec != EC_DATA_ABORT_LOWER {
        return Err(FaultError::NotDataAbort(ec));
    }
    let bit = |n: u32| esr & (1 << n) != 0;
    if !bit(24) {
        return Err(FaultError::NoSyndrome);
    }
    if bit(7) {
        return Err(FaultError::PageTableWalk);
    }
    if bit(8) {
        return Err(FaultError::CacheMaintenance);
    }
    Ok(MmioAccess {
        gpa,
        width: 1 << ((esr >> 22) & 3),
        write: bit(6),
        register: ((esr >> 16) & 0x1f) as u8,
        sign_extend: bit(21),
        wide: bit(15),
        instruction_len: if bit(25) { 4 } else { 2 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esr(sas: u32, sse: bool, srt: u32, sf: bool, wnr: bool) -> u64 {
        u64::from(
            (EC_DATA_ABORT_LOWER << 26)
                | (1 << 25)
                | (1 << 24)
                | (sas << 22)
                | (u32::from(sse) << 21)
                | (srt << 16)
                | (u32::from(sf) << 15)
                | (u32::from(wnr) << 6),
        )
    }

    #[test]
    fn widths_and_registers() {
        for sas in 0..4 {
            let a = decode_data_abort(esr(sas, false, 7, true, false), 0x10).unwrap();
            assert_eq!(a.width, 1 << sas);
            assert_eq!(a.register, 7);
            assert!(!a.write && a.wide);
        }
    }

    #[test]
    fn sign_extension() {
        // ldrsb x3, [..] of 0x80 → 0xffff_ffff_ffff_ff80.
        let a = decode_data_abort(esr(0, true, 3, true, false), 0).unwrap();
        assert_eq!(a.load_value(0x1234_5680), 0xffff_ffff_ffff_ff80);
        // ldrsh w3: 32-bit destination, upper half zero.
        let a = decode_data_abort(esr(1, true, 3, false, false), 0).unwrap();
        assert_eq!(a.load_value(0x8001), 0xffff_8001);
        // ldr w3: zero-extended.
        let a = decode_data_abort(esr(2, false, 3, false, false), 0).unwrap();
        assert_eq!(a.load_value(u64::MAX), 0xffff_ffff);
    }

    #[test]
    fn zero_register() {
        let store = decode_data_abort(esr(2, false, 31, false, true), 0).unwrap();
        assert_eq!(store.store_value(0x1234), 0);
        let load = decode_data_abort(esr(2, false, 31, false, false), 0).unwrap();
        assert!(!load.writes_register());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            decode_data_abort(u64::from(EC_INSTRUCTION_ABORT_LOWER << 26), 0),
            Err(FaultError::NotDataAbort(EC_INSTRUCTION_ABORT_LOWER))
        );
        let no_isv = esr(2, false, 1, false, true) & !(1 << 24);
        assert_eq!(decode_data_abort(no_isv, 0), Err(FaultError::NoSyndrome));
        let walk = esr(2, false, 1, false, true) | (1 << 7);
        assert_eq!(decode_data_abort(walk, 0), Err(FaultError::PageTableWalk));
        let cm = esr(2, false, 1, false, true) | (1 << 8);
        assert_eq!(decode_data_abort(cm, 0), Err(FaultError::CacheMaintenance));
    }

    #[test]
    fn upper_esr_bits_are_ignored() {
        let a = esr(2, false, 1, false, true);
        assert_eq!(
            decode_data_abort(a | 0xffff_ffff_0000_0000, 5),
            decode_data_abort(a, 5)
        );
    }
}
