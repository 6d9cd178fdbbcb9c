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

use vcpu_fault::esr::{decode_data_abort, ZERO_REGISTER};
use vcpu_fault::hvc;

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
    let x7 = if esr & 1 == 0 { hvc::ABI } else { x5 };
    if let Ok(hvc::Hypercall::Print { len, .. }) = hvc::decode(&[x0, x1, x2, x3, x4, x5, 0, x7]) {
        assert!(len <= hvc::MAX_PRINT);
    }
}
