// SPDX-License-Identifier: BSD-2-Clause
//! include/guest_ram_client.h against the Rust server: the C self-test
//! (every op, one refusal of each kind) through `Server::handle`.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use c_client_test::{run_c_selftest, set_handler, CClient, Layout};
use guest_ram::selftest::Layout as RamLayout;
use guest_ram::server::{ClientConfig, Server};
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};

const GPA: u64 = 0x4000_0000;
const SIZE: u64 = 16 << 20;
const CHANNEL: usize = 5;

#[test]
fn the_c_client_passes_against_the_rust_server() {
    let guest: &'static mut [u8] = Box::leak(vec![0u8; SIZE as usize].into_boxed_slice());
    let buffer_memory: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let buffer_ptr = buffer_memory.as_mut_ptr();
    // SAFETY: both allocations are leaked: they live for the whole test.
    let (region, buffer) = unsafe {
        (
            MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), SIZE),
            SharedBuffer::new(NonNull::new(buffer_ptr).unwrap(), 4096),
        )
    };
    let layout = RamLayout {
        gpa: GPA,
        size: SIZE,
    };
    let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    ram.register_at(GPA, layout.ram_len()).unwrap();
    let mut server = Server::<2>::new();
    server
        .add_client(ClientConfig::new(CHANNEL, buffer, &layout.selftest_windows()).unwrap())
        .unwrap();
    let state = Rc::new(RefCell::new((ram, server)));
    let shared = Rc::clone(&state);
    set_handler(Box::new(move |ch, label, count, regs| {
        let (ram, server) = &mut *shared.borrow_mut();
        server.handle(ram, ch, label, count, regs)
    }));
    let mut client = CClient {
        channel: CHANNEL as u32,
        buffer: buffer_ptr,
        buffer_len: 4096,
    };
    let (passed, total, lines) = run_c_selftest(
        &mut client,
        Layout {
            rw: layout.rw() + (7 << 20),
            ro: layout.ro(),
            outside: layout.outside(),
            not_ram: layout.not_ram(),
        },
    );
    for (name, ok) in &lines {
        println!(
            "c-client: check {}: {name}",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    assert!(total >= 20, "{total} checks");
    assert_eq!(passed, total, "{lines:#?}");
    // Every refusal the C side provoked reached the server.
    assert!(state.borrow().1.refusals(CHANNEL).unwrap() >= 10);
}
