// SPDX-License-Identifier: BSD-2-Clause
//! Replays the `vgic` fuzz corpus (and deterministic pseudo-random inputs,
//! biased towards the registers Linux programs) through the fuzz harness.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn vgic_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/vgic");
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    let mut state = 0x5851_f42d_4c95_7f2du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..if cfg!(miri) { 20 } else { 3_000 } {
        let ops = next() % 64;
        let mut bytes = Vec::new();
        // Most runs start as Linux does: distributor on, all enabled.
        if next() % 4 != 0 {
            bytes.extend_from_slice(&[0x80, 0, 0, 4, 1, 0, 0, 0]);
            for word in 0..4u8 {
                bytes.extend_from_slice(&[0x80, word * 4, 1, 4, 0xff, 0xff, 0xff, 0xff]);
            }
        }
        for _ in 0..ops {
            let r = next();
            let mut op = r.to_le_bytes();
            // Half the distributor accesses at the first 0x1000 (most of
            // them then hit registers), and half the raises at ids Linux
            // uses, so that deliveries really happen.
            if op[0] % 4 == 0 && op[3] & 1 == 0 {
                op[2] &= 0x0f;
                op[3] = if op[3] & 2 == 0 { 4 } else { 1 };
            }
            if op[0] % 4 == 1 && op[3] & 1 == 0 {
                op[1] = [27, 33, 48, 5][usize::from(op[3] >> 6)];
                op[2] = 0;
            }
            bytes.extend_from_slice(&op);
        }
        harness::run(&bytes);
    }
}
