// SPDX-License-Identifier: BSD-2-Clause
//! The client-PD side of the copy service: typed calls, chunking of
//! transfers larger than the shared buffer, and scatter-gather packing.
//!
//! [`Client`] is generic over a [`Transport`], so the same code runs over a
//! real PPC in a PD and over [`transport::Local`](crate::transport::Local) in host
//! tests. The Microkit transport is a few lines in the PD:
//!
//! ```ignore
//! struct Ppc(Channel);
//! impl Transport for Ppc {
//!     fn call(&mut self, label: u64, words: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
//!         with_msg_regs_mut(|regs| regs[..words].copy_from_slice(&msg[..words]));
//!         let reply = self.0.pp_call(MessageInfo::new(label, words));
//!         let words = reply.count().min(MSG_WORDS);
//!         with_msg_regs(|regs| msg[..words].copy_from_slice(&regs[..words]));
//!         (reply.label(), words)
//!     }
//! }
//! ```
#![allow(
    unsafe_code,
    reason = "read_in_place hands out the one slice into the client's own shared buffer (see mem::shared_slice)"
)]

use core::fmt;

use crate::protocol::{self, Op, Segment, Status, Window, MAX_SEGMENTS, MAX_WINDOWS, MSG_WORDS};
use crate::{Direction, GpaRange, SharedBuffer};

pub use crate::transport::Transport;

/// Why a client call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The VMM refused the request with this status.
    Refused(Status),
    /// The VMM's reply does not parse, or reports a different byte count.
    BadReply,
    /// A range of length zero (checked before any call).
    ZeroLength,
    /// `gpa + len` overflows (checked before any call).
    Overflow,
    /// The segments' total length differs from the data slice's.
    LengthMismatch,
    /// The request needs more shared buffer than there is.
    TooLarge,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Refused(s) => write!(f, "VMM refused the request: {s}"),
            ClientError::BadReply => f.write_str("malformed reply from the VMM"),
            ClientError::ZeroLength => f.write_str("zero-length range"),
            ClientError::Overflow => f.write_str("range end overflows"),
            ClientError::LengthMismatch => f.write_str("segments and data differ in length"),
            ClientError::TooLarge => f.write_str("transfer does not fit the shared buffer"),
        }
    }
}

impl core::error::Error for ClientError {}

/// What the VMM says about this client (the `Info` op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// Size of the shared buffer as the VMM sees it.
    pub buffer_len: u64,
    /// Most segments per scatter-gather call.
    pub max_segments: u32,
    /// The client's windows into guest RAM.
    pub windows: heapless::Vec<Window, MAX_WINDOWS>,
}

/// A client of the VMM's copy service over transport `T`, staging data in
/// its shared buffer.
///
/// Transfers larger than the buffer are split into several calls; a refusal
/// part-way leaves the earlier chunks done. Range shapes (zero length,
/// overflow, data length) are checked before the first call, so those never
/// leave a transfer half done.
pub struct Client<T> {
    transport: T,
    buffer: SharedBuffer,
    msg: [u64; MSG_WORDS],
}

impl<T: Transport> Client<T> {
    /// A client whose shared buffer is mapped at `buffer` in this PD.
    pub fn new(transport: T, buffer: SharedBuffer) -> Self {
        Client {
            transport,
            buffer,
            msg: [0; MSG_WORDS],
        }
    }

    /// The transport (to read its counters, say).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The shared buffer.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }

    /// One exchange: the reply, decoded, and its word count in `self.msg`.
    fn exchange(
        &mut self,
        label: u64,
        words: usize,
    ) -> Result<(protocol::Reply, usize), ClientError> {
        let (label, words) = self.transport.call(label, words, &mut self.msg);
        let msg = self.msg.get(..words).ok_or(ClientError::BadReply)?;
        let reply = protocol::decode_reply(label, msg).ok_or(ClientError::BadReply)?;
        Ok((reply, words))
    }

    /// An exchange that must succeed: the bytes moved and the reply's word
    /// count.
    fn call(&mut self, label: u64, words: usize) -> Result<(u64, usize), ClientError> {
        match self.exchange(label, words)? {
            (reply, words) if reply.status == Status::Ok => Ok((reply.bytes, words)),
            (reply, _) => Err(ClientError::Refused(reply.status)),
        }
    }

    /// Sends a raw, already encoded request (`msg` words with `label`) and
    /// returns the decoded reply. For testing a server's refusals; normal
    /// code uses the typed calls.
    pub fn call_raw(&mut self, label: u64, msg: &[u64]) -> Result<protocol::Reply, ClientError> {
        let words = msg.len().min(MSG_WORDS);
        self.msg[..words].copy_from_slice(&msg[..words]);
        Ok(self.exchange(label, words)?.0)
    }

    /// One call that does nothing: the VMM answers `Ok`.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        let (label, words) = protocol::encode_ping(&mut self.msg);
        self.call(label, words).map(|_| ())
    }

    /// Asks the VMM for this client's buffer size and windows.
    pub fn info(&mut self) -> Result<Info, ClientError> {
        let (label, words) = protocol::encode_info(&mut self.msg);
        let (_, words) = self.call(label, words)?;
        let (body, descs) =
            protocol::decode_info(&self.msg[..words]).ok_or(ClientError::BadReply)?;
        let mut windows = heapless::Vec::new();
        for d in descs.iter() {
            // `descs` holds at most MAX_WINDOWS, as `windows` does.
            let _ = windows.push(Window {
                gpa: d.gpa.get(),
                len: d.len.get(),
                read: d.perms.get() & protocol::PERM_READ != 0,
                write: d.perms.get() & protocol::PERM_WRITE != 0,
            });
        }
        Ok(Info {
            buffer_len: body.buffer_len.get(),
            max_segments: body.max_segments.get(),
            windows,
        })
    }

    /// Copies guest RAM at `gpa` into `dst`, in as many calls as the buffer
    /// size requires.
    pub fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), ClientError> {
        let len = dst.len() as u64;
        self.readv(&[GpaRange { gpa, len }], dst)
    }

    /// Copies `src` into guest RAM at `gpa`; see [`read`](Self::read).
    pub fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), ClientError> {
        let len = src.len() as u64;
        self.writev(&[GpaRange { gpa, len }], src)
    }

    /// Gathers the guest ranges `segments` (a virtqueue descriptor chain,
    /// say) into `dst`, one after the other, packing as many ranges as fit
    /// the buffer and the message into each call.
    pub fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), ClientError> {
        self.transfer(
            Direction::FromGuest,
            segments,
            dst.len(),
            |buffer, at, len| {
                let part = at
                    .checked_add(len)
                    .and_then(|end| dst.get_mut(at..end))
                    .ok_or(crate::Error::OutsideBuffer)?;
                buffer.read(0, part)
            },
        )
    }

    /// Scatters `src` over the guest ranges `segments`; see
    /// [`readv`](Self::readv).
    pub fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), ClientError> {
        self.transfer(
            Direction::ToGuest,
            segments,
            src.len(),
            |buffer, at, len| {
                let part = at
                    .checked_add(len)
                    .and_then(|end| src.get(at..end))
                    .ok_or(crate::Error::OutsideBuffer)?;
                buffer.write(0, part)
            },
        )
    }

    /// Reads `len` bytes at `gpa` into the shared buffer and hands back the
    /// filled part of it: one copy in all (guest → buffer), for callers that
    /// only look at the bytes.
    ///
    /// The slice borrows the client mutably, so no other call (the only time
    /// the VMM writes this buffer) can happen while it lives.
    pub fn read_in_place(&mut self, gpa: u64, len: usize) -> Result<&[u8], ClientError> {
        if len > self.buffer.len() {
            return Err(ClientError::TooLarge);
        }
        let range = GpaRange {
            gpa,
            len: len as u64,
        };
        self.transfer(Direction::FromGuest, &[range], len, |_, _, _| Ok(()))?;
        // SAFETY: the VMM writes this buffer only while this client is in a
        // PPC, and `&mut self` is held for the slice's lifetime.
        unsafe { self.buffer.slice(len) }.map_err(|_| ClientError::TooLarge)
    }

    /// Gathers the guest ranges `segments` into the shared buffer, packed
    /// from offset 0, and returns the byte count: the zero-bounce half of a
    /// device model that moves data between the buffer and its own memory
    /// (see [`SharedBuffer::copy_from`]). The total must fit the buffer.
    pub fn readv_in_place(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.in_place(Direction::FromGuest, segments)
    }

    /// Scatters the start of the shared buffer, which the caller has filled
    /// (see [`buffer`](Self::buffer)), over the guest ranges `segments`: one
    /// copy (buffer → guest) in all, the mirror of
    /// [`readv_in_place`](Self::readv_in_place). Returns the byte count.
    pub fn writev_in_place(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.in_place(Direction::ToGuest, segments)
    }

    /// In-place transfers: segment `i` sits at the buffer offset where
    /// segment `i - 1` ended, across as many calls as the segment count
    /// needs.
    fn in_place(
        &mut self,
        direction: Direction,
        segments: &[GpaRange],
    ) -> Result<usize, ClientError> {
        let total = checked_total(segments)?;
        if total > self.buffer.len() as u64 {
            return Err(ClientError::TooLarge);
        }
        let mut offset = 0;
        for batch in segments.chunks(MAX_SEGMENTS) {
            let mut wire: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
            let mut bytes = 0;
            for s in batch {
                // Cannot fail: `chunks(MAX_SEGMENTS)`.
                let _ = wire.push(Segment::new(s.gpa, s.len, offset + bytes));
                bytes += s.len;
            }
            self.flush(direction, &wire, bytes, 0, &mut |_, _, _| Ok(()))?;
            offset += bytes;
        }
        Ok(total as usize)
    }

    /// Sets `len` bytes of guest RAM at `gpa` to `byte`, with no buffer use.
    pub fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), ClientError> {
        GpaRange { gpa, len }.end().map_err(shape_error)?;
        let (label, words) = protocol::encode_fill(gpa, len, byte, &mut self.msg);
        match self.call(label, words)?.0 {
            n if n == len => Ok(()),
            _ => Err(ClientError::BadReply),
        }
    }

    /// The chunking engine: packs pieces of `segments` into calls of at most
    /// [`MAX_SEGMENTS`] segments and one buffer's worth of bytes. `stage`
    /// moves `len` bytes between the buffer's start and the caller's data at
    /// `at`: before the call for writes, after it for reads.
    fn transfer(
        &mut self,
        direction: Direction,
        segments: &[GpaRange],
        data_len: usize,
        mut stage: impl FnMut(&SharedBuffer, usize, usize) -> Result<(), crate::Error>,
    ) -> Result<(), ClientError> {
        let total = checked_total(segments)?;
        if total != data_len as u64 {
            return Err(ClientError::LengthMismatch);
        }
        let capacity = self.buffer.len() as u64;
        if capacity == 0 {
            return Err(ClientError::TooLarge);
        }
        let mut batch: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
        let mut batch_bytes: u64 = 0;
        let mut data_at: usize = 0;
        for s in segments {
            let mut done = 0;
            while done < s.len {
                let n = (s.len - done).min(capacity - batch_bytes);
                // Cannot fail: the batch is flushed whenever it fills up.
                let _ = batch.push(Segment::new(s.gpa + done, n, batch_bytes));
                batch_bytes += n;
                done += n;
                if batch_bytes == capacity || batch.is_full() {
                    self.flush(direction, &batch, batch_bytes, data_at, &mut stage)?;
                    data_at += batch_bytes as usize;
                    batch.clear();
                    batch_bytes = 0;
                }
            }
        }
        if !batch.is_empty() {
            self.flush(direction, &batch, batch_bytes, data_at, &mut stage)?;
        }
        Ok(())
    }

    fn flush(
        &mut self,
        direction: Direction,
        batch: &[Segment],
        bytes: u64,
        data_at: usize,
        stage: &mut impl FnMut(&SharedBuffer, usize, usize) -> Result<(), crate::Error>,
    ) -> Result<(), ClientError> {
        let op = match (direction, batch.len()) {
            (Direction::FromGuest, 1) => Op::Read,
            (Direction::ToGuest, 1) => Op::Write,
            (Direction::FromGuest, _) => Op::ReadV,
            (Direction::ToGuest, _) => Op::WriteV,
        };
        if direction == Direction::ToGuest {
            stage(&self.buffer, data_at, bytes as usize).map_err(|_| ClientError::TooLarge)?;
        }
        let (label, words) =
            protocol::encode_copy(op, batch, &mut self.msg).map_err(ClientError::Refused)?;
        if self.call(label, words)?.0 != bytes {
            return Err(ClientError::BadReply);
        }
        if direction == Direction::FromGuest {
            stage(&self.buffer, data_at, bytes as usize).map_err(|_| ClientError::TooLarge)?;
        }
        Ok(())
    }
}

/// The total length of `segments`, checked before any call: each range's
/// shape, the sum's overflow, and that there is at least one.
fn checked_total(segments: &[GpaRange]) -> Result<u64, ClientError> {
    let mut total: u64 = 0;
    for s in segments {
        s.end().map_err(shape_error)?;
        total = total.checked_add(s.len).ok_or(ClientError::Overflow)?;
    }
    if segments.is_empty() {
        return Err(ClientError::ZeroLength);
    }
    Ok(total)
}

fn shape_error(e: crate::Error) -> ClientError {
    match e {
        crate::Error::ZeroLength => ClientError::ZeroLength,
        _ => ClientError::Overflow,
    }
}
