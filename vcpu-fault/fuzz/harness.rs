// SPDX-License-Identifier: BSD-2-Clause
//! The fault-decoding fuzz harness, shared by `cargo fuzz run esr` and the
//! corpus-replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: 80 bytes, read as ten little-endian words: ESR, gpa, a register
//! value, a device value, and x0..x5 of a hypercall (x6 = 0, x7 = ABI for
//! half the inputs). It checks that decoding never panics and that a
//! decoded access is one the VMM can emulate: width 1, 2, 4 or 8, register
//! 0..=31, a store value within the width, a load value that a `w`
//! register can hold and that agrees with the device value in its low bytes.
//! The same words feed the `VCPUFault` syndrome decoder (ESR) and PSCI
//! (x0..x3): every syndrome decodes to what its exception class says, and
//! every SMC that is not a PSCI call answers NOT_SUPPORTED.

use vcpu_fault::esr::{decode_data_abort, ZERO_REGISTER};
use vcpu_fault::hvc;
use vcpu_fault::psci::{self, Outcome};
use vcpu_fault::trap::{self, VcpuTrap};

pub fn run(data: &[u8]) {
    let mut words = [0u64; 10];
    for (w, chunk) in words.iter_mut().zip(data.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    let [esr, gpa, reg_value, dev_value, x0, x1, x2, x3, x4, x5] = words;
    if let Ok(a) = decode_data_abort(esr, gpa) {
        assert!(matches!(a.width, 1 | 2 | 4 | 8));
        assert!(a.register <= ZERO_REGISTER);
        assert!(matches!(a.instruction_len, 2 | 4));
        assert_eq!(a.gpa, gpa);
        let mask = if a.width == 8 {
            u64::MAX
        } else {
            (1 << (8 * a.width)) - 1
        };
        assert_eq!(a.store_value(reg_value) & !mask, 0);
        let loaded = a.load_value(dev_value);
        assert_eq!(
            loaded & mask,
            dev_value & mask & if a.wide { u64::MAX } else { 0xffff_ffff }
        );
        if !a.wide {
            assert_eq!(loaded >> 32, 0);
        }
    }
    let ec = (esr as u32) >> 26;
    match trap::decode(esr) {
        VcpuTrap::Wfi | VcpuTrap::Wfe => assert_eq!(ec, trap::EC_WFX),
        VcpuTrap::Smc { imm } => {
            assert_eq!(ec, trap::EC_SMC64);
            assert_eq!(u64::from(imm), esr & 0xffff);
        }
        VcpuTrap::Other { ec: other } => {
            assert_eq!(other, ec);
            assert!(other != trap::EC_WFX && other != trap::EC_SMC64);
        }
    }
    // PSCI: half the inputs with a PSCI-shaped function id.
    let fid = if esr & 2 == 0 {
        0x8400_0000 | (x0 & 0x4000_001f)
    } else {
        x0
    };
    match psci::call(fid, x1, x2, x3) {
        Outcome::Return(value) => {
            if !psci::is_psci(fid) {
                assert_eq!(value, psci::NOT_SUPPORTED);
            }
        }
        Outcome::SystemOff | Outcome::SystemReset | Outcome::CpuOff => assert!(psci::is_psci(fid)),
    }
    let x7 = if esr & 1 == 0 { hvc::ABI } else { x5 };
    if let Ok(hvc::Hypercall::Print { len, .. }) = hvc::decode(&[x0, x1, x2, x3, x4, x5, 0, x7]) {
        assert!(len <= hvc::MAX_PRINT);
    }
}
