// SPDX-License-Identifier: BSD-2-Clause
//! Fuzzes the virtio-net service (transmit into bursts of any size,
//! receive of frames of any length) with arbitrary rings and descriptors.
//! See `harness/net.rs`.
#![no_main]

#[path = "../harness/net.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
