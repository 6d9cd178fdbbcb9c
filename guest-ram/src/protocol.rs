// SPDX-License-Identifier: BSD-2-Clause
//! The wire format of the guest-RAM copy service, in one place.
//!
//! A client PD calls the VMM PD with a protected procedure call (PPC). The
//! `MessageInfo` label carries the operation ([`Op`]); the message registers
//! carry a request made of fixed-layout, little-endian structs, each a whole
//! number of 64-bit words. The VMM answers in the same registers with a
//! [`ReplyHeader`] (and, for [`Op::Info`], an [`InfoBody`] and the
//! client's [`WindowDesc`]s); the reply label is the [`Status`] too.
//!
//! | op | request words | reply words |
//! |----|---------------|-------------|
//! | [`Op::Info`] | `Header` (count 0) | `ReplyHeader`, `InfoBody`, `count` × `WindowDesc` |
//! | [`Op::Read`], [`Op::Write`] | `Header` (count 1), one `Segment` | `ReplyHeader` |
//! | [`Op::ReadV`], [`Op::WriteV`] | `Header` (count n ≤ [`MAX_SEGMENTS`]), n × `Segment` | `ReplyHeader` |
//! | [`Op::Fill`] | `Header` (count 0), `FillArgs` | `ReplyHeader` |
//! | [`Op::Ping`] | `Header` (count 0) | `ReplyHeader` (0 bytes) |
//!
//! `Read` copies guest RAM into the client's shared buffer, `Write` the
//! other way; each [`Segment`] names a guest range and an offset in the
//! buffer. `Fill` sets guest RAM to one byte value without using the buffer
//! (zeroing pages of a balloon or a fresh descriptor area costs no copy).
//!
//! Every request is checked completely before any byte moves, and the
//! message's word count must match its layout exactly. A request's
//! segments are copied in order, each ordered before the next (a fence
//! between them), and a call's accesses before the next call's: a driver
//! can read an index and the entries it publishes in one call, or write
//! used elements and then their index.
//!
//! ```
//! use guest_ram::protocol::{self, Op, Request, Segment};
//! let mut msg = [0u64; protocol::MSG_WORDS];
//! let seg = Segment::new(0x4000_0000, 512, 0);
//! let (label, words) = protocol::encode_copy(Op::Read, &[seg], &mut msg).unwrap();
//! assert_eq!(words, 4);
//! match protocol::decode(label, &msg[..words]).unwrap() {
//!     Request::Copy { op, segments } => {
//!         assert_eq!(op, Op::Read);
//!         assert_eq!(segments.iter().next().unwrap().gpa, 0x4000_0000);
//!     }
//!     _ => unreachable!(),
//! }
//! ```

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::Direction;

/// Protocol version carried in every request and reply.
pub const VERSION: u16 = 1;

/// Message registers in an seL4 IPC buffer (`seL4_MsgMaxLength`, the same
/// on every architecture seL4 supports).
pub const MSG_WORDS: usize = 120;

/// Most segments in one scatter-gather request: what fits in the message
/// registers after the header.
pub const MAX_SEGMENTS: usize = (MSG_WORDS - 1) / 3;

/// Most windows a client can have (and `Info` can report).
pub const MAX_WINDOWS: usize = 8;

/// The operation, carried in the `MessageInfo` label of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Op {
    /// The client's buffer size, segment limit and windows.
    Info = 1,
    /// Guest RAM → client buffer, one segment.
    Read = 2,
    /// Client buffer → guest RAM, one segment.
    Write = 3,
    /// Guest RAM → client buffer, up to [`MAX_SEGMENTS`] segments.
    ReadV = 4,
    /// Client buffer → guest RAM, up to [`MAX_SEGMENTS`] segments.
    WriteV = 5,
    /// Set a guest range to one byte value.
    Fill = 6,
    /// Nothing: the reply says the VMM is there. The cost of a call itself
    /// (`make bench-qemu`'s null round trip).
    Ping = 7,
}

impl Op {
    /// The op for a label, if any.
    pub fn from_label(label: u64) -> Option<Op> {
        Some(match label {
            1 => Op::Info,
            2 => Op::Read,
            3 => Op::Write,
            4 => Op::ReadV,
            5 => Op::WriteV,
            6 => Op::Fill,
            7 => Op::Ping,
            _ => return None,
        })
    }

    /// Which way the op moves bytes: [`Direction::ToGuest`] for the ops
    /// that change guest RAM (they need a writable window).
    pub fn direction(self) -> Direction {
        match self {
            Op::Write | Op::WriteV | Op::Fill => Direction::ToGuest,
            Op::Info | Op::Read | Op::ReadV | Op::Ping => Direction::FromGuest,
        }
    }
}

/// The answer to a request: the reply label and [`ReplyHeader::status`].
/// One code per distinct failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// The message does not match its op's layout (length, reserved bits,
    /// segment count of zero).
    Malformed = 1,
    /// The request's version is not [`VERSION`].
    BadVersion = 2,
    /// The label is not an [`Op`].
    UnknownOp = 3,
    /// The calling channel has no entry in the VMM's client table.
    UnknownClient = 4,
    /// A segment of length zero.
    ZeroLength = 5,
    /// `gpa + len`, `offset + len` or the total length overflows.
    Overflow = 6,
    /// A guest range lies outside every window of the client.
    OutsideWindow = 7,
    /// A guest range lies in a window that lacks the needed permission.
    NoPermission = 8,
    /// A guest range is inside a window but is not registered RAM.
    NotRam = 9,
    /// A buffer range lies outside the client's shared buffer.
    OutsideBuffer = 10,
    /// More than [`MAX_SEGMENTS`] segments.
    TooManySegments = 11,
    /// A check the server made passed but the copy was still refused; a
    /// bug in the VMM, never the client's fault.
    Internal = 12,
    /// The client serves a device that was reset (by its guest, or by a
    /// guest reset) since the client last read the device's state: the
    /// request may come from what the client knew before, and the
    /// addresses in it may now be another driver's memory. The client
    /// reads its device's state again (`virtio::device::BackendPage`) and
    /// goes on from there. A refusal of the VMM's device glue, before the
    /// server sees the request.
    DeviceReset = 13,
}

impl Status {
    /// The status for a wire value, if any.
    pub fn from_u16(code: u16) -> Option<Status> {
        use Status::*;
        [
            Ok,
            Malformed,
            BadVersion,
            UnknownOp,
            UnknownClient,
            ZeroLength,
            Overflow,
            OutsideWindow,
            NoPermission,
            NotRam,
            OutsideBuffer,
            TooManySegments,
            Internal,
            DeviceReset,
        ]
        .get(usize::from(code))
        .copied()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Malformed => "malformed message",
            Status::BadVersion => "unsupported protocol version",
            Status::UnknownOp => "unknown operation",
            Status::UnknownClient => "channel is not a client",
            Status::ZeroLength => "zero-length segment",
            Status::Overflow => "address arithmetic overflows",
            Status::OutsideWindow => "guest range outside the client's windows",
            Status::NoPermission => "window does not permit this access",
            Status::NotRam => "guest range is not RAM",
            Status::OutsideBuffer => "buffer range outside the shared buffer",
            Status::TooManySegments => "too many segments",
            Status::Internal => "internal error in the VMM",
            Status::DeviceReset => "the client's device was reset since it last looked",
        })
    }
}

impl core::error::Error for Status {}

/// A client's access rights to one range of guest-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// May the client read (guest → buffer)?
    pub read: bool,
    /// May the client write (buffer → guest, fill)?
    pub write: bool,
}

impl Window {
    /// A read-only window.
    pub const fn read_only(gpa: u64, len: u64) -> Self {
        Window {
            gpa,
            len,
            read: true,
            write: false,
        }
    }

    /// A read-write window.
    pub const fn read_write(gpa: u64, len: u64) -> Self {
        Window {
            gpa,
            len,
            read: true,
            write: true,
        }
    }

    pub(crate) fn contains(&self, gpa: u64, end: u64) -> bool {
        // `self.gpa + self.len` was checked by `Server::add_client`.
        self.gpa <= gpa && end <= self.gpa + self.len
    }

    pub(crate) fn permits(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToGuest => self.write,
            Direction::FromGuest => self.read,
        }
    }

    pub(crate) fn desc(&self) -> WindowDesc {
        let read = if self.read { PERM_READ } else { 0 };
        let write = if self.write { PERM_WRITE } else { 0 };
        let perms = read | write;
        WindowDesc {
            gpa: self.gpa.into(),
            len: self.len.into(),
            perms: perms.into(),
            reserved: 0.into(),
        }
    }
}

/// First word of every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Header {
    /// [`VERSION`].
    pub version: U16,
    /// Reserved, must be zero.
    pub flags: U16,
    /// Number of [`Segment`]s that follow (1 for `Read`/`Write`, 0 for
    /// `Info`/`Fill`).
    pub count: U32,
}

impl Header {
    /// A header of the current version.
    pub fn new(count: u32) -> Self {
        Header {
            version: VERSION.into(),
            flags: 0.into(),
            count: count.into(),
        }
    }

    /// The header as its message word: the same bytes as the struct,
    /// little-endian, built with shifts rather than byte stores (a PD's
    /// target has strict alignment, where unaligned fields cost a load
    /// and a shift per byte).
    fn word(count: u32) -> u64 {
        (u64::from(VERSION) | u64::from(count) << 32).to_le()
    }
}

/// The segments of a copy request, read where they lie in the message:
/// three aligned words each (`gpa`, `len`, `buf_offset`, as
/// [`Segment`] lays them out), never copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments<'a>(&'a [u64]);

impl<'a> Segments<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len() / SEGMENT_WORDS
    }

    /// Whether there are none (never, in a decoded request).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each segment, in order.
    pub fn iter(&self) -> impl Iterator<Item = Segment> + 'a {
        self.0.chunks_exact(SEGMENT_WORDS).map(|w| match *w {
            [gpa, len, buf_offset] => Segment::new(
                u64::from_le(gpa),
                u64::from_le(len),
                u64::from_le(buf_offset),
            ),
            // `chunks_exact` yields SEGMENT_WORDS words.
            _ => Segment::new(0, 0, 0),
        })
    }
}

/// One guest range and where it goes in (or comes from) the shared buffer.
/// On the wire: three little-endian words, in field order. The fields are
/// native `u64`s, 8-byte aligned like the message words they come from:
/// on a PD's strict-alignment target, little-endian wrapper types (align 1)
/// would cost a load and a shift per byte, and a move a `memcpy` call.
/// [`encode_copy`] and [`decode`] convert each word with `to_le`/`from_le`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset in the client's shared buffer.
    pub buf_offset: u64,
}

impl Segment {
    /// A segment.
    pub const fn new(gpa: u64, len: u64, buf_offset: u64) -> Self {
        Segment {
            gpa,
            len,
            buf_offset,
        }
    }
}

/// Arguments of [`Op::Fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FillArgs {
    /// Guest-physical address.
    pub gpa: U64,
    /// Length in bytes.
    pub len: U64,
    /// The value to store.
    pub byte: u8,
    /// Reserved, must be zero.
    pub reserved: [u8; 7],
}

/// First two words of every reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ReplyHeader {
    /// [`VERSION`].
    pub version: U16,
    /// A [`Status`] code.
    pub status: U16,
    /// Reserved, zero.
    pub reserved: U32,
    /// Bytes copied (or filled); 0 on error.
    pub bytes: U64,
}

/// What follows the [`ReplyHeader`] of an [`Op::Info`] reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct InfoBody {
    /// Size of the client's shared buffer in bytes.
    pub buffer_len: U64,
    /// Number of [`WindowDesc`]s that follow.
    pub window_count: U32,
    /// [`MAX_SEGMENTS`] of the server.
    pub max_segments: U32,
}

/// Window permission: reads (guest → client) allowed.
pub const PERM_READ: u32 = 1;
/// Window permission: writes (client → guest) allowed.
pub const PERM_WRITE: u32 = 2;

/// One of the client's windows into guest RAM, as reported by `Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct WindowDesc {
    /// First guest-physical address.
    pub gpa: U64,
    /// Length in bytes.
    pub len: U64,
    /// [`PERM_READ`] | [`PERM_WRITE`].
    pub perms: U32,
    /// Reserved, zero.
    pub reserved: U32,
}

const HEADER_WORDS: usize = 1;
const SEGMENT_WORDS: usize = 3;
const FILL_WORDS: usize = 3;
/// Words of a reply header.
pub const REPLY_WORDS: usize = 2;
const INFO_WORDS: usize = 2;
const WINDOW_WORDS: usize = 3;

/// A decoded, well-formed request (not yet checked against a client). It
/// borrows the message: the segments are read where they lie, never
/// copied (a copy of up to 39 of them would cost more than the checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// [`Op::Info`].
    Info,
    /// [`Op::Read`], [`Op::Write`], [`Op::ReadV`] or [`Op::WriteV`].
    Copy {
        /// Which of the four.
        op: Op,
        /// 1 to [`MAX_SEGMENTS`] segments, in order, in the message.
        segments: Segments<'a>,
    },
    /// [`Op::Fill`].
    /// (The arguments as native values, not [`FillArgs`]: an enum holding
    /// an align-1 struct is moved with `memcpy` calls on a PD's
    /// strict-alignment target.)
    Fill {
        /// First guest-physical address.
        gpa: u64,
        /// Bytes to set.
        len: u64,
        /// The value.
        byte: u8,
    },
    /// [`Op::Ping`].
    Ping,
}

/// Parses a request from its label and its message words (exactly the
/// `MessageInfo` count of them). Never panics; every malformation is a
/// [`Status`].
pub fn decode(label: u64, msg: &[u64]) -> Result<Request<'_>, Status> {
    let op = Op::from_label(label).ok_or(Status::UnknownOp)?;
    // The header word, as `Header` lays it out (little-endian).
    let (first, rest_words) = msg.split_first().ok_or(Status::Malformed)?;
    let header = u64::from_le(*first);
    if header as u16 != VERSION {
        return Err(Status::BadVersion);
    }
    if (header >> 16) as u16 != 0 {
        return Err(Status::Malformed);
    }
    let count = (header >> 32) as usize;
    let rest = rest_words.as_bytes();
    match op {
        Op::Info | Op::Ping => {
            if count != 0 || msg.len() != HEADER_WORDS {
                return Err(Status::Malformed);
            }
            Ok(if op == Op::Info {
                Request::Info
            } else {
                Request::Ping
            })
        }
        Op::Fill => {
            if count != 0 || msg.len() != HEADER_WORDS + FILL_WORDS {
                return Err(Status::Malformed);
            }
            let args = FillArgs::read_from_bytes(rest).map_err(|_| Status::Malformed)?;
            if args.reserved != [0; 7] {
                return Err(Status::Malformed);
            }
            Ok(Request::Fill {
                gpa: args.gpa.get(),
                len: args.len.get(),
                byte: args.byte,
            })
        }
        Op::Read | Op::Write | Op::ReadV | Op::WriteV => {
            let single = matches!(op, Op::Read | Op::Write);
            if count == 0 || (single && count != 1) {
                return Err(Status::Malformed);
            }
            if count > MAX_SEGMENTS {
                return Err(Status::TooManySegments);
            }
            if msg.len() != HEADER_WORDS + count * SEGMENT_WORDS {
                return Err(Status::Malformed);
            }
            Ok(Request::Copy {
                op,
                segments: Segments(rest_words),
            })
        }
    }
}

/// Writes `value` at word `at` of `msg`; returns the next word index.
fn put<T: IntoBytes + Immutable>(msg: &mut [u64], at: usize, value: &T) -> Option<usize> {
    let bytes = value.as_bytes();
    let words = bytes.len() / 8;
    msg.get_mut(at..at + words)?
        .as_mut_bytes()
        .copy_from_slice(bytes);
    Some(at + words)
}

/// Encodes a copy request (`Read`/`Write` with one segment, `ReadV`/`WriteV`
/// with 1 to [`MAX_SEGMENTS`]). Returns the label and the word count.
pub fn encode_copy(
    op: Op,
    segments: &[Segment],
    msg: &mut [u64; MSG_WORDS],
) -> Result<(u64, usize), Status> {
    match op {
        Op::Read | Op::Write if segments.len() == 1 => {}
        Op::ReadV | Op::WriteV if !segments.is_empty() && segments.len() <= MAX_SEGMENTS => {}
        Op::ReadV | Op::WriteV if segments.len() > MAX_SEGMENTS => {
            return Err(Status::TooManySegments)
        }
        _ => return Err(Status::Malformed),
    }
    // Word stores: the same bytes as `Header` and `Segment` (see
    // `Header::word`).
    let words = msg
        .get_mut(..HEADER_WORDS + segments.len() * SEGMENT_WORDS)
        .ok_or(Status::TooManySegments)?;
    let (first, rest) = words.split_first_mut().ok_or(Status::Malformed)?;
    *first = Header::word(segments.len() as u32);
    for (w, s) in rest.chunks_exact_mut(SEGMENT_WORDS).zip(segments) {
        if let [gpa, len, buf_offset] = w {
            *gpa = s.gpa.to_le();
            *len = s.len.to_le();
            *buf_offset = s.buf_offset.to_le();
        }
    }
    Ok((op as u64, HEADER_WORDS + segments.len() * SEGMENT_WORDS))
}

/// Encodes an `Info` request.
pub fn encode_info(msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
    msg[..1]
        .as_mut_bytes()
        .copy_from_slice(Header::new(0).as_bytes());
    (Op::Info as u64, HEADER_WORDS)
}

/// Encodes a `Ping` request.
pub fn encode_ping(msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
    msg[..1]
        .as_mut_bytes()
        .copy_from_slice(Header::new(0).as_bytes());
    (Op::Ping as u64, HEADER_WORDS)
}

/// Encodes a `Fill` request.
pub fn encode_fill(gpa: u64, len: u64, byte: u8, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
    let args = FillArgs {
        gpa: gpa.into(),
        len: len.into(),
        byte,
        reserved: [0; 7],
    };
    msg[..1]
        .as_mut_bytes()
        .copy_from_slice(Header::new(0).as_bytes());
    msg[1..1 + FILL_WORDS]
        .as_mut_bytes()
        .copy_from_slice(args.as_bytes());
    (Op::Fill as u64, HEADER_WORDS + FILL_WORDS)
}

/// Encodes a reply of `status` and `bytes`; returns label and word count.
pub fn encode_reply(status: Status, bytes: u64, msg: &mut [u64]) -> (u64, usize) {
    // `ReplyHeader`'s bytes, as two word stores.
    match msg.get_mut(..REPLY_WORDS) {
        Some([first, second]) => {
            *first = (u64::from(VERSION) | u64::from(status as u16) << 16).to_le();
            *second = bytes.to_le();
            (status as u64, REPLY_WORDS)
        }
        _ => (status as u64, 0),
    }
}

/// Encodes an `Info` reply.
pub fn encode_info_reply(buffer_len: u64, windows: &[WindowDesc], msg: &mut [u64]) -> (u64, usize) {
    let (label, at) = encode_reply(Status::Ok, 0, msg);
    let windows = &windows[..windows.len().min(MAX_WINDOWS)];
    let body = InfoBody {
        buffer_len: buffer_len.into(),
        window_count: (windows.len() as u32).into(),
        max_segments: (MAX_SEGMENTS as u32).into(),
    };
    let mut at = put(msg, at, &body).unwrap_or(at);
    for w in windows {
        at = put(msg, at, w).unwrap_or(at);
    }
    (label, at)
}

/// A decoded reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// Bytes moved.
    pub bytes: u64,
}

/// Parses a reply header; `None` if the reply is malformed (a server of
/// another version, or a label that disagrees with the body).
pub fn decode_reply(label: u64, msg: &[u64]) -> Option<Reply> {
    // `ReplyHeader`'s two words.
    let (first, second) = match msg.get(..REPLY_WORDS)? {
        [first, second] => (u64::from_le(*first), u64::from_le(*second)),
        _ => return None,
    };
    let status = Status::from_u16((first >> 16) as u16)?;
    (first as u16 == VERSION && label == status as u64).then_some(Reply {
        status,
        bytes: second,
    })
}

/// Parses the body of an `Info` reply (after its header).
pub fn decode_info(msg: &[u64]) -> Option<(InfoBody, heapless::Vec<WindowDesc, MAX_WINDOWS>)> {
    let body_bytes = msg.get(REPLY_WORDS..)?.as_bytes();
    let (body, rest) = InfoBody::read_from_prefix(body_bytes).ok()?;
    let count = body.window_count.get() as usize;
    if count > MAX_WINDOWS || msg.len() != REPLY_WORDS + INFO_WORDS + count * WINDOW_WORDS {
        return None;
    }
    let windows = <[WindowDesc]>::ref_from_bytes(rest).ok()?;
    Some((body, heapless::Vec::from_slice(windows).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_whole_words() {
        assert_eq!(core::mem::size_of::<Header>(), 8);
        assert_eq!(core::mem::size_of::<Segment>(), 8 * SEGMENT_WORDS);
        assert_eq!(core::mem::size_of::<FillArgs>(), 8 * FILL_WORDS);
        assert_eq!(core::mem::size_of::<ReplyHeader>(), 8 * REPLY_WORDS);
        assert_eq!(core::mem::size_of::<InfoBody>(), 8 * INFO_WORDS);
        assert_eq!(core::mem::size_of::<WindowDesc>(), 8 * WINDOW_WORDS);
        assert_eq!(MAX_SEGMENTS, 39);
    }

    #[test]
    fn byte_layout_is_little_endian_and_fixed() {
        let mut msg = [0u64; MSG_WORDS];
        let (label, words) = encode_copy(
            Op::Write,
            &[Segment::new(0x1122_3344_5566_7788, 0x10, 0x20)],
            &mut msg,
        )
        .unwrap();
        assert_eq!((label, words), (3, 4));
        assert_eq!(msg[0].to_le_bytes(), [1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(msg[1].to_le_bytes(), 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(msg[2].to_le_bytes(), 0x10u64.to_le_bytes());
        assert_eq!(msg[3].to_le_bytes(), 0x20u64.to_le_bytes());
    }

    #[test]
    fn every_malformation_has_its_status() {
        let mut msg = [0u64; MSG_WORDS];
        let seg = Segment::new(0, 1, 0);
        let (label, words) = encode_copy(Op::ReadV, &[seg, seg], &mut msg).unwrap();
        assert!(decode(label, &msg[..words]).is_ok());
        assert_eq!(decode(99, &msg[..words]), Err(Status::UnknownOp));
        assert_eq!(decode(label, &msg[..words - 1]), Err(Status::Malformed));
        assert_eq!(decode(label, &msg[..words + 1]), Err(Status::Malformed));
        assert_eq!(decode(label, &[]), Err(Status::Malformed));
        assert_eq!(
            decode(Op::Read as u64, &msg[..words]),
            Err(Status::Malformed)
        );
        let mut bad = msg;
        bad[0] ^= 2; // version 3
        assert_eq!(decode(label, &bad[..words]), Err(Status::BadVersion));
        let mut bad = msg;
        bad[0] |= 1 << 16; // flags
        assert_eq!(decode(label, &bad[..words]), Err(Status::Malformed));
        let mut bad = msg;
        bad[0] = u64::from_le_bytes(Header::new(40).as_bytes().try_into().unwrap());
        assert_eq!(decode(label, &bad), Err(Status::TooManySegments));
        let mut bad = msg;
        bad[0] = u64::from_le_bytes(Header::new(0).as_bytes().try_into().unwrap());
        assert_eq!(decode(label, &bad[..1]), Err(Status::Malformed));
        let (label, words) = encode_fill(0, 1, 7, &mut msg);
        assert!(decode(label, &msg[..words]).is_ok());
        msg[3] |= 1 << 8; // reserved fill byte
        assert_eq!(decode(label, &msg[..words]), Err(Status::Malformed));
        let (label, words) = encode_info(&mut msg);
        assert_eq!(decode(label, &msg[..words]), Ok(Request::Info));
        assert_eq!(decode(label, &msg[..2]), Err(Status::Malformed));
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let mut msg = [0u64; MSG_WORDS];
        let seg = Segment::new(0, 1, 0);
        assert_eq!(
            encode_copy(Op::Read, &[seg, seg], &mut msg),
            Err(Status::Malformed)
        );
        assert_eq!(
            encode_copy(Op::ReadV, &[], &mut msg),
            Err(Status::Malformed)
        );
        assert_eq!(
            encode_copy(Op::WriteV, &[seg; 40], &mut msg),
            Err(Status::TooManySegments)
        );
        assert_eq!(
            encode_copy(Op::Info, &[seg], &mut msg),
            Err(Status::Malformed)
        );
        assert!(encode_copy(Op::WriteV, &[seg; 39], &mut msg).is_ok());
    }

    #[test]
    fn replies_round_trip() {
        let mut msg = [0u64; MSG_WORDS];
        let (label, words) = encode_reply(Status::NotRam, 0, &mut msg);
        assert_eq!(
            decode_reply(label, &msg[..words]),
            Some(Reply {
                status: Status::NotRam,
                bytes: 0
            })
        );
        assert_eq!(decode_reply(0, &msg[..words]), None);
        let w = WindowDesc {
            gpa: 1.into(),
            len: 2.into(),
            perms: PERM_READ.into(),
            reserved: 0.into(),
        };
        let (label, words) = encode_info_reply(4096, &[w, w], &mut msg);
        assert_eq!(words, 2 + 2 + 6);
        assert_eq!(
            decode_reply(label, &msg[..words]).unwrap().status,
            Status::Ok
        );
        let (body, windows) = decode_info(&msg[..words]).unwrap();
        assert_eq!(body.buffer_len.get(), 4096);
        assert_eq!(&windows[..], &[w, w]);
        for code in 0..=13u16 {
            assert_eq!(Status::from_u16(code).map(|s| s as u16), Some(code));
        }
        assert_eq!(Status::from_u16(14), None);
    }
}
