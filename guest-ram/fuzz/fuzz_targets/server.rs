// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the VMM's request handling: arbitrary channel, label, word count
//! and message-register contents. See `harness.rs` for what is checked.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
