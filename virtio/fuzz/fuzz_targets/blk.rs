// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the virtio-blk backend (queue walk, request handling) with
//! arbitrary rings and descriptors. See `harness/blk.rs`.
#![no_main]

#[path = "../harness/blk.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
