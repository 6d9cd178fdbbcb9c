// SPDX-License-Identifier: BSD-2-Clause
//! Replays the `switch` fuzz corpus (and deterministic pseudo-random
//! inputs, most of them with eight valid addresses and frames from their
//! own ports, so that deliveries really happen) through the fuzz harness.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn switch_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/switch");
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..if cfg!(miri) { 10 } else { 2_000 } {
        let mut bytes = Vec::new();
        // Most runs: the eight ports' MACs distinct and valid.
        if next() % 4 != 0 {
            bytes.extend(0..8u8);
        } else {
            bytes.extend_from_slice(&next().to_le_bytes());
        }
        // A deny list of pairs, or of raw characters.
        let deny = next().to_le_bytes();
        bytes.push(deny[0] | if deny[1] % 2 == 0 { 0x80 } else { 0 });
        bytes.extend_from_slice(&deny[2..]);
        for _ in 0..next() % 48 {
            bytes.extend_from_slice(&next().to_le_bytes()[..6]);
        }
        harness::run(&bytes);
    }
}
