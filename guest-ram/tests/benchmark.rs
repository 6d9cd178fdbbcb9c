// SPDX-License-Identifier: BSD-2-Clause
//! The seL4 benchmark's logic on the host: every operation succeeds and
//! every row is reported, with a counter that is a call count.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::cell::RefCell;
use core::ptr::NonNull;

use guest_ram::benchmark::{run, Row};
use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};

const GPA: u64 = 0x4000_0000;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: the test keeps `memory` alive while the buffer is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

#[test]
fn every_row_reported_and_nothing_fails() {
    let mut guest = vec![0u8; 1 << 20];
    let (mut staging, mut a, mut b) = (
        vec![0u8; 64 << 10],
        vec![1u8; 64 << 10],
        vec![0u8; 64 << 10],
    );
    let mut scratch = vec![0u8; 64 << 10];
    // SAFETY: `guest` outlives `ram`.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), 1 << 20) };
    let mut ram = GuestRam::<1, 4>::new(&[region]).unwrap();
    ram.register_at(GPA, 1 << 20).unwrap();
    let staging = buffer(&mut staging);
    let server = RefCell::new(Server::<1>::new());
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, staging, &[Window::read_write(GPA, 1 << 20)]).unwrap())
        .unwrap();
    let mut client = Client::new(Local::new(&server, &ram, 1), staging);
    let mut clock = 0u64;
    let mut rows: Vec<Row> = Vec::new();
    let failed = run(
        &mut client,
        GPA,
        &mut scratch,
        &buffer(&mut a),
        &buffer(&mut b),
        || {
            clock += 1000;
            clock
        },
        |row| rows.push(*row),
    );
    assert_eq!(failed, 0);
    assert_eq!(rows.len(), 1 + 2 * 5);
    assert!(rows.iter().all(|r| r.ticks > 0));
    assert!(format!("{}", rows[2]).contains("x local copy"));
}
