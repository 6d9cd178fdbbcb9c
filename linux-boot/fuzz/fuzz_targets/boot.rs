// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the Linux loader with hostile inputs: Image headers, device tree
//! blobs, and the whole load into a small guest RAM. See `harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
