// SPDX-License-Identifier: BSD-2-Clause
//! Replays the fuzz corpora (and deterministic pseudo-random inputs)
//! through the fuzz harnesses, so `make test` re-checks what the long fuzz
//! runs found.

#[path = "../fuzz/harness/blk.rs"]
mod blk;
#[path = "../fuzz/harness/console.rs"]
mod console;
#[path = "../fuzz/harness/mmio.rs"]
mod mmio;
#[path = "../fuzz/harness/net.rs"]
mod net;

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    // Under Miri (make miri), a sample: it is thousands of times slower.
    let take = if cfg!(miri) { 8 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        run(&fs::read(entry.unwrap().path()).unwrap());
    }
    // A tiny xorshift keeps this deterministic without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..if cfg!(miri) { 10 } else { 500 } {
        let bytes: Vec<u8> = (0..(n % 97) * 16 + 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        run(&bytes);
    }
}

#[test]
fn mmio_corpus() {
    replay("mmio", mmio::run);
}

#[test]
fn blk_corpus() {
    replay("blk", blk::run);
}

#[test]
fn console_corpus() {
    replay("console", console::run);
}

#[test]
fn net_corpus() {
    replay("net", net::run);
}
