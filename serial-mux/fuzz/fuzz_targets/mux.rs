// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the serial multiplexer with what guests and the keyboard
//! control: console output of several VMs, flushes, UART input, queue
//! consumption and power changes, interleaved. See `harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
