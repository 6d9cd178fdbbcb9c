//! A client PD that runs `guest_ram::selftest` over real PPC and prints one
//! summary line, `guest-ram: selftest N/M passed`.
#![no_std]
#![no_main]

use common::{channels, Ppc, BUFFER_SIZE, LAYOUT};
use guest_ram::client::Client;
use guest_ram::{selftest, SharedBuffer};
use sel4_microkit::{
    debug_println, memory_region_symbol, protection_domain, with_msg_regs_mut, Channel,
    MessageInfo, NullHandler,
};

#[protection_domain]
fn init() -> NullHandler {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps the buffer here for the PD's whole life.
    let buffer =
        unsafe { SharedBuffer::new(memory_region_symbol!(buffer_vaddr: *mut u8), BUFFER_SIZE) };
    let mut client = Client::new(Ppc(Channel::new(channels::CLIENT_VMM)), buffer);
    let guest_view = Channel::new(channels::SELFTEST_GUEST_VIEW);
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
    debug_println!(
        "guest-ram: selftest {}/{} passed",
        summary.passed,
        summary.total
    );
    NullHandler::new()
}
