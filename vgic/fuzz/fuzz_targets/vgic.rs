// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the vGIC with what a guest and its devices control: distributor
//! accesses, interrupts raised, ends of interrupt. See `harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
