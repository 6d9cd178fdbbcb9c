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

/// A guest range and where its bytes sit in the client's shared buffer,
/// for [`Client::readv_placed`] and [`Client::writev_placed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The guest range.
    pub range: GpaRange,
    /// Offset of its first byte in the shared buffer.
    pub buffer_offset: u64,
}

/// A client of the VMM's copy service over transport `T`, staging data in
/// its shared buffer.
///
/// Transfers larger than the staging area are split into several calls; a
/// refusal part-way leaves the earlier chunks done. Range shapes (zero
/// length, overflow, data length) are checked before the first call, so
/// those never leave a transfer half done.
///
/// The staging area is the whole shared buffer ([`new`](Self::new)) or a
/// part of it ([`with_staging`](Self::with_staging)): a device PD whose
/// data region *is* its shared buffer (a RAM disk, an sDDF data region)
/// stages headers and status bytes in a corner of it and moves data
/// straight between guest RAM and its own memory with
/// [`readv_placed`](Self::readv_placed) and
/// [`writev_placed`](Self::writev_placed): one copy, by the VMM.
pub struct Client<T> {
    transport: T,
    buffer: SharedBuffer,
    /// Where the staging area starts in `buffer`.
    staging_base: u64,
    staging: SharedBuffer,
    msg: [u64; MSG_WORDS],
}

impl<T: Transport> Client<T> {
    /// A client whose shared buffer is mapped at `buffer` in this PD, all
    /// of it the staging area.
    pub fn new(transport: T, buffer: SharedBuffer) -> Self {
        Client {
            transport,
            buffer,
            staging_base: 0,
            staging: buffer,
            msg: [0; MSG_WORDS],
        }
    }

    /// A client that stages copies in the `staging_len` bytes at
    /// `staging_offset` of its shared buffer, leaving the rest to
    /// [`readv_placed`](Self::readv_placed) and
    /// [`writev_placed`](Self::writev_placed). Errors if the staging area
    /// is not inside the buffer.
    pub fn with_staging(
        transport: T,
        buffer: SharedBuffer,
        staging_offset: usize,
        staging_len: usize,
    ) -> Result<Self, ClientError> {
        let staging = buffer
            .sub(staging_offset, staging_len)
            .map_err(|_| ClientError::TooLarge)?;
        Ok(Client {
            transport,
            buffer,
            staging_base: staging_offset as u64,
            staging,
            msg: [0; MSG_WORDS],
        })
    }

    /// The transport (to read its counters, say).
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The whole shared buffer, which [`Placed`] offsets address.
    pub fn buffer(&self) -> &SharedBuffer {
        &self.buffer
    }

    /// The staging area: the whole shared buffer unless the client was
    /// made [`with_staging`](Self::with_staging).
    pub fn staging(&self) -> &SharedBuffer {
        &self.staging
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
        if len > self.staging.len() {
            return Err(ClientError::TooLarge);
        }
        let range = GpaRange {
            gpa,
            len: len as u64,
        };
        range.end().map_err(shape_error)?;
        // One segment that fits the staging area: one call, no chunking.
        let segment = [Segment::new(gpa, range.len, self.staging_base)];
        self.flush(
            Direction::FromGuest,
            &segment,
            range.len,
            0,
            &mut |_, _, _| Ok(()),
        )?;
        // SAFETY: the VMM writes this buffer only while this client is in a
        // PPC, and `&mut self` is held for the slice's lifetime.
        unsafe { self.staging.slice(len) }.map_err(|_| ClientError::TooLarge)
    }

    /// Gathers the guest ranges `segments` into the shared buffer, packed
    /// from offset 0, and returns the byte count: the zero-bounce half of a
    /// device model that moves data between the buffer and its own memory
    /// (see [`SharedBuffer::copy_from`]). The total must fit the buffer.
    pub fn readv_in_place(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        let (base, end) = self.staging_bounds();
        self.in_place(Direction::FromGuest, segments, base, end)
    }

    /// Scatters the start of the shared buffer, which the caller has filled
    /// (see [`staging`](Self::staging)), over the guest ranges `segments`: one
    /// copy (buffer → guest) in all, the mirror of
    /// [`readv_in_place`](Self::readv_in_place). Returns the byte count.
    pub fn writev_in_place(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        let (base, end) = self.staging_bounds();
        self.in_place(Direction::ToGuest, segments, base, end)
    }

    /// The staging area's first and past-the-end offsets in the buffer.
    fn staging_bounds(&self) -> (u64, u64) {
        (
            self.staging_base,
            self.staging_base + self.staging.len() as u64,
        )
    }

    /// Gathers the guest ranges `segments` into the shared buffer at
    /// contiguous offsets from `buffer_offset` (of the whole buffer, not
    /// the staging area): the one copy between guest RAM and a device's
    /// own memory when that memory is the shared buffer. Returns the byte
    /// count. Calls: one per [`MAX_SEGMENTS`] segments, whatever the bytes.
    pub fn readv_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, ClientError> {
        self.in_place(
            Direction::FromGuest,
            segments,
            buffer_offset,
            self.buffer.len() as u64,
        )
    }

    /// Scatters the shared buffer's bytes from `buffer_offset` over the
    /// guest ranges `segments`; the mirror of [`readv_at`](Self::readv_at).
    pub fn writev_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, ClientError> {
        self.in_place(
            Direction::ToGuest,
            segments,
            buffer_offset,
            self.buffer.len() as u64,
        )
    }

    /// Gathers each guest range into the shared buffer at its own offset
    /// (of the whole buffer), in order. Returns the byte count.
    pub fn readv_placed(&mut self, segments: &[Placed]) -> Result<usize, ClientError> {
        self.placed(Direction::FromGuest, segments)
    }

    /// Scatters the shared buffer's bytes at each segment's offset over its
    /// guest range, in order (each store ordered before the next segment's:
    /// status bytes, then used elements, then the used index, in one call).
    pub fn writev_placed(&mut self, segments: &[Placed]) -> Result<usize, ClientError> {
        self.placed(Direction::ToGuest, segments)
    }

    fn placed(&mut self, direction: Direction, segments: &[Placed]) -> Result<usize, ClientError> {
        if segments.is_empty() {
            return Err(ClientError::ZeroLength);
        }
        let mut total: u64 = 0;
        for s in segments {
            s.range.end().map_err(shape_error)?;
            let end = s
                .buffer_offset
                .checked_add(s.range.len)
                .ok_or(ClientError::Overflow)?;
            if end > self.buffer.len() as u64 {
                return Err(ClientError::TooLarge);
            }
            total = total
                .checked_add(s.range.len)
                .ok_or(ClientError::Overflow)?;
        }
        let wire = segments
            .iter()
            .map(|s| Segment::new(s.range.gpa, s.range.len, s.buffer_offset));
        self.send_in_place(direction, wire)?;
        usize::try_from(total).map_err(|_| ClientError::Overflow)
    }

    /// Sends checked in-place segments (the data already where they say),
    /// [`MAX_SEGMENTS`] a call.
    fn send_in_place(
        &mut self,
        direction: Direction,
        mut segments: impl Iterator<Item = Segment>,
    ) -> Result<(), ClientError> {
        loop {
            let mut wire: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
            let mut bytes = 0;
            for s in segments.by_ref().take(MAX_SEGMENTS) {
                // Cannot fail: `take(MAX_SEGMENTS)`.
                let _ = wire.push(s);
                bytes += s.len;
            }
            if wire.is_empty() {
                return Ok(());
            }
            self.flush(direction, &wire, bytes, 0, &mut |_, _, _| Ok(()))?;
        }
    }

    /// In-place transfers: segment `i` sits at the buffer offset where
    /// segment `i - 1` ended, from `start`, all of it below `limit`; across
    /// as many calls as the segment count needs.
    fn in_place(
        &mut self,
        direction: Direction,
        segments: &[GpaRange],
        start: u64,
        limit: u64,
    ) -> Result<usize, ClientError> {
        let total = checked_total(segments)?;
        if start.checked_add(total).is_none_or(|end| end > limit) {
            return Err(ClientError::TooLarge);
        }
        // One segment (the common case): one call, no batching.
        if let [s] = segments {
            let segment = [Segment::new(s.gpa, s.len, start)];
            self.flush(direction, &segment, s.len, 0, &mut |_, _, _| Ok(()))?;
            return usize::try_from(total).map_err(|_| ClientError::Overflow);
        }
        // Segment `i` sits where segment `i - 1` ended (all checked above).
        let mut offset = start;
        let wire = segments.iter().map(|s| {
            let segment = Segment::new(s.gpa, s.len, offset);
            offset += s.len;
            segment
        });
        self.send_in_place(direction, wire)?;
        usize::try_from(total).map_err(|_| ClientError::Overflow)
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
        let capacity = self.staging.len() as u64;
        if capacity == 0 {
            return Err(ClientError::TooLarge);
        }
        let base = self.staging_base;
        let mut batch: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
        let mut batch_bytes: u64 = 0;
        let mut data_at: usize = 0;
        for s in segments {
            let mut done = 0;
            while done < s.len {
                let n = (s.len - done).min(capacity - batch_bytes);
                // Cannot fail: the batch is flushed whenever it fills up.
                let _ = batch.push(Segment::new(s.gpa + done, n, base + batch_bytes));
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
            stage(&self.staging, data_at, bytes as usize).map_err(|_| ClientError::TooLarge)?;
        }
        let (label, words) =
            protocol::encode_copy(op, batch, &mut self.msg).map_err(ClientError::Refused)?;
        if self.call(label, words)?.0 != bytes {
            return Err(ClientError::BadReply);
        }
        if direction == Direction::FromGuest {
            stage(&self.staging, data_at, bytes as usize).map_err(|_| ClientError::TooLarge)?;
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
