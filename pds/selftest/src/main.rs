// SPDX-License-Identifier: BSD-2-Clause
//! A client PD that runs `guest_ram::selftest` over real PPC and prints one
//! summary line, `guest-ram: selftest N/M passed`.
#![allow(unsafe_code, reason = "maps the buffer that system.xml gives it")]
#![no_std]
#![no_main]

use common::{Ppc, LAYOUT};
use guest_ram::client::Client;
use guest_ram::{selftest, SharedBuffer};
use sel4_microkit::{
    debug_println, memory_region_symbol, protection_domain, var, with_msg_regs_mut, Channel,
    MessageInfo, NullHandler,
};

#[protection_domain]
fn init() -> NullHandler {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps the buffer here for the PD's whole life.
    let buffer = unsafe {
        SharedBuffer::new(
            memory_region_symbol!(buffer_vaddr: *mut u8),
            *var!(buffer_size: usize = 0),
        )
    };
    let vmm = Channel::new(*var!(vmm_channel: usize = 0));
    let mut client = Client::new(Ppc(vmm), buffer);
    let guest_view = Channel::new(*var!(guest_view_channel: usize = 0));
    let ask_guest_view = |gpa: u64, len: u64, seed: u8| {
        with_msg_regs_mut(|regs| regs[..3].copy_from_slice(&[gpa, len, u64::from(seed)]));
        guest_view.pp_call(MessageInfo::new(0, 3)).label() == 1
    };
    let mut scratch = [0u8; 0x10000];
    let summary = selftest::run(
        &mut client,
        LAYOUT,
        &mut scratch,
        ask_guest_view,
        |name, ok| {
            debug_println!(
                "guest-ram: check {}: {name}",
                if ok { "ok" } else { "FAILED" }
            );
        },
    );
    // pd-memcpy's copies (every PD's memcpy and memmove with
    // `make MEMCPY=wide`) against a byte-by-byte reference, on the target.
    let memcpy_ok = match common::pd_memcpy::check() {
        Ok(cases) => {
            debug_println!(
                "guest-ram: check ok: memcpy/memmove, {cases} cases against a byte copy"
            );
            true
        }
        Err((dst, src, len)) => {
            debug_println!(
                "guest-ram: check FAILED: memcpy/memmove of {len} bytes from offset {src} to {dst}"
            );
            false
        }
    };
    debug_println!(
        "guest-ram: selftest {}/{} passed",
        summary.passed + u32::from(memcpy_ok),
        summary.total + 1
    );
    NullHandler::new()
}
