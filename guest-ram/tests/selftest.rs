// SPDX-License-Identifier: BSD-2-Clause
//! The demo system's self-test, run on the host against the same client
//! table the VMM PD builds, so that a failure on seL4 points at the glue.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::cell::RefCell;
use core::ptr::NonNull;

use guest_ram::client::Client;
use guest_ram::selftest::{self, Layout};
use guest_ram::server::{ClientConfig, Server};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};

#[test]
fn selftest_passes_against_the_host_server() {
    let layout = Layout {
        gpa: 0x4000_0000,
        size: 16 << 20,
    };
    let mut guest = vec![0u8; layout.size as usize];
    let mut buffer = vec![0u8; 4096];
    // SAFETY: both vectors outlive every user below.
    let (region, shared) = unsafe {
        (
            MappedRegion::new(
                layout.gpa,
                NonNull::new(guest.as_mut_ptr()).unwrap(),
                layout.size,
            ),
            SharedBuffer::new(NonNull::new(buffer.as_mut_ptr()).unwrap(), buffer.len()),
        )
    };
    let mut ram: GuestRam<1, 64> = GuestRam::new(&[region]).unwrap();
    ram.register_at(layout.gpa, layout.ram_len()).unwrap();
    ram.mark_allocated(layout.gpa, 2 << 20).unwrap();
    let mut server: Server<2> = Server::new();
    server
        .add_client(ClientConfig::new(1, shared, &layout.selftest_windows()).unwrap())
        .unwrap();
    let server = RefCell::new(server);
    let mut client = Client::new(Local::new(&server, &ram, 1), shared);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    let mut piece = [0u8; 1000];
    let view = |gpa: u64, len: u64, seed: u8| {
        selftest::verify(gpa, len, seed, &mut piece, |g, b| ram.read(g, b).is_ok())
    };
    let summary = selftest::run(&mut client, layout, &mut scratch, view, |name, ok| {
        lines.push(format!("{name}: {ok}"))
    });
    assert_eq!(summary.passed, summary.total, "{lines:#?}");
    assert_eq!(summary.total, 19);
}

#[test]
fn verify_reads_in_pieces_and_rejects_bad_input() {
    let bytes: Vec<u8> = (0..5000).map(|i| selftest::pattern(9, i)).collect();
    let read = |gpa: u64, piece: &mut [u8]| {
        piece.copy_from_slice(&bytes[gpa as usize..gpa as usize + piece.len()]);
        true
    };
    let mut scratch = [0u8; 700];
    assert!(selftest::verify(0, 5000, 9, &mut scratch, read));
    assert!(!selftest::verify(0, 5000, 8, &mut scratch, read));
    assert!(!selftest::verify(0, 0, 9, &mut scratch, read));
    assert!(!selftest::verify(u64::MAX, 2, 9, &mut scratch, read));
    assert!(!selftest::verify(0, 10, 9, &mut [], read));
    assert!(!selftest::verify(0, 10, 9, &mut scratch, |_, _| false));
}
