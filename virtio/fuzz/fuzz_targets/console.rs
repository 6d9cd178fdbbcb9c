// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the virtio-console service (both queues, backpressure, partial
//! input) with arbitrary rings and descriptors. See `harness/console.rs`.
#![no_main]

#[path = "../harness/console.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
