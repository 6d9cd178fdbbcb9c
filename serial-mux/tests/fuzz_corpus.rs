// SPDX-License-Identifier: BSD-2-Clause
//! Replays the `mux` fuzz corpus (and deterministic pseudo-random inputs,
//! biased towards newlines, carriage returns and escapes) through the
//! fuzz harness.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

#[test]
fn mux_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mux");
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..if cfg!(miri) { 20 } else { 3_000 } {
        let len = next() % 512;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                // A quarter of the bytes are the ones the rules are about.
                match r % 16 {
                    0 | 1 => b'\n',
                    2 => b'\r',
                    3 => 0x1c,
                    4 => b'0' + (r >> 8) as u8 % 4,
                    _ => (r >> 16) as u8,
                }
            })
            .collect();
        harness::run(&bytes);
    }
}
