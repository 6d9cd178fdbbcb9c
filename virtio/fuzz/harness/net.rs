// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-net fuzz harness, shared by `cargo fuzz run net` and the
//! corpus-replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: `[size selector, tx avail idx (2 LE), rx avail idx (2 LE), burst
//! buffer length (2 LE), frame count, queue-area bytes...]`. The queue
//! area (both queues' descriptor tables and rings, and the guest's
//! buffers, 16 KiB) is the guest's to scribble, with each descriptor's
//! address folded into a 64 KiB range around guest RAM and its length
//! below 2 KiB unless their top bits are set, so that both near misses
//! and wild values occur; with the selector's bit 6 set ("tidy"), the
//! addresses fold into the buffer part of the area and the window's end
//! only, so no receive buffer overlaps a ring. The selector's bit 7 sets
//! `VIRTQ_AVAIL_F_NO_INTERRUPT` on both rings. The frame count's bit 7
//! ("routed") makes the transmit a `transmit_routed` into two areas by a
//! router whose answers come from the input (bit 6: it peeks first), and
//! the receive a `receive_placed` of the first area's frames and a span
//! from the input. The burst length's top bit (input byte 6, bit 7)
//! negotiates `VIRTIO_RING_F_EVENT_IDX` for both queues (the driver's
//! `used_event` words are the input's). The harness publishes both
//! queues in a shared page and runs the `net` PD's `NetService` (transmit
//! into a `Burst`, receive a batch of frames of lengths from the input,
//! twice) through guest-ram's copy service (a `Client` over
//! `transport::Local`, its window only the queue area), and checks:
//! - nothing panics;
//! - every frame in a burst is an Ethernet frame by length (14..=1514),
//!   a burst never holds more than 64 frames or more bytes than its
//!   buffer, and the counters agree: frames and bytes out = what the
//!   bursts got, frames in = what `receive` said it delivered;
//! - `receive` delivers at most what it consumed, and consumes at most
//!   the frames it was given;
//! - used indices = chains used (tidy inputs: otherwise the guest may
//!   point a receive buffer at a used ring);
//! - no signal is asked for while the driver said no interrupt, unless
//!   the device needs a reset (without event indices: with them the flag
//!   means nothing);
//! - with event indices and tidy inputs, each queue's `avail_event` is
//!   the device's position once it used a chain there (transmit: the
//!   chains used; receive: one behind, no notifications);
//! - no byte of guest RAM outside the window changed.
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
use virtio::net::{
    Burst, Mtu, NetService, Router, HDR_LEN, MAX_BURST, MIN_FRAME, MIN_MTU, PEEK_LEN, RECEIVEQ,
    TRANSMITQ,
};
use virtio::queue::Layout;
use virtio::shared::{self, QueueState};
use virtio::virtq::GuestDma;

pub const GPA: u64 = 0x4000_0000;
const RAM: usize = 0x10000;
const WINDOW: u64 = GPA + 0x4000;
const WINDOW_LEN: u64 = 0x4000;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: the harness keeps `memory` alive and otherwise untouched
    // while the buffer is in use.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

/// A router whose answers come from the input.
struct FuzzRouter<'a> {
    peek: bool,
    answers: &'a [u8],
    asked: usize,
    /// The device's longest frame.
    max_frame: usize,
}

impl Router for FuzzRouter<'_> {
    fn must_peek(&self) -> bool {
        self.peek
    }
    fn route(&mut self, len: usize, head: Option<&[u8]>) -> u8 {
        assert!((MIN_FRAME..=self.max_frame).contains(&len));
        assert!(head.is_none_or(|h| h.len() == PEEK_LEN));
        assert!(head.is_some() == self.peek);
        self.asked += 1;
        self.answers
            .get(self.asked % self.answers.len().max(1))
            .map_or(1, |b| b & 3)
    }
}

pub fn run(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let routed = data[7] & 0x80 != 0;
    // The device's MTU, by the input's length: the default, a larger one
    // (frames to 1614 bytes, which the lengths below reach) or the least.
    let mtu = [Mtu::DEFAULT.get(), 1600, MIN_MTU][data.len() % 3];
    let mtu = Mtu::new(mtu).unwrap();
    let max = mtu.max_frame();
    let size = 1u16 << (data[0] % 5);
    let event_idx = data[6] & 0x80 != 0;
    // The flag means nothing with event indices.
    let no_interrupt = data[0] & 0x80 != 0 && !event_idx;
    let tidy = data[0] & 0x40 != 0;
    let burst_len = usize::from(u16::from_le_bytes([data[5], data[6]])) % (8 * 1024);
    // Frames to receive: lengths around the valid range, contents from
    // their index.
    let frames: Vec<Vec<u8>> = data[8..]
        .iter()
        .take(usize::from(data[7] % 80))
        .enumerate()
        .map(|(i, b)| {
            let len = match b % 4 {
                0 => usize::from(*b) / 16,
                1 => max + usize::from(*b) / 64,
                _ => MIN_FRAME + usize::from(*b) * 6,
            };
            (0..len).map(|j| (i ^ j) as u8).collect()
        })
        .collect();
    let (mut guest, tx, rx, outside_before, _) = setup(data);
    let mut page_memory = vec![0u8; shared::PAGE_LEN];
    let page = buffer(&mut page_memory);
    publish(&page, size, &tx, &rx, event_idx);
    let mut shared_memory = vec![0u8; 0x2000];
    let shared = buffer(&mut shared_memory);
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
    let mut client = Client::new(Local::new(&server, &ram, 1), shared);
    let mut service = NetService::with_mtu(page, mtu);
    // The receive staging area a caller gives (`Net::receive`): a whole burst.
    let mut staging = vec![0u8; virtio::net::RX_STAGING];
    if routed {
        routed_steps(data, &mut service, &mut client, &page, no_interrupt, max);
        assert!(
            outside(&guest) == outside_before,
            "a byte outside the window changed"
        );
        return;
    }
    let mut buf = vec![0u8; burst_len];
    let (mut frames_out, mut bytes_out, mut delivered) = (0u64, 0u64, 0u64);
    let mut rest: &[Vec<u8>] = &frames;
    for _ in 0..2 {
        let mut burst = Burst::new(&mut buf);
        let done = service.transmit(&mut client, &mut burst);
        let broken = shared::read_backend(&page).unwrap().needs_reset.get() != 0;
        assert!(!(done.signal && no_interrupt) || broken);
        assert!(burst.len() <= MAX_BURST);
        let mut held = 0;
        for frame in burst.frames() {
            assert!((MIN_FRAME..=max).contains(&frame.len()));
            held += HDR_LEN + frame.len();
            frames_out += 1;
            bytes_out += frame.len() as u64;
        }
        assert!(held <= burst_len);
        let batch: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
        let done = service.receive(&mut client, &batch, &mut staging);
        assert!(done.delivered <= done.consumed && done.consumed <= batch.len());
        let broken = shared::read_backend(&page).unwrap().needs_reset.get() != 0;
        assert!(!(done.signal && no_interrupt) || broken);
        delivered += done.delivered as u64;
        rest = &rest[done.consumed..];
    }
    let stats = service.stats();
    assert_eq!((stats.tx_frames, stats.tx_bytes), (frames_out, bytes_out));
    assert_eq!(stats.rx_frames, delivered);
    let used = |layout: &Layout| {
        let mut idx = [0u8; 2];
        ram.read(layout.used_idx_gpa(), &mut idx).unwrap();
        u64::from(u16::from_le_bytes(idx))
    };
    if tidy {
        assert_eq!(used(&tx), stats.tx_chains);
        assert_eq!(used(&rx), stats.rx_chains);
    }
    let avail_event = |layout: &Layout| {
        let mut idx = [0u8; 2];
        ram.read(layout.avail_event_gpa(), &mut idx).unwrap();
        u16::from_le_bytes(idx)
    };
    if tidy && event_idx && stats.broken == 0 {
        if stats.tx_chains > 0 {
            assert_eq!(avail_event(&tx), stats.tx_chains as u16);
        }
        if stats.rx_chains > 0 {
            assert_eq!(avail_event(&rx), (stats.rx_chains as u16).wrapping_sub(1));
        }
    }
    // `ram` is not used again: reading `guest` directly is sound now.
    assert!(
        outside(&guest) == outside_before,
        "a byte outside the window changed"
    );
}

/// The guest's memory from the input: the queue area, both queues'
/// descriptors folded as the module says, the rings' flags and indices.
/// Returns it, the two layouts, the bytes outside the window and the
/// queue size.
fn setup(data: &[u8]) -> (Vec<u8>, Layout, Layout, Vec<u8>, u16) {
    let size = 1u16 << (data[0] % 5);
    let no_interrupt = data[0] & 0x80 != 0;
    let tidy = data[0] & 0x40 != 0;
    let tx_idx = u16::from_le_bytes([data[1], data[2]]);
    let rx_idx = u16::from_le_bytes([data[3], data[4]]);
    let mut guest = vec![0u8; RAM];
    let area = &mut guest[(WINDOW - GPA) as usize..][..WINDOW_LEN as usize];
    for (dst, src) in area.iter_mut().zip(&data[8..]) {
        *dst = *src;
    }
    // Transmit queue at the window's start, receive queue 0x800 on.
    let tx = Layout::new(size, WINDOW, WINDOW + 0x1000, WINDOW + 0x1400).unwrap();
    let rx = Layout::new(size, WINDOW + 0x800, WINDOW + 0x1800, WINDOW + 0x1c00).unwrap();
    for layout in [&tx, &rx] {
        let table = (layout.desc_table().gpa - GPA) as usize;
        for d in guest[table..][..16 * usize::from(size)].chunks_exact_mut(16) {
            let raw = u64::from_le_bytes(d[..8].try_into().unwrap());
            if raw >> 63 == 0 {
                let folded = if tidy {
                    WINDOW + 0x2000 + raw % 0x2800
                } else {
                    GPA - 0x1000 + raw % (RAM as u64 + 0x2000)
                };
                d[..8].copy_from_slice(&folded.to_le_bytes());
            }
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
            if len >> 31 == 0 {
                d[8..12].copy_from_slice(&(len % 2048).to_le_bytes());
            }
        }
        let flags = (layout.avail_flags_gpa() - GPA) as usize;
        guest[flags..flags + 2].copy_from_slice(&u16::from(no_interrupt).to_le_bytes());
    }
    for (layout, idx) in [(&tx, tx_idx), (&rx, rx_idx)] {
        let at = (layout.avail_idx_gpa() - GPA) as usize;
        guest[at..at + 2].copy_from_slice(&idx.to_le_bytes());
        let at = (layout.used_idx_gpa() - GPA) as usize;
        guest[at..at + 2].copy_from_slice(&[0, 0]);
    }
    let outside_before = outside(&guest);

    (guest, tx, rx, outside_before, size)
}

/// Publishes both queues in the shared page, with event indices if
/// `event_idx`.
fn publish(page: &SharedBuffer, size: u16, tx: &Layout, rx: &Layout, event_idx: bool) {
    for (n, layout) in [(RECEIVEQ, rx), (TRANSMITQ, tx)] {
        let state = QueueState::new(
            1,
            true,
            size,
            layout.desc_table().gpa,
            layout.avail_flags_gpa(),
            layout.used_idx_gpa() - 2,
        )
        .with_event_idx(event_idx);
        shared::publish_queue_n(page, n, &state).unwrap();
    }
}

/// [`run`]'s routed mode: a routed transmit into two areas, a placed
/// receive of the first area's frames and a span from the input; the same
/// checks where they apply.
fn routed_steps<M: GuestDma>(
    data: &[u8],
    service: &mut NetService,
    client: &mut M,
    page: &SharedBuffer,
    no_interrupt: bool,
    max: usize,
) {
    let area_len = usize::from(u16::from_le_bytes([data[5], data[6]])) % (8 * 1024);
    let (mut a, mut b) = (vec![0u8; area_len], vec![0u8; 4096]);
    let mut router = FuzzRouter {
        peek: data[7] & 0x40 != 0,
        answers: data.get(8..40).unwrap_or(&[]),
        asked: 0,
        max_frame: max,
    };
    let spans = {
        let mut areas = [Burst::new(&mut a), Burst::new(&mut b)];
        let done = service.transmit_routed(client, &mut router, &mut areas);
        let broken = shared::read_backend(page).unwrap().needs_reset.get() != 0;
        assert!(!(done.signal && no_interrupt) || broken);
        for area in &areas {
            assert!(area.len() <= MAX_BURST);
            for &(start, len) in area.spans() {
                assert!((MIN_FRAME..=max).contains(&len) && start >= HDR_LEN);
            }
        }
        let mut spans = areas[0].spans().to_vec();
        spans.push((usize::from(data[1]) * 7, usize::from(data[2]) * 13));
        spans
    };
    let done = service.receive_placed(client, &mut a, &spans);
    assert!(done.delivered <= done.consumed && done.consumed <= spans.len());
    assert_eq!(service.stats().rx_frames, done.delivered as u64);
}

fn outside(guest: &[u8]) -> Vec<u8> {
    let start = (WINDOW - GPA) as usize;
    let end = start + WINDOW_LEN as usize;
    [&guest[..start], &guest[end..]].concat()
}
