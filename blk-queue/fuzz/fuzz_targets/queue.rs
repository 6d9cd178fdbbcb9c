// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes both sides of the sDDF block rings with whatever the other side
//! may leave in shared memory. See `harness/queue.rs`.
#![no_main]

#[path = "../harness/queue.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
