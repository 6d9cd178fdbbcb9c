// SPDX-License-Identifier: BSD-2-Clause
//! sDDF's block queues in Rust: the request and response rings, and the
//! storage-info page, that a block *client* (here the blk PD, which
//! serves the guest's virtio-blk queue) and a block *driver* (a PD that
//! owns the device) share, with a notification each way.
//!
//! The layout is sDDF's (`include/sddf/blk/queue.h` and
//! `storage_info.h`, read for the layout, not copied), so an sDDF block
//! driver could take the Rust driver's place:
//!
//! | record | bytes | fields (offset: type) |
//! |---|---|---|
//! | request queue | 16 + 32 × capacity | 0: `head` u32, 4: `tail` u32, 8: `plugged` u8, 16: requests |
//! | [`RawRequest`] | 32 | 0: `code` u32, 8: `io_or_offset` u64, 16: `block_number` u64, 24: `count` u16, 28: `id` u32 |
//! | response queue | 8 + 12 × capacity | 0: `head` u32, 4: `tail` u32, 8: responses |
//! | [`RawResponse`] | 12 | 0: `status` u32, 4: `success_count` u16, 8: `id` u32 |
//! | [`StorageInfo`] | 88 | 0: serial (64 bytes), 64: `read_only`, 65: `ready`, 66: `sector_size` u16, 68: `block_size` u16, 70: `queue_depth` u16, 72..78: geometry, 80: `capacity` u64 |
//!
//! All little-endian (sDDF's are native-endian; every target here is
//! little-endian). Blocks are [`TRANSFER_SIZE`] (4 KiB) bytes; a request's
//! `io_or_offset` is a byte offset into the data region both PDs map.
//!
//! What differs from sDDF's C, and why: each side keeps its own index
//! (the producer's `tail`, the consumer's `head`) in private memory and
//! only writes it to the shared ring, never reading it back, so the other
//! side cannot move it; the other side's index is checked on every read
//! (`tail - head` above the capacity is [`Error::BadIndex`]); the driver
//! checks every request against the data region and the disk before it
//! touches either ([`Request::transfer`]). None of that changes a byte of
//! the layout.
//!
//! ```
//! # use core::ptr::NonNull;
//! # use guest_ram::SharedBuffer;
//! use blk_queue::{Client, Code, Driver, Request, Response, Rings, Status};
//! let (mut a, mut b) = ([0u8; 16 + 32 * 4], [0u8; 8 + 12 * 4]);
//! # let req = unsafe { SharedBuffer::new(NonNull::new(a.as_mut_ptr()).unwrap(), a.len()) };
//! # let resp = unsafe { SharedBuffer::new(NonNull::new(b.as_mut_ptr()).unwrap(), b.len()) };
//! let rings = Rings::new(req, resp, 4).unwrap();
//! let (mut client, mut driver) = (Client::new(rings), Driver::new(rings));
//! client.enqueue(&Request::new(Code::Read, 0, 7, 1, 42)).unwrap();
//! let got = driver.dequeue().unwrap().unwrap();
//! assert_eq!((got.code, got.block, got.id), (Code::Read, 7, 42));
//! driver.enqueue(&Response::new(Status::Ok, 1, 42)).unwrap();
//! assert_eq!(client.dequeue().unwrap(), Some(Response::new(Status::Ok, 1, 42)));
//! ```
#![no_std]
#![deny(missing_docs)]

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use guest_ram::SharedBuffer;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

pub mod disk;
pub mod driver;

/// Bytes per block (sDDF's `BLK_TRANSFER_SIZE`).
pub const TRANSFER_SIZE: u64 = 4096;
/// Bytes before the first request record.
pub const REQ_HEADER: usize = 16;
/// Bytes before the first response record.
pub const RESP_HEADER: usize = 8;
/// Ring capacity the blk PD and the block driver PD agree on (both
/// rings; a 4 KiB page holds a request ring of up to 127).
pub const RING_CAPACITY: u32 = 64;

/// Bytes of the storage-info page sDDF sets aside.
pub const STORAGE_INFO_REGION: usize = 0x1000;

/// Why a queue operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The other side's index is more than a capacity away from ours:
    /// the ring is corrupt (or the other side hostile). Nothing moved.
    BadIndex {
        /// The consumer's index as this side sees it.
        head: u32,
        /// The producer's index as this side sees it.
        tail: u32,
    },
    /// The ring is full.
    Full,
    /// A ring or page does not fit its shared buffer, or the capacity is 0.
    Memory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadIndex { head, tail } => {
                write!(f, "ring indices out of range (head {head}, tail {tail})")
            }
            Error::Full => f.write_str("ring full"),
            Error::Memory => f.write_str("ring or page does not fit its shared memory"),
        }
    }
}

/// A request's code (`blk_req_code_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Blocks from the device into the data region.
    Read,
    /// Blocks from the data region to the device.
    Write,
    /// Make every completed write durable.
    Flush,
    /// Order: complete everything before, then what follows.
    Barrier,
    /// A code sDDF does not define, as it was sent.
    Unknown(u32),
}

impl Code {
    fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Code::Read,
            1 => Code::Write,
            2 => Code::Flush,
            3 => Code::Barrier,
            n => Code::Unknown(n),
        }
    }

    fn raw(self) -> u32 {
        match self {
            Code::Read => 0,
            Code::Write => 1,
            Code::Flush => 2,
            Code::Barrier => 3,
            Code::Unknown(n) => n,
        }
    }
}

/// A response's status (`blk_resp_status_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// Failed, no reason given.
    ErrUnspec,
    /// The request was malformed (a code, range or count the driver refuses).
    InvalidParam,
    /// The device failed the request.
    Io,
    /// No device.
    NoDevice,
    /// A status sDDF does not define, as it was sent.
    Unknown(u32),
}

impl Status {
    fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Status::Ok,
            1 => Status::ErrUnspec,
            2 => Status::InvalidParam,
            3 => Status::Io,
            4 => Status::NoDevice,
            n => Status::Unknown(n),
        }
    }

    fn raw(self) -> u32 {
        match self {
            Status::Ok => 0,
            Status::ErrUnspec => 1,
            Status::InvalidParam => 2,
            Status::Io => 3,
            Status::NoDevice => 4,
            Status::Unknown(n) => n,
        }
    }
}

/// `blk_req_t` as it lies in the ring (32 bytes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawRequest {
    /// [`Code`].
    pub code: U32,
    /// Padding (C's alignment of the next field).
    pub pad0: U32,
    /// Byte offset of the data in the data region.
    pub io_or_offset: U64,
    /// First block ([`TRANSFER_SIZE`] bytes each).
    pub block_number: U64,
    /// Blocks.
    pub count: U16,
    /// Padding.
    pub pad1: U16,
    /// The client's id for the request, echoed in its response.
    pub id: U32,
}

/// `blk_resp_t` as it lies in the ring (12 bytes).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct RawResponse {
    /// [`Status`].
    pub status: U32,
    /// Blocks transferred.
    pub success_count: U16,
    /// Padding.
    pub pad: U16,
    /// The request's id.
    pub id: U32,
}

/// A block request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub code: Code,
    /// Byte offset of the data in the data region.
    pub io_offset: u64,
    /// First block.
    pub block: u64,
    /// Blocks.
    pub count: u16,
    /// The client's id, echoed in the response.
    pub id: u32,
}

impl Request {
    /// A request.
    pub const fn new(code: Code, io_offset: u64, block: u64, count: u16, id: u32) -> Self {
        Request {
            code,
            io_offset,
            block,
            count,
            id,
        }
    }

    fn raw(&self) -> RawRequest {
        RawRequest {
            code: self.code.raw().into(),
            pad0: 0.into(),
            io_or_offset: self.io_offset.into(),
            block_number: self.block.into(),
            count: self.count.into(),
            pad1: 0.into(),
            id: self.id.into(),
        }
    }

    fn from_raw(raw: &RawRequest) -> Self {
        Request {
            code: Code::from_raw(raw.code.get()),
            io_offset: raw.io_or_offset.get(),
            block: raw.block_number.get(),
            count: raw.count.get(),
            id: raw.id.get(),
        }
    }

    /// Checks a read or write against a data region of `data_len` bytes
    /// and a disk of `capacity` blocks: at least one block, the data inside
    /// the region, the blocks inside the disk, every sum checked. Flush and
    /// barrier requests move nothing ([`Transfer::len`] 0). Anything else
    /// is [`Status::InvalidParam`], for the driver to send back.
    ///
    /// ```
    /// use blk_queue::{Code, Request, Status};
    /// let ok = Request::new(Code::Write, 4096, 10, 2, 1).transfer(16384, 100).unwrap();
    /// assert_eq!((ok.data_offset, ok.len, ok.sector), (4096, 8192, 80));
    /// let past = Request::new(Code::Read, 12288, 0, 2, 1).transfer(16384, 100);
    /// assert_eq!(past, Err(Status::InvalidParam));
    /// ```
    pub fn transfer(&self, data_len: u64, capacity: u64) -> Result<Transfer, Status> {
        match self.code {
            Code::Flush | Code::Barrier => {
                return Ok(Transfer {
                    data_offset: 0,
                    len: 0,
                    sector: 0,
                })
            }
            Code::Read | Code::Write => {}
            Code::Unknown(_) => return Err(Status::InvalidParam),
        }
        let count = u64::from(self.count);
        let len = count
            .checked_mul(TRANSFER_SIZE)
            .ok_or(Status::InvalidParam)?;
        let data_end = self
            .io_offset
            .checked_add(len)
            .ok_or(Status::InvalidParam)?;
        let block_end = self.block.checked_add(count).ok_or(Status::InvalidParam)?;
        if count == 0 || data_end > data_len || block_end > capacity {
            return Err(Status::InvalidParam);
        }
        let data_offset = usize::try_from(self.io_offset).map_err(|_| Status::InvalidParam)?;
        let len = usize::try_from(len).map_err(|_| Status::InvalidParam)?;
        let sector = self
            .block
            .checked_mul(TRANSFER_SIZE / 512)
            .ok_or(Status::InvalidParam)?;
        Ok(Transfer {
            data_offset,
            len,
            sector,
        })
    }
}

/// A checked request's data: where in the data region, how long, and the
/// first 512-byte sector on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Byte offset in the data region.
    pub data_offset: usize,
    /// Bytes.
    pub len: usize,
    /// First 512-byte sector (what virtio-blk devices address).
    pub sector: u64,
}

/// A block response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// How it went.
    pub status: Status,
    /// Blocks transferred.
    pub success_count: u16,
    /// The request's id.
    pub id: u32,
}

impl Response {
    /// A response.
    pub const fn new(status: Status, success_count: u16, id: u32) -> Self {
        Response {
            status,
            success_count,
            id,
        }
    }

    fn raw(&self) -> RawResponse {
        RawResponse {
            status: self.status.raw().into(),
            success_count: self.success_count.into(),
            pad: 0.into(),
            id: self.id.into(),
        }
    }

    fn from_raw(raw: &RawResponse) -> Self {
        Response {
            status: Status::from_raw(raw.status.get()),
            success_count: raw.success_count.get(),
            id: raw.id.get(),
        }
    }
}

/// The two rings' memory and their capacity, checked to fit.
#[derive(Clone, Copy, Debug)]
pub struct Rings {
    req: SharedBuffer,
    resp: SharedBuffer,
    capacity: u32,
}

const REQ_LEN: usize = core::mem::size_of::<RawRequest>();
const RESP_LEN: usize = core::mem::size_of::<RawResponse>();

impl Rings {
    /// Rings of `capacity` entries in `req` and `resp` (each side maps
    /// both). [`Error::Memory`] if either is too small or `capacity` is 0.
    pub fn new(req: SharedBuffer, resp: SharedBuffer, capacity: u32) -> Result<Self, Error> {
        let cap = usize::try_from(capacity).map_err(|_| Error::Memory)?;
        let fits = |header: usize, record: usize, len: usize| {
            cap.checked_mul(record)
                .and_then(|n| n.checked_add(header))
                .is_some_and(|n| n <= len)
        };
        if cap == 0
            || !fits(REQ_HEADER, REQ_LEN, req.len())
            || !fits(RESP_HEADER, RESP_LEN, resp.len())
        {
            return Err(Error::Memory);
        }
        Ok(Rings {
            req,
            resp,
            capacity,
        })
    }

    /// Entries per ring.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The bytes a ring of `capacity` requests takes.
    pub const fn request_bytes(capacity: usize) -> usize {
        REQ_HEADER + REQ_LEN * capacity
    }

    /// The bytes a ring of `capacity` responses takes.
    pub const fn response_bytes(capacity: usize) -> usize {
        RESP_HEADER + RESP_LEN * capacity
    }

    fn slot(&self, index: u32, header: usize, record: usize) -> usize {
        // Cannot overflow: `new` checked header + record × capacity fits
        // in a buffer, and index % capacity < capacity.
        header + record * index.checked_rem(self.capacity).unwrap_or(0) as usize
    }
}

fn read_u32(buffer: &SharedBuffer, offset: usize) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    buffer.read(offset, &mut b).map_err(|_| Error::Memory)?;
    Ok(u32::from_le_bytes(b))
}

fn write_u32(buffer: &SharedBuffer, offset: usize, value: u32) -> Result<(), Error> {
    buffer
        .write(offset, &value.to_le_bytes())
        .map_err(|_| Error::Memory)
}

fn read_record<T: FromBytes + IntoBytes>(buffer: &SharedBuffer, offset: usize) -> Result<T, Error> {
    let mut value = T::new_zeroed();
    buffer
        .read(offset, value.as_mut_bytes())
        .map_err(|_| Error::Memory)?;
    Ok(value)
}

/// One ring's producer: it owns `tail`.
#[derive(Clone, Copy, Debug)]
struct Producer {
    tail: u32,
}

/// One ring's consumer: it owns `head`.
#[derive(Clone, Copy, Debug)]
struct Consumer {
    head: u32,
}

impl Producer {
    /// Room check against the consumer's `head` (read from the ring).
    fn room(&self, rings: &Rings, buffer: &SharedBuffer) -> Result<(), Error> {
        let head = read_u32(buffer, 0)?;
        let used = self.tail.wrapping_sub(head);
        if used > rings.capacity {
            return Err(Error::BadIndex {
                head,
                tail: self.tail,
            });
        }
        if used == rings.capacity {
            return Err(Error::Full);
        }
        Ok(())
    }

    fn publish(&mut self, buffer: &SharedBuffer) -> Result<(), Error> {
        // The record before the index that publishes it.
        fence(Ordering::Release);
        self.tail = self.tail.wrapping_add(1);
        write_u32(buffer, 4, self.tail)
    }
}

impl Consumer {
    /// Entries waiting, against the producer's `tail` (read from the ring).
    fn waiting(&self, rings: &Rings, buffer: &SharedBuffer) -> Result<u32, Error> {
        let tail = read_u32(buffer, 4)?;
        let n = tail.wrapping_sub(self.head);
        if n > rings.capacity {
            return Err(Error::BadIndex {
                head: self.head,
                tail,
            });
        }
        // The records after the index that published them.
        fence(Ordering::Acquire);
        Ok(n)
    }

    fn release(&mut self, buffer: &SharedBuffer) -> Result<(), Error> {
        // The record is copied out before its slot is handed back.
        fence(Ordering::Release);
        self.head = self.head.wrapping_add(1);
        write_u32(buffer, 0, self.head)
    }
}

/// The client's side (the blk PD): produces requests, consumes responses.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    rings: Rings,
    requests: Producer,
    responses: Consumer,
}

impl Client {
    /// The client's side of freshly zeroed rings.
    pub fn new(rings: Rings) -> Self {
        Client {
            rings,
            requests: Producer { tail: 0 },
            responses: Consumer { head: 0 },
        }
    }

    /// Queues `request`. [`Error::Full`] if there is no room; nothing is
    /// written then.
    pub fn enqueue(&mut self, request: &Request) -> Result<(), Error> {
        let buffer = self.rings.req;
        self.requests.room(&self.rings, &buffer)?;
        let at = self.rings.slot(self.requests.tail, REQ_HEADER, REQ_LEN);
        buffer
            .write(at, request.raw().as_bytes())
            .map_err(|_| Error::Memory)?;
        self.requests.publish(&buffer)
    }

    /// Entries per ring.
    pub fn capacity(&self) -> u32 {
        self.rings.capacity
    }

    /// The next response, if there is one.
    pub fn dequeue(&mut self) -> Result<Option<Response>, Error> {
        let buffer = self.rings.resp;
        if self.responses.waiting(&self.rings, &buffer)? == 0 {
            return Ok(None);
        }
        let at = self.rings.slot(self.responses.head, RESP_HEADER, RESP_LEN);
        let raw: RawResponse = read_record(&buffer, at)?;
        self.responses.release(&buffer)?;
        Ok(Some(Response::from_raw(&raw)))
    }

    /// Sets or clears the request ring's `plugged` flag: a plugged ring's
    /// requests wait until it is unplugged.
    pub fn plug(&mut self, plugged: bool) -> Result<(), Error> {
        self.rings
            .req
            .write(8, &[u8::from(plugged)])
            .map_err(|_| Error::Memory)
    }
}

/// The driver's side: consumes requests, produces responses.
#[derive(Clone, Copy, Debug)]
pub struct Driver {
    rings: Rings,
    requests: Consumer,
    responses: Producer,
}

impl Driver {
    /// The driver's side of freshly zeroed rings.
    pub fn new(rings: Rings) -> Self {
        Driver {
            rings,
            requests: Consumer { head: 0 },
            responses: Producer { tail: 0 },
        }
    }

    /// The next request, if there is one and the ring is not plugged. The
    /// request is as the client wrote it: check it with
    /// [`Request::transfer`] before acting on it.
    pub fn dequeue(&mut self) -> Result<Option<Request>, Error> {
        let buffer = self.rings.req;
        let mut plugged = [0u8];
        buffer.read(8, &mut plugged).map_err(|_| Error::Memory)?;
        if plugged[0] != 0 || self.requests.waiting(&self.rings, &buffer)? == 0 {
            return Ok(None);
        }
        let at = self.rings.slot(self.requests.head, REQ_HEADER, REQ_LEN);
        let raw: RawRequest = read_record(&buffer, at)?;
        self.requests.release(&buffer)?;
        Ok(Some(Request::from_raw(&raw)))
    }

    /// Queues `response`. [`Error::Full`] if there is no room.
    pub fn enqueue(&mut self, response: &Response) -> Result<(), Error> {
        let buffer = self.rings.resp;
        self.responses.room(&self.rings, &buffer)?;
        let at = self.rings.slot(self.responses.tail, RESP_HEADER, RESP_LEN);
        buffer
            .write(at, response.raw().as_bytes())
            .map_err(|_| Error::Memory)?;
        self.responses.publish(&buffer)
    }
}

/// `blk_storage_info_t` (88 bytes): the driver describes the device here,
/// `ready` last.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct StorageInfo {
    /// NUL-terminated serial number.
    pub serial_number: [u8; 64],
    /// 1: the device takes no writes.
    pub read_only: u8,
    /// 1: the rest of the page is valid.
    pub ready: u8,
    /// Bytes per sector.
    pub sector_size: U16,
    /// Optimal block size, in [`TRANSFER_SIZE`] units.
    pub block_size: U16,
    /// Requests the driver can have in flight.
    pub queue_depth: U16,
    /// Geometry: cylinders.
    pub cylinders: U16,
    /// Geometry: heads.
    pub heads: U16,
    /// Geometry: blocks per track.
    pub blocks: U16,
    /// Padding (C's alignment of `capacity`).
    pub pad: U16,
    /// Capacity in [`TRANSFER_SIZE`] blocks.
    pub capacity: U64,
}

impl StorageInfo {
    /// A ready, writable device of `capacity` blocks with `sector_size`-
    /// byte sectors and `queue_depth` requests in flight.
    pub fn new(capacity: u64, sector_size: u16, queue_depth: u16) -> Self {
        let mut info = StorageInfo::new_zeroed();
        info.ready = 1;
        info.sector_size = sector_size.into();
        info.block_size = 1.into();
        info.queue_depth = queue_depth.into();
        info.capacity = capacity.into();
        info
    }
}

/// The driver publishes `info`: everything, then `ready` after a fence.
pub fn publish_storage_info(page: &SharedBuffer, info: &StorageInfo) -> Result<(), Error> {
    let mut copy = *info;
    let ready = copy.ready;
    copy.ready = 0;
    page.write(0, copy.as_bytes()).map_err(|_| Error::Memory)?;
    fence(Ordering::Release);
    page.write(65, &[ready]).map_err(|_| Error::Memory)
}

/// The client reads the page: `None` until the driver has said `ready`.
pub fn read_storage_info(page: &SharedBuffer) -> Result<Option<StorageInfo>, Error> {
    let mut ready = [0u8];
    page.read(65, &mut ready).map_err(|_| Error::Memory)?;
    if ready[0] == 0 {
        return Ok(None);
    }
    fence(Ordering::Acquire);
    read_record(page, 0).map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(
        unsafe_code,
        reason = "test memory stands in for a shared mapping; it outlives the buffer"
    )]

    use super::*;
    use core::ptr::NonNull;

    fn buffer(memory: &mut [u8]) -> SharedBuffer {
        // SAFETY: the tests keep `memory` alive while the buffer is used.
        unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
    }

    #[test]
    fn layout_is_sddf() {
        assert_eq!(core::mem::size_of::<RawRequest>(), 32);
        assert_eq!(core::mem::size_of::<RawResponse>(), 12);
        assert_eq!(core::mem::size_of::<StorageInfo>(), 88);
        assert_eq!(core::mem::offset_of!(RawRequest, io_or_offset), 8);
        assert_eq!(core::mem::offset_of!(RawRequest, block_number), 16);
        assert_eq!(core::mem::offset_of!(RawRequest, count), 24);
        assert_eq!(core::mem::offset_of!(RawRequest, id), 28);
        assert_eq!(core::mem::offset_of!(RawResponse, success_count), 4);
        assert_eq!(core::mem::offset_of!(RawResponse, id), 8);
        assert_eq!(core::mem::offset_of!(StorageInfo, ready), 65);
        assert_eq!(core::mem::offset_of!(StorageInfo, sector_size), 66);
        assert_eq!(core::mem::offset_of!(StorageInfo, capacity), 80);
    }

    #[test]
    fn full_and_wrapping() {
        let (mut a, mut b) = ([0u8; 16 + 32 * 2], [0u8; 8 + 12 * 2]);
        let rings = Rings::new(buffer(&mut a), buffer(&mut b), 2).unwrap();
        let (mut c, mut d) = (Client::new(rings), Driver::new(rings));
        for id in 0..1000u32 {
            c.enqueue(&Request::new(Code::Write, 0, 0, 1, id)).unwrap();
            c.enqueue(&Request::new(Code::Read, 0, 0, 1, id + 1))
                .unwrap();
            assert_eq!(
                c.enqueue(&Request::new(Code::Read, 0, 0, 1, 0)),
                Err(Error::Full)
            );
            assert_eq!(d.dequeue().unwrap().unwrap().id, id);
            assert_eq!(d.dequeue().unwrap().unwrap().id, id + 1);
            assert_eq!(d.dequeue().unwrap(), None);
            d.enqueue(&Response::new(Status::Io, 0, id)).unwrap();
            assert_eq!(c.dequeue().unwrap().unwrap().status, Status::Io);
            assert_eq!(c.dequeue().unwrap(), None);
        }
    }

    #[test]
    fn a_tail_from_nowhere_is_an_error() {
        let (mut a, mut b) = ([0u8; 16 + 32 * 4], [0u8; 8 + 12 * 4]);
        let (req, resp) = (buffer(&mut a), buffer(&mut b));
        let rings = Rings::new(req, resp, 4).unwrap();
        let mut d = Driver::new(rings);
        req.write(4, &5u32.to_le_bytes()).unwrap();
        assert_eq!(d.dequeue(), Err(Error::BadIndex { head: 0, tail: 5 }));
        let mut c = Client::new(rings);
        resp.write(4, &u32::MAX.to_le_bytes()).unwrap();
        assert!(matches!(c.dequeue(), Err(Error::BadIndex { .. })));
        // A head the driver moved past our tail.
        req.write(0, &3u32.to_le_bytes()).unwrap();
        assert!(matches!(
            c.enqueue(&Request::new(Code::Read, 0, 0, 1, 0)),
            Err(Error::BadIndex { .. })
        ));
    }

    #[test]
    fn small_memory_is_refused() {
        let (mut a, mut b) = ([0u8; 16 + 32 * 4], [0u8; 8 + 12 * 4]);
        assert_eq!(
            Rings::new(buffer(&mut a), buffer(&mut b), 5).err(),
            Some(Error::Memory)
        );
        assert_eq!(
            Rings::new(buffer(&mut a), buffer(&mut b), 0).err(),
            Some(Error::Memory)
        );
        assert_eq!(
            Rings::new(buffer(&mut a), buffer(&mut b), u32::MAX).err(),
            Some(Error::Memory)
        );
    }

    #[test]
    fn storage_info_ready_last() {
        let mut page = [0u8; 4096];
        let page = buffer(&mut page);
        assert_eq!(read_storage_info(&page), Ok(None));
        let info = StorageInfo::new(4096, 512, 1);
        publish_storage_info(&page, &info).unwrap();
        assert_eq!(read_storage_info(&page), Ok(Some(info)));
    }

    #[test]
    fn transfer_checks() {
        let r = |code, off, block, count| Request::new(code, off, block, count, 0);
        assert_eq!(
            r(Code::Read, 0, 0, 0).transfer(1 << 20, 10),
            Err(Status::InvalidParam)
        );
        assert_eq!(
            r(Code::Read, 0, 9, 2).transfer(1 << 20, 10),
            Err(Status::InvalidParam)
        );
        assert_eq!(
            r(Code::Read, u64::MAX, 0, 1).transfer(u64::MAX, 10),
            Err(Status::InvalidParam)
        );
        assert_eq!(
            r(Code::Write, 0, u64::MAX, 1).transfer(1 << 20, u64::MAX),
            Err(Status::InvalidParam)
        );
        assert_eq!(
            r(Code::Unknown(9), 0, 0, 1).transfer(1 << 20, 10),
            Err(Status::InvalidParam)
        );
        assert_eq!(r(Code::Flush, 7, 7, 7).transfer(0, 0).unwrap().len, 0);
        assert_eq!(
            r(Code::Read, 0, 8, 2).transfer(8192, 10).unwrap().sector,
            64
        );
    }
}
