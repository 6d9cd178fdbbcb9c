// SPDX-License-Identifier: BSD-2-Clause
//! Host system test: one VMM server, several clients with their own shared
//! buffers, real memory on both sides, every message through the exact
//! message-register layout ([`transport::Local`]). Every byte of guest RAM is
//! checked after each step against what should be there.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use core::cell::RefCell;
use core::ptr::NonNull;

use guest_ram::client::{Client, ClientError, Placed, Transport};
use guest_ram::protocol::{self, Op, Segment, Status, MSG_WORDS};
use guest_ram::server::{ClientConfig, ConfigError, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};

const BASE: u64 = 0x4000_0000;
const REGION: u64 = 0x1_0000;
/// Two gpa-contiguous backing regions; the last page is backed but not RAM.
const RAM_LEN: u64 = 2 * REGION - 0x1000;

const A: usize = 1; // read-write over most RAM, read-only over the top
const B: usize = 2; // small odd-sized buffer, mostly read-only
const UNKNOWN: usize = 5;

struct Memory(Vec<u8>);

impl Memory {
    fn new(len: usize, fill: u8) -> Self {
        Memory(vec![fill; len])
    }
    fn ptr(&mut self) -> NonNull<u8> {
        NonNull::new(self.0.as_mut_ptr()).unwrap()
    }
    fn shared(&mut self) -> SharedBuffer {
        // SAFETY: the memory outlives every user in these tests, and is only
        // looked at through `snapshot` between calls.
        unsafe { SharedBuffer::new(self.ptr(), self.0.len()) }
    }
}

struct System {
    low: Memory,
    high: Memory,
    _buf_a: Memory,
    _buf_b: Memory,
    shared_a: SharedBuffer,
    shared_b: SharedBuffer,
    ram: GuestRam<2, 16>,
    server: RefCell<Server<4>>,
}

impl System {
    fn new() -> Box<Self> {
        let mut low = Memory::new(REGION as usize, 0);
        let mut high = Memory::new(REGION as usize, 0);
        let mut buf_a = Memory::new(4096, 0xaa);
        let mut buf_b = Memory::new(1000, 0xbb);
        // SAFETY: the vectors move into the same `System` as `ram`; their
        // heap blocks do not move.
        let regions = unsafe {
            [
                MappedRegion::new(BASE + REGION, high.ptr(), REGION),
                MappedRegion::new(BASE, low.ptr(), REGION),
            ]
        };
        let mut ram = GuestRam::new(&regions).unwrap();
        ram.register_at(BASE, RAM_LEN).unwrap();
        let mut server = Server::new();
        let a = ClientConfig::new(
            A,
            buf_a.shared(),
            &[
                Window::read_write(BASE, 0x1_8000),
                Window::read_only(BASE + 0x1_8000, 0x8000),
            ],
        )
        .unwrap();
        let b = ClientConfig::new(
            B,
            buf_b.shared(),
            &[
                Window::read_only(BASE, 0x1_0000),
                Window::read_write(BASE + 0x8000, 0x1000),
            ],
        )
        .unwrap();
        server.add_client(a).unwrap();
        server.add_client(b).unwrap();
        Box::new(System {
            low,
            high,
            shared_a: buf_a.shared(),
            shared_b: buf_b.shared(),
            _buf_a: buf_a,
            _buf_b: buf_b,
            ram,
            server: RefCell::new(server),
        })
    }

    fn guest(&self) -> Vec<u8> {
        let mut all = self.low.0.clone();
        all.extend_from_slice(&self.high.0);
        all
    }
}

fn client<'a>(
    sys: &'a System,
    channel: usize,
    buffer: SharedBuffer,
) -> Client<Local<'a, 2, 16, 4>> {
    Client::new(Local::new(&sys.server, &sys.ram, channel), buffer)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn chunked_write_and_read_across_regions_and_clients() {
    let sys = System::new();
    let (buf_a, buf_b) = (sys.shared_a, sys.shared_b);
    let data = pattern(0x1_3000 + 77, 3);
    let gpa = BASE + 0x1234;
    let mut expected = sys.guest();
    expected[0x1234..0x1234 + data.len()].copy_from_slice(&data);

    let mut a = client(&sys, A, buf_a);
    a.write(gpa, &data).unwrap();
    assert_eq!(sys.guest(), expected, "guest RAM after a chunked write");

    let mut back = vec![0; data.len()];
    a.read(gpa, &mut back).unwrap();
    assert_eq!(back, data);

    // B sees A's bytes through its read-only window, 1000 bytes per call.
    let mut b = client(&sys, B, buf_b);
    let mut seen = vec![0; 0x1_0000 - 0x1234];
    b.read(gpa, &mut seen).unwrap();
    assert_eq!(seen, data[..seen.len()]);
    // The VMM's own view agrees.
    let mut direct = vec![0; data.len()];
    sys.ram.read(gpa, &mut direct).unwrap();
    assert_eq!(direct, data);
}

#[test]
fn every_refusal_leaves_memory_alone() {
    let sys = System::new();
    let (buf_a, buf_b) = (sys.shared_a, sys.shared_b);
    let mut a = client(&sys, A, buf_a);
    let mut b = client(&sys, B, buf_b);
    a.write(BASE, &pattern(0x2000, 9)).unwrap();
    let before = sys.guest();
    let refused = |e| Err(ClientError::Refused(e));

    // Read-only window.
    assert_eq!(b.write(BASE, &[1, 2, 3]), refused(Status::NoPermission));
    assert_eq!(
        a.write(BASE + 0x1_8000, &[1]),
        refused(Status::NoPermission)
    );
    assert_eq!(b.fill(BASE, 16, 0), refused(Status::NoPermission));
    // Outside every window, or straddling a window's end.
    assert_eq!(
        b.read(BASE + 0x1_0000, &mut [0; 8]),
        refused(Status::OutsideWindow)
    );
    assert_eq!(
        b.read(BASE + 0xfff0, &mut [0; 0x20]),
        refused(Status::OutsideWindow)
    );
    assert_eq!(
        a.read(BASE - 1, &mut [0; 2]),
        refused(Status::OutsideWindow)
    );
    // In a window but not RAM.
    assert_eq!(
        a.read(BASE + RAM_LEN - 4, &mut [0; 8]),
        refused(Status::NotRam)
    );
    // Shapes the client library refuses before calling.
    assert_eq!(a.read(BASE, &mut []), Err(ClientError::ZeroLength));
    assert_eq!(a.read(u64::MAX, &mut [0; 2]), Err(ClientError::Overflow));
    assert_eq!(
        a.readv(&[GpaRange { gpa: BASE, len: 4 }], &mut [0; 5]),
        Err(ClientError::LengthMismatch)
    );
    assert_eq!(
        a.read_in_place(BASE, 4097).err(),
        Some(ClientError::TooLarge)
    );
    // A scatter-gather list with one bad segment moves nothing at all.
    let segs = [
        GpaRange { gpa: BASE, len: 8 },
        GpaRange {
            gpa: BASE + 0x1_0000,
            len: 8,
        },
    ];
    assert_eq!(b.writev(&segs, &[7; 16]), refused(Status::NoPermission));
    assert_eq!(sys.guest(), before);
    assert_eq!(sys.server.borrow().refusals(B), Some(5));
}

#[test]
fn scatter_gather_packs_long_chains_and_splits_segments() {
    let sys = System::new();
    let buf_a = sys.shared_a;
    let mut a = client(&sys, A, buf_a);
    // 60 descriptors (more than MAX_SEGMENTS per call), some larger than the
    // whole buffer, at odd offsets.
    let segs: Vec<GpaRange> = (0..60u64)
        .map(|i| GpaRange {
            gpa: BASE + i * 0x300 + (i % 7),
            len: if i % 10 == 3 {
                5000
            } else {
                1 + (i * 37) % 200
            },
        })
        .filter(|s| s.gpa + s.len <= BASE + 0x1_8000)
        .collect();
    // Keep them disjoint so the expected image is well defined.
    let mut disjoint: Vec<GpaRange> = Vec::new();
    for s in segs {
        if disjoint.last().is_none_or(|l| l.gpa + l.len <= s.gpa) {
            disjoint.push(s);
        }
    }
    let total: u64 = disjoint.iter().map(|s| s.len).sum();
    let data = pattern(total as usize, 200);
    let mut expected = sys.guest();
    let mut at = 0;
    for s in &disjoint {
        let off = (s.gpa - BASE) as usize;
        expected[off..off + s.len as usize].copy_from_slice(&data[at..at + s.len as usize]);
        at += s.len as usize;
    }
    a.writev(&disjoint, &data).unwrap();
    assert_eq!(sys.guest(), expected);
    let mut back = vec![0; data.len()];
    a.readv(&disjoint, &mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn in_place_read_fill_and_info() {
    let sys = System::new();
    let buf_a = sys.shared_a;
    let mut a = client(&sys, A, buf_a);
    a.fill(BASE + 0x100, 0x3000, 0x5a).unwrap();
    let guest = sys.guest();
    assert!(guest[0x100..0x3100].iter().all(|b| *b == 0x5a));
    assert!(guest[..0x100]
        .iter()
        .chain(&guest[0x3100..])
        .all(|b| *b == 0));
    let view = a.read_in_place(BASE + 0xf0, 0x20).unwrap();
    assert_eq!(&view[..0x10], &[0; 0x10]);
    assert_eq!(&view[0x10..], &[0x5a; 0x10]);

    let info = a.info().unwrap();
    assert_eq!(info.buffer_len, 4096);
    assert_eq!(info.max_segments as usize, protocol::MAX_SEGMENTS);
    assert_eq!(
        &info.windows[..],
        &[
            Window::read_write(BASE, 0x1_8000),
            Window::read_only(BASE + 0x1_8000, 0x8000)
        ]
    );
}

/// Raw messages, as a hostile or buggy client could send them.
#[test]
fn raw_messages_get_precise_statuses() {
    let sys = System::new();
    let raw = |channel: usize, label: u64, words: usize, msg: &[u64]| {
        let mut regs = [0xdead_beef_u64; MSG_WORDS];
        regs[..msg.len()].copy_from_slice(msg);
        let mut t = Local::new(&sys.server, &sys.ram, channel);
        let (label, words) = t.call(label, words, &mut regs);
        let reply = protocol::decode_reply(label, &regs[..words]).unwrap();
        (reply.status, reply.bytes)
    };
    let mut msg = [0u64; MSG_WORDS];
    let (label, words) =
        protocol::encode_copy(Op::Read, &[Segment::new(BASE, 64, 0)], &mut msg).unwrap();
    assert_eq!(raw(A, label, words, &msg[..words]), (Status::Ok, 64));
    assert_eq!(
        raw(UNKNOWN, label, words, &msg[..words]),
        (Status::UnknownClient, 0)
    );
    assert_eq!(raw(A, 0, words, &msg[..words]), (Status::UnknownOp, 0));
    assert_eq!(
        raw(A, u64::MAX, words, &msg[..words]),
        (Status::UnknownOp, 0)
    );
    assert_eq!(
        raw(A, label, words + 1, &msg[..words]),
        (Status::Malformed, 0)
    );
    assert_eq!(raw(A, label, 500, &msg[..words]), (Status::Malformed, 0));
    assert_eq!(raw(A, label, 0, &[]), (Status::Malformed, 0));
    // Buffer ranges.
    let (label, words) =
        protocol::encode_copy(Op::Read, &[Segment::new(BASE, 64, 4096 - 63)], &mut msg).unwrap();
    assert_eq!(
        raw(A, label, words, &msg[..words]),
        (Status::OutsideBuffer, 0)
    );
    let (label, words) =
        protocol::encode_copy(Op::Read, &[Segment::new(BASE, 64, u64::MAX - 10)], &mut msg)
            .unwrap();
    assert_eq!(raw(A, label, words, &msg[..words]), (Status::Overflow, 0));
    // Guest ranges.
    let (label, words) =
        protocol::encode_copy(Op::Read, &[Segment::new(u64::MAX, 2, 0)], &mut msg).unwrap();
    assert_eq!(raw(A, label, words, &msg[..words]), (Status::Overflow, 0));
    let (label, words) =
        protocol::encode_copy(Op::Write, &[Segment::new(BASE, 0, 0)], &mut msg).unwrap();
    assert_eq!(raw(A, label, words, &msg[..words]), (Status::ZeroLength, 0));
    // A segment count the message cannot hold.
    let (label, _) =
        protocol::encode_copy(Op::ReadV, &[Segment::new(BASE, 1, 0)], &mut msg).unwrap();
    msg[0] = u64::from_le_bytes([1, 0, 0, 0, 40, 0, 0, 0]);
    assert_eq!(raw(A, label, MSG_WORDS, &msg), (Status::TooManySegments, 0));
    // Two segments totalling more than u64 cannot pass the window check, so
    // totals never overflow; a version from the future is refused as such.
    msg[0] = u64::from_le_bytes([2, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(raw(A, label, 4, &msg[..4]), (Status::BadVersion, 0));
}

#[test]
fn client_table_is_checked_at_start_up() {
    let mut m = Memory::new(64, 0);
    let buffer = m.shared();
    let mut server: Server<1> = Server::new();
    let cfg = |ch, w: &[Window]| ClientConfig::new(ch, buffer, w).unwrap();
    assert_eq!(
        server.add_client(cfg(1, &[Window::read_only(0, 0)])),
        Err(ConfigError::BadWindow)
    );
    assert_eq!(
        server.add_client(cfg(1, &[Window::read_only(u64::MAX, 2)])),
        Err(ConfigError::BadWindow)
    );
    let none = Window {
        gpa: 0,
        len: 1,
        read: false,
        write: false,
    };
    assert_eq!(
        server.add_client(cfg(1, &[none])),
        Err(ConfigError::BadWindow)
    );
    server
        .add_client(cfg(1, &[Window::read_only(0, 1)]))
        .unwrap();
    assert_eq!(
        server.add_client(cfg(1, &[])),
        Err(ConfigError::DuplicateChannel)
    );
    assert_eq!(
        server.add_client(cfg(2, &[])),
        Err(ConfigError::TooManyClients)
    );
    assert_eq!(
        ClientConfig::new(3, buffer, &[Window::read_only(0, 1); 9]).err(),
        Some(ConfigError::TooManyWindows)
    );
}

#[test]
fn staging_area_and_placed_transfers_share_one_buffer() {
    let sys = System::new();
    // Client A's 4 KiB buffer: the first 3 KiB its "device memory", the
    // last KiB the staging area for ordinary copies.
    let whole = sys.shared_a;
    let mut a =
        Client::with_staging(Local::new(&sys.server, &sys.ram, A), whole, 3072, 1024).unwrap();
    assert_eq!(a.staging().len(), 1024);
    assert_eq!(a.buffer().len(), 4096);
    let device = pattern(3072, 9);
    whole.write(0, &device).unwrap();

    // A 5 KiB write goes through the staging area in 1 KiB pieces and
    // never touches the device memory.
    let data = pattern(5 * 1024, 1);
    a.write(BASE + 0x100, &data).unwrap();
    let mut back = vec![0; data.len()];
    a.read(BASE + 0x100, &mut back).unwrap();
    assert_eq!(back, data);
    let mut now = vec![0; 3072];
    whole.read(0, &mut now).unwrap();
    assert_eq!(now, device, "staged copies kept out of the device memory");

    // One copy each way between guest RAM and the device memory.
    let segments = [
        GpaRange {
            gpa: BASE + 0x9000,
            len: 1000,
        },
        GpaRange {
            gpa: BASE + 0x10ff0,
            len: 2072,
        }, // crosses the regions
    ];
    assert_eq!(a.writev_at(&segments, 0), Ok(3072));
    let guest = sys.guest();
    assert_eq!(&guest[0x9000..0x9000 + 1000], &device[..1000]);
    assert_eq!(&guest[0x10ff0..0x10ff0 + 2072], &device[1000..]);
    whole.write(0, &[0u8; 3072]).unwrap();
    assert_eq!(a.readv_at(&segments, 0), Ok(3072));
    whole.read(0, &mut now).unwrap();
    assert_eq!(now, device);

    // Placed: each segment at its own offset, in order, one call.
    whole.write(4000, &[0x5a, 0xa5]).unwrap();
    let placed = [
        Placed {
            range: GpaRange {
                gpa: BASE + 0x20,
                len: 1,
            },
            buffer_offset: 4000,
        },
        Placed {
            range: GpaRange {
                gpa: BASE + 0x40,
                len: 2,
            },
            buffer_offset: 4000,
        },
    ];
    assert_eq!(a.writev_placed(&placed), Ok(3));
    let guest = sys.guest();
    assert_eq!(&guest[0x20..0x21], &[0x5a]);
    assert_eq!(&guest[0x40..0x42], &[0x5a, 0xa5]);
    assert_eq!(a.readv_placed(&placed[1..]), Ok(2));

    // Outside the buffer, or outside the window: refused before any call.
    let outside = [Placed {
        range: GpaRange { gpa: BASE, len: 2 },
        buffer_offset: 4095,
    }];
    assert_eq!(a.writev_placed(&outside), Err(ClientError::TooLarge));
    assert_eq!(a.writev_at(&segments, 2000), Err(ClientError::TooLarge));
    assert_eq!(a.writev_placed(&[]), Err(ClientError::ZeroLength));
    let read_only = [Placed {
        range: GpaRange {
            gpa: BASE + 0x1_8000,
            len: 4,
        },
        buffer_offset: 0,
    }];
    assert_eq!(
        a.writev_placed(&read_only),
        Err(ClientError::Refused(protocol::Status::NoPermission))
    );
    // A staging area outside the buffer is an error.
    assert!(Client::with_staging(Local::new(&sys.server, &sys.ram, A), whole, 4000, 100).is_err());
}
