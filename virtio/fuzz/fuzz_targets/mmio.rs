// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the virtio-mmio register file with arbitrary access sequences.
//! See `harness/mmio.rs` for what is checked.
#![no_main]

#[path = "../harness/mmio.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
