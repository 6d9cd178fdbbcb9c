// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the switch with a random configuration and what the VMs send:
//! frames of any length and addresses, bursts, no-buffer reports. See
//! `harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
