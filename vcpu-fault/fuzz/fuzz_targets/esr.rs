// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the data-abort decoder and the hypercall decoder with arbitrary
//! syndromes and registers. See `harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
