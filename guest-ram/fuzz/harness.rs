// SPDX-License-Identifier: BSD-2-Clause
//! The server fuzz harness, shared by the `cargo fuzz` target and the
//! corpus-replay test (`tests/fuzz_corpus.rs`), so every corpus entry is
//! re-checked by `make test`.
//!
//! Input: `[channel, label (8 bytes LE), words, message bytes...]`. The
//! harness builds a fixed system (two clients, guest RAM with a hole and an
//! allocated part), hands the message to `Server::handle` and checks:
//! - it returns, and its reply decodes with a valid status and word count;
//! - a refused request changed no byte of guest RAM or of any buffer;
//! - bytes outside the caller's writable windows never change;
//! - an accepted request reports exactly the bytes its segments cover.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::cell::RefCell;
use core::ptr::NonNull;

use guest_ram::protocol::{self, Status, MSG_WORDS};
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};

pub const GPA: u64 = 0x8000_0000;
const RAM: usize = 0x4000;

struct Rig {
    guest: Vec<u8>,
    buffers: [Vec<u8>; 2],
}

pub fn run(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let channel = usize::from(data[0] % 4);
    let label = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let words = usize::from(data[9]);
    let mut regs = [0u64; MSG_WORDS];
    for (i, chunk) in data[10..].chunks(8).take(MSG_WORDS).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        regs[i] = u64::from_le_bytes(word);
    }

    let mut rig = Rig {
        guest: (0..RAM).map(|i| i as u8).collect(),
        buffers: [vec![0x11; 512], vec![0x22; 100]],
    };
    // SAFETY: the vectors live in `rig` until the end of this function and
    // are only read through references after `handle` returns.
    let (region, buf0, buf1) = unsafe {
        (
            MappedRegion::new(
                GPA,
                NonNull::new(rig.guest.as_mut_ptr()).unwrap(),
                RAM as u64,
            ),
            SharedBuffer::new(NonNull::new(rig.buffers[0].as_mut_ptr()).unwrap(), 512),
            SharedBuffer::new(NonNull::new(rig.buffers[1].as_mut_ptr()).unwrap(), 100),
        )
    };
    let mut ram: GuestRam<1, 8> = GuestRam::new(&[region]).unwrap();
    // RAM with a hole at 0x3000..0x3800 and an allocated kernel at 0..0x1000.
    ram.register_at(GPA, 0x3000).unwrap();
    ram.register_at(GPA + 0x3800, 0x800).unwrap();
    ram.mark_allocated(GPA, 0x1000).unwrap();
    let writable = [(GPA + 0x1000, GPA + 0x2000)];
    let server = RefCell::new(Server::<2>::new());
    let windows0 = [
        Window::read_write(GPA + 0x1000, 0x1000),
        Window::read_only(GPA, 0x4000),
    ];
    let windows1 = [Window::read_only(GPA + 0x2000, 0x2000)];
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, buf0, &windows0).unwrap())
        .unwrap();
    server
        .borrow_mut()
        .add_client(ClientConfig::new(2, buf1, &windows1).unwrap())
        .unwrap();

    let guest_before = rig.guest.clone();
    let buffers_before = rig.buffers.clone();
    let (reply_label, reply_words) = server
        .borrow_mut()
        .handle(&ram, channel, label, words, &mut regs);
    assert!(reply_words <= MSG_WORDS);
    let reply = protocol::decode_reply(reply_label, &regs[..reply_words]).expect("reply decodes");
    if reply.status != Status::Ok {
        assert_eq!(reply.bytes, 0);
        assert_eq!(rig.guest, guest_before, "refused request changed guest RAM");
        assert_eq!(
            rig.buffers, buffers_before,
            "refused request changed a buffer"
        );
        return;
    }
    // Accepted: only client 1 may write, only inside its RW window.
    for (i, (now, was)) in rig.guest.iter().zip(&guest_before).enumerate() {
        let gpa = GPA + i as u64;
        if now != was {
            assert_eq!(channel, 1, "a read-only client changed guest RAM");
            assert!(
                writable.iter().any(|(s, e)| (*s..*e).contains(&gpa)),
                "write outside window at {gpa:#x}"
            );
        }
    }
    // Only the caller's buffer may change.
    let other = if channel == 1 { 1 } else { 0 };
    assert_eq!(
        rig.buffers[other], buffers_before[other],
        "another client's buffer changed"
    );
}
