// SPDX-License-Identifier: BSD-2-Clause
//! Replays the fuzz corpus (and a few thousand deterministic pseudo-random
//! inputs) through the fuzz harness, so `make test` re-checks what the
//! long fuzz runs found.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::Path;

use guest_ram::protocol::{self, Op, Segment, MSG_WORDS};

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/server");
    let mut n = 0;
    // Under Miri (make miri), a sample: it is thousands of times slower.
    let take = if cfg!(miri) { 4 } else { usize::MAX };
    for entry in fs::read_dir(dir).unwrap().take(take) {
        harness::run(&fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n > 0, "the corpus is empty");
}

fn input(channel: u8, label: u64, msg: &[u64]) -> Vec<u8> {
    let mut v = vec![channel];
    v.extend_from_slice(&label.to_le_bytes());
    v.push(msg.len() as u8);
    for w in msg {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

#[test]
fn well_formed_and_mutated_requests() {
    // A tiny xorshift keeps this deterministic without a dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut msg = [0u64; MSG_WORDS];
    for _ in 0..if cfg!(miri) { 12 } else { 3000 } {
        let op = [Op::Read, Op::Write, Op::ReadV, Op::WriteV][(next() % 4) as usize];
        let count = if matches!(op, Op::Read | Op::Write) {
            1
        } else {
            1 + next() % 5
        };
        let segs: Vec<Segment> = (0..count)
            .map(|_| {
                Segment::new(
                    harness::GPA + next() % 0x4800,
                    1 + next() % 300,
                    next() % 520,
                )
            })
            .collect();
        let (label, words) = protocol::encode_copy(op, &segs, &mut msg).unwrap();
        let mut data = input((next() % 3) as u8, label, &msg[..words]);
        if next() % 3 == 0 {
            let i = (next() as usize) % data.len();
            data[i] ^= 1 << (next() % 8);
        }
        harness::run(&data);
    }
}
