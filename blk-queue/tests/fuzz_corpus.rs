// SPDX-License-Identifier: BSD-2-Clause
//! Replays the fuzz corpus (and deterministic pseudo-random inputs)
//! through the fuzz harness, so `make test` re-checks what the long fuzz
//! runs found.

#[path = "../fuzz/harness/queue.rs"]
mod queue;

use std::fs;
use std::path::Path;

#[test]
fn queue_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/queue");
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        queue::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    // A tiny xorshift keeps this deterministic without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..if cfg!(miri) { 10 } else { 2000 } {
        let bytes: Vec<u8> = (0..(n % 211) + 1)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        queue::run(&bytes);
    }
}
