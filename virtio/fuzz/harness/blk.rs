// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-blk backend fuzz harness, shared by `cargo fuzz run blk` and
//! the corpus-replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: `[size selector, avail idx (2 LE), queue-area bytes...]`; the
//! size selector's bit 7 picks the data path (set: the disk lives in the
//! blk PD's shared buffer, one copy; clear: a staging buffer, two), its
//! bit 6 `VIRTIO_RING_F_EVENT_IDX` (the driver's `used_event` is the
//! input's, like the rest of the rings). The
//! queue area (descriptor table, rings, request headers and data, 16 KiB)
//! is the guest's to scribble: the harness copies the input there, with
//! each descriptor's address folded into a 64 KiB range around guest RAM
//! unless its top bit is set, so that both near misses and wild addresses
//! occur. It then runs the backend twice through guest-ram's copy service
//! (a `Client` over `transport::Local`, the blk PD's window being only the
//! queue area) and checks that:
//! - nothing panics, and a served batch is at most the queue size;
//! - no byte of guest RAM outside the window changed;
//! - the used index the backend published equals what it served;
//! - with event indices, a call serves at most `MAX_ROUNDS` rounds (the
//!   guest's requests may rewrite its own available index under the
//!   device: a read into the ring).
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use std::cell::RefCell;
use std::ptr::NonNull;

use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use virtio::blk::{BlkBackend, RamDisk};
use virtio::queue::Layout;

pub const GPA: u64 = 0x4000_0000;
const RAM: usize = 0x10000;
const WINDOW: u64 = GPA + 0x4000;
const WINDOW_LEN: u64 = 0x4000;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: the harness keeps `memory` alive and otherwise untouched
    // while the buffer is in use.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

pub fn run(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let size = 1u16 << (data[0] % 5);
    let one_copy = data[0] & 0x80 != 0;
    let event_idx = data[0] & 0x40 != 0;
    let avail_idx = u16::from_le_bytes([data[1], data[2]]);
    let mut guest = vec![0u8; RAM];
    let area = &mut guest[(WINDOW - GPA) as usize..][..WINDOW_LEN as usize];
    for (dst, src) in area.iter_mut().zip(&data[3..]) {
        *dst = *src;
    }
    // Fold descriptor addresses (table at the window's start).
    for d in area[..16 * usize::from(size)].chunks_exact_mut(16) {
        let raw = u64::from_le_bytes(d[..8].try_into().unwrap());
        if raw >> 63 == 0 {
            let folded = GPA - 0x1000 + raw % (RAM as u64 + 0x2000);
            d[..8].copy_from_slice(&folded.to_le_bytes());
        }
    }
    let layout = Layout::new(size, WINDOW, WINDOW + 0x1000, WINDOW + 0x2000)
        .unwrap()
        .with_event_idx(event_idx);
    let avail = (WINDOW + 0x1000 + 2 - GPA) as usize;
    guest[avail..avail + 2].copy_from_slice(&avail_idx.to_le_bytes());
    let outside_before: Vec<u8> = outside(&guest);

    const DISK: usize = 0x2000;
    const STAGING: usize = 0x800;
    // The shared buffer: with one copy, the disk and then the staging
    // area; with two, the staging buffer (and a disk of its own).
    let mut shared_memory = vec![0u8; STAGING + if one_copy { DISK } else { 0 }];
    // One mapping, copied to both sides (as both PDs map one region): two
    // `&mut` borrows would invalidate each other's pointers.
    let shared = buffer(&mut shared_memory);
    let mut own_disk = vec![0u8; DISK];
    // SAFETY: `guest` outlives `ram`, and is accessed only through it
    // until `ram`'s last use.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), RAM as u64) };
    let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    ram.register_at(GPA, RAM as u64).unwrap();
    let server = RefCell::new(Server::<1>::new());
    let window = Window::read_write(WINDOW, WINDOW_LEN);
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, shared, &[window]).unwrap())
        .unwrap();
    let transport = Local::new(&server, &ram, 1);
    let (mut client, mut disk) = if one_copy {
        (
            Client::with_staging(transport, shared, DISK, STAGING).unwrap(),
            RamDisk::in_buffer(shared.sub(0, DISK).unwrap(), 0),
        )
    } else {
        (
            Client::new(transport, shared),
            RamDisk::new(buffer(&mut own_disk)),
        )
    };
    let mut backend = BlkBackend::new();
    let mut served: u16 = 0;
    for _ in 0..2 {
        match backend.process(&layout, &mut client, &mut disk) {
            Ok(n) => {
                let rounds = if event_idx {
                    virtio::virtq::MAX_ROUNDS
                } else {
                    1
                };
                assert!(usize::from(n) <= usize::from(size) * rounds);
                served = served.wrapping_add(n);
            }
            Err(_) => break,
        }
    }
    let mut used_idx = [0u8; 2];
    ram.read(layout.used_idx_gpa(), &mut used_idx).unwrap();
    if served > 0 {
        assert_eq!(u16::from_le_bytes(used_idx), served);
    }

    // `ram` is not used again: reading `guest` directly is sound now.
    assert!(
        outside(&guest) == outside_before,
        "a byte outside the window changed"
    );
}

fn outside(guest: &[u8]) -> Vec<u8> {
    let start = (WINDOW - GPA) as usize;
    let end = start + WINDOW_LEN as usize;
    [&guest[..start], &guest[end..]].concat()
}
