// SPDX-License-Identifier: BSD-2-Clause
//! The end-to-end self-test that the demo system's `selftest` PD runs over
//! real PPC, kept here so that it is host-tested too (`tests/selftest.rs`
//! runs it against [`transport::Local`](crate::transport::Local)).
//!
//! It expects the client table of `system.xml`'s `selftest` client, relative
//! to guest RAM at `gpa` of `size` bytes (at least 16 MiB):
//! read-only `[0, 4 MiB)`, read-write `[4 MiB, 12 MiB)`, read-write
//! `[size - 1 MiB, size)`, of which only the first half is RAM.

use crate::client::{Client, ClientError, Transport};
use crate::protocol::{self, Op, Segment, Status, MSG_WORDS};
use crate::server::Window;
use crate::GpaRange;

const MIB: u64 = 1 << 20;

/// Where the self-test works, as offsets into guest RAM.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Guest-physical base of guest RAM.
    pub gpa: u64,
    /// Bytes of guest RAM (backed).
    pub size: u64,
}

impl Layout {
    /// Start of the read-write window.
    pub fn rw(&self) -> u64 {
        self.gpa + 4 * MIB
    }
    /// Start of the read-only window.
    pub fn ro(&self) -> u64 {
        self.gpa
    }
    /// A gpa in no window.
    pub fn outside(&self) -> u64 {
        self.gpa + 13 * MIB
    }
    /// A gpa in a writable window that is not registered RAM.
    pub fn not_ram(&self) -> u64 {
        self.gpa + self.size - MIB / 4
    }

    /// How much guest RAM the VMM registers: all but the last 512 KiB, so
    /// that [`not_ram`](Self::not_ram) is backed but not RAM.
    pub fn ram_len(&self) -> u64 {
        self.size - MIB / 2
    }

    /// The self-test client's windows.
    pub fn selftest_windows(&self) -> [Window; 3] {
        [
            Window::read_only(self.ro(), 4 * MIB),
            Window::read_write(self.rw(), 8 * MIB),
            Window::read_write(self.gpa + self.size - MIB, MIB),
        ]
    }

    /// The guest-view client's window: all of guest RAM, read-only.
    pub fn guest_view_windows(&self) -> [Window; 1] {
        [Window::read_only(self.gpa, self.size)]
    }
}

/// The byte that the pattern `seed` has at index `i`.
pub fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(seed) ^ (i >> 8) as u8
}

/// Whether `bytes` hold pattern `seed`.
pub fn is_pattern(seed: u8, bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(seed, i))
}

/// Whether guest range `[gpa, gpa + len)` holds pattern `seed`, reading it
/// in pieces of `scratch.len()` bytes with `read(gpa, piece)` (a client's
/// `read`, or a guest-side mapping's). What the `guest-view` PD runs.
pub fn verify(
    gpa: u64,
    len: u64,
    seed: u8,
    scratch: &mut [u8],
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> bool {
    if scratch.is_empty() || len == 0 || gpa.checked_add(len).is_none() {
        return false;
    }
    let mut done: u64 = 0;
    while done < len {
        let n = (len - done).min(scratch.len() as u64) as usize;
        let piece = &mut scratch[..n];
        if !read(gpa + done, piece) {
            return false;
        }
        let start = done as usize;
        if !piece
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern(seed, start + i))
        {
            return false;
        }
        done += n as u64;
    }
    true
}

/// Passed and total checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Checks that passed.
    pub passed: u32,
    /// Checks run.
    pub total: u32,
}

/// Runs the self-test. `scratch` is working memory of at least 64 KiB;
/// `guest_view(gpa, len, seed)` asks an independent observer (the
/// `guest-view` PD, which maps guest RAM at its gpa) whether the pattern is
/// there; `report(name, ok)` prints one line per check.
pub fn run<T: Transport>(
    client: &mut Client<T>,
    layout: Layout,
    scratch: &mut [u8],
    mut guest_view: impl FnMut(u64, u64, u8) -> bool,
    mut report: impl FnMut(&str, bool),
) -> Summary {
    let mut summary = Summary::default();
    let mut check = |name: &str, ok: bool| {
        summary.total += 1;
        summary.passed += u32::from(ok);
        report(name, ok);
    };
    let (scratch, back) = scratch.split_at_mut(scratch.len() / 2);
    let buffer_len = client.staging().len();

    let info = client.info();
    check(
        "info reports the buffer and 3 windows",
        info.is_ok_and(|i| i.buffer_len == buffer_len as u64 && i.windows.len() == 3),
    );

    // Small write and read back.
    let small = layout.rw() + 0x10;
    fill_pattern(&mut scratch[..100], 1);
    let ok = client.write(small, &scratch[..100]).is_ok()
        && client.read(small, &mut back[..100]).is_ok()
        && is_pattern(1, &back[..100]);
    check("write/read 100 bytes", ok);
    check(
        "guest sees the 100 bytes at their gpa",
        guest_view(small, 100, 1),
    );

    // Larger than the shared buffer: chunked.
    let big_len = (3 * buffer_len + 123).min(scratch.len());
    let big = layout.rw() + 0x1_0000 + 5;
    fill_pattern(&mut scratch[..big_len], 2);
    back[..big_len].fill(0);
    let ok = client.write(big, &scratch[..big_len]).is_ok()
        && client.read(big, &mut back[..big_len]).is_ok()
        && is_pattern(2, &back[..big_len]);
    check("chunked write/read larger than the buffer", ok);
    check(
        "guest sees the chunked write",
        guest_view(big, big_len as u64, 2),
    );

    // Scatter-gather: 50 descriptors, more than fit one message.
    let mut segments: heapless::Vec<GpaRange, 50> = heapless::Vec::new();
    for i in 0..50u64 {
        let _ = segments.push(GpaRange {
            gpa: layout.rw() + 0x4_0000 + i * 0x200,
            len: 1 + (i * 37) % 300,
        });
    }
    let total: usize = segments.iter().map(|s| s.len as usize).sum();
    fill_pattern(&mut scratch[..total], 3);
    back[..total].fill(0);
    let ok = client.writev(&segments, &scratch[..total]).is_ok()
        && client.readv(&segments, &mut back[..total]).is_ok()
        && is_pattern(3, &back[..total]);
    check("scatter-gather of 50 segments", ok);
    let first = segments[0];
    check(
        "guest sees the first segment",
        guest_view(first.gpa, first.len, 3),
    );

    // One copy: straight into the shared buffer.
    let ok = client
        .read_in_place(small, 100)
        .is_ok_and(|view| is_pattern(1, view));
    check("read_in_place", ok);

    // Fill, no buffer.
    let filled = layout.rw() + 0x8_0000;
    let ok = client.fill(filled, 0x2000, 0xa5).is_ok()
        && client.read(filled, &mut back[..0x2000]).is_ok()
        && back[..0x2000].iter().all(|b| *b == 0xa5);
    check("fill", ok);

    // Reading the read-only window works; every refusal is precise.
    check(
        "read from the read-only window",
        client.read(layout.ro(), &mut back[..64]).is_ok(),
    );
    let refused = |r: Result<(), ClientError>, s: Status| r == Err(ClientError::Refused(s));
    check(
        "write to the read-only window is refused",
        refused(
            client.write(layout.ro(), &scratch[..8]),
            Status::NoPermission,
        ),
    );
    check(
        "read outside every window is refused",
        refused(
            client.read(layout.outside(), &mut back[..8]),
            Status::OutsideWindow,
        ),
    );
    check(
        "read of a non-RAM range is refused",
        refused(
            client.read(layout.not_ram(), &mut back[..8]),
            Status::NotRam,
        ),
    );
    let mut msg = [0u64; MSG_WORDS];
    let raw = |client: &mut Client<T>, label: u64, msg: &[u64], want: Status| {
        client
            .call_raw(label, msg)
            .is_ok_and(|r| r.status == want && r.bytes == 0)
    };
    let (label, words) =
        protocol::encode_copy(Op::Read, &[Segment::new(small, 8, 0)], &mut msg).unwrap_or_default();
    check(
        "unknown op is refused",
        raw(client, 99, &msg[..words], Status::UnknownOp),
    );
    check(
        "truncated message is refused",
        raw(client, label, &msg[..words - 1], Status::Malformed),
    );
    let seg = Segment::new(small, 8, buffer_len as u64 - 4);
    let (label, words) = protocol::encode_copy(Op::Read, &[seg], &mut msg).unwrap_or_default();
    check(
        "buffer overrun is refused",
        raw(client, label, &msg[..words], Status::OutsideBuffer),
    );
    let seg = Segment::new(u64::MAX - 3, 8, 0);
    let (label, words) = protocol::encode_copy(Op::Read, &[seg], &mut msg).unwrap_or_default();
    check(
        "gpa overflow is refused",
        raw(client, label, &msg[..words], Status::Overflow),
    );
    let seg = Segment::new(small, 0, 0);
    let (label, words) = protocol::encode_copy(Op::Write, &[seg], &mut msg).unwrap_or_default();
    check(
        "zero length is refused",
        raw(client, label, &msg[..words], Status::ZeroLength),
    );
    check(
        "nothing refused changed guest RAM",
        client.read(small, &mut back[..100]).is_ok() && is_pattern(1, &back[..100]),
    );
    summary
}

fn fill_pattern(bytes: &mut [u8], seed: u8) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(seed, i);
    }
}
