// SPDX-License-Identifier: BSD-2-Clause
//! Replays the `esr` fuzz corpus (and deterministic pseudo-random inputs)
//! through the fuzz harness.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn esr_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/esr");
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
        let bytes: Vec<u8> = (0..80)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        harness::run(&bytes);
    }
}
