// SPDX-License-Identifier: BSD-2-Clause
//! A virtio-blk backend (virtio 1.2, §5.2): serves one split virtqueue
//! through a [`GuestDma`] from a [`Disk`].
//!
//! In the demo system the [`GuestDma`] is guest-ram's copy client
//! ([`Client`](guest_ram::client::Client)) in a driver PD that never maps guest RAM, and the disk a
//! memory region of that PD. Two data paths:
//!
//! - **One copy** (a [`Disk`] that lives in the client's shared buffer,
//!   [`RamDisk::in_buffer`]): the VMM copies straight between guest RAM and
//!   the disk ([`GuestDma::scatter_at`] / [`GuestDma::gather_at`], buffer
//!   offsets = disk offsets). The VMM can then touch the whole disk region:
//!   that is the price of the saved copy.
//! - **A device window** (a [`Disk`] whose [`Disk::window`] is part of the
//!   client's shared buffer, a device's DMA area behind a driver PD): the
//!   VMM copies guest RAM ↔ window, the disk moves window ↔ device, a
//!   window-full at a time.
//! - **Two copies** (a disk elsewhere, [`RamDisk::new`]): the disk to the
//!   staging buffer (the driver PD), the buffer to guest RAM (the VMM), a
//!   buffer-full at a time; the VMM never sees the disk.
//!
//! Per notification ([`BlkBackend::process`]), in calls to the copy
//! service: the available flags and index, the descriptor table and the
//! available ring (1: [`Snapshot::take`], one call whose segments the VMM
//! copies in order, a snapshot that is then walked locally); per request
//! the header (1) and the data (one copy: 1 per 39 guest buffers; two
//! copies: 1 per buffer-full); and at the end every request's status
//! byte, the used elements and the used index (1, in that order:
//! [`DeviceQueue::publish`]). A 1 MiB read in one guest buffer is 4 calls.
//!
//! With `VIRTIO_RING_F_EVENT_IDX` ([`Layout::event_idx`]) the publication
//! also carries the used ring's `avail_event` (the driver notifies again
//! only for chains past those the device has taken), and one more call
//! reads the available index and the driver's `used_event` back
//! ([`DeviceQueue::events`]): the device interrupts only if the used
//! index passed `used_event` ([`BlkBackend::interrupt`]), and serves
//! again at once if chains arrived that the driver need not have
//! notified.
//!
//! What a request does wrong fails that request with
//! [`status::IOERR`] (or [`status::UNSUPP`]), and the queue goes on: a
//! buffer the driver PD may not touch, a sector past the end, a length that
//! overflows or is not whole sectors, a header that is too short. What
//! breaks the ring itself (a descriptor loop, an index out of range, an
//! available index that jumps) is a [`QueueError`]: the device reports
//! `DEVICE_NEEDS_RESET` and serves nothing until the driver resets it.

use guest_ram::{GpaRange, SharedBuffer};
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::queue::{self, Chain, Layout, QueueError, UsedElem, MAX_CHAIN};
pub use crate::virtq::GuestDma;
use crate::virtq::{DeviceQueue, Snapshot};

/// Bytes per sector: virtio-blk addresses in 512-byte units, whatever the
/// disk's block size.
pub const SECTOR: u64 = 512;

/// Request types (`virtio_blk_req.type`).
pub mod req {
    /// Read from the disk into the guest.
    pub const IN: u32 = 0;
    /// Write the guest's data to the disk.
    pub const OUT: u32 = 1;
    /// Make earlier writes durable.
    pub const FLUSH: u32 = 4;
    /// The device's id string (20 bytes).
    pub const GET_ID: u32 = 8;
}

/// Request status bytes.
pub mod status {
    /// Done.
    pub const OK: u8 = 0;
    /// Failed.
    pub const IOERR: u8 = 1;
    /// Request type not supported.
    pub const UNSUPP: u8 = 2;
}

/// Most data segments (descriptors after the header and before the status
/// byte) one request may have: four times what the copy service moves in
/// one call ([`guest_ram::protocol::MAX_SEGMENTS`]), so a request's data
/// is at most four calls (one per window-full or buffer-full more on the
/// paths that go a piece at a time). Offered to the driver as `seg_max`
/// (`VIRTIO_BLK_F_SEG_MAX`); a request with more fails with
/// [`status::IOERR`]. Larger than one call's worth because a guest splits
/// its I/O by it: with 39, Linux cut a 1 MiB O_DIRECT read into requests
/// of about 256 KiB, each paying the whole round trip (guest exits, the
/// VMM, the blk and driver PDs, an interrupt), while the calls per byte
/// stay the same.
pub const SEG_MAX: usize = 4 * guest_ram::protocol::MAX_SEGMENTS;

/// The id string `GET_ID` returns.
pub const DEVICE_ID: &[u8; 20] = b"guest-ram ramdisk\0\0\0";

/// The request header at the start of a chain's readable bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct ReqHeader {
    /// [`req`].
    pub kind: U32,
    /// Reserved (was `ioprio`).
    pub reserved: U32,
    /// First 512-byte sector.
    pub sector: U64,
}

/// Header size.
pub const HEADER_LEN: u64 = core::mem::size_of::<ReqHeader>() as u64;

/// A disk: bytes moved between it and a staging buffer.
pub trait Disk {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the disk has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `len` bytes at `offset` into `dst` at `dst_offset`.
    fn load(&mut self, offset: u64, dst: &SharedBuffer, dst_offset: usize, len: usize) -> bool;
    /// Copies `len` bytes of `src` at `src_offset` to the disk at `offset`.
    fn store(&mut self, offset: u64, src: &SharedBuffer, src_offset: usize, len: usize) -> bool;
    /// Makes earlier stores durable.
    fn flush(&mut self) -> bool {
        true
    }
    /// Where the disk's byte 0 sits in the copy client's shared buffer, if
    /// the disk lives there: then data moves with one copy, by the VMM,
    /// and `load`/`store` are not used for it.
    fn buffer_offset(&self) -> Option<u64> {
        None
    }
    /// Bytes per block: a request must cover whole blocks at a
    /// block-aligned offset. Offered to the driver as `blk_size`. 512 for a
    /// RAM disk; a disk behind an sDDF queue moves 4 KiB blocks.
    fn block_size(&self) -> u32 {
        SECTOR as u32
    }
    /// A window of the copy client's shared buffer that the disk's data
    /// passes through, as (buffer offset, length): a device's DMA area.
    /// Then data moves with one copy by the VMM, guest RAM ↔ window, and
    /// [`read_to_window`](Self::read_to_window) /
    /// [`write_from_window`](Self::write_from_window) move it between the
    /// window and the disk, a window-full at a time.
    fn window(&self) -> Option<(u64, u64)> {
        None
    }
    /// Fills the window's first `len` bytes from the disk at `offset`.
    fn read_to_window(&mut self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        false
    }
    /// Writes the window's first `len` bytes to the disk at `offset`.
    fn write_from_window(&mut self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        false
    }
}

/// A disk in memory: a mapped region of the backend PD.
pub struct RamDisk {
    memory: SharedBuffer,
    buffer_offset: Option<u64>,
}

impl RamDisk {
    /// A disk over `memory`, a region of its own: data moves through the
    /// copy client's staging buffer (two copies).
    pub fn new(memory: SharedBuffer) -> Self {
        RamDisk {
            memory,
            buffer_offset: None,
        }
    }

    /// A disk over `memory`, which is the copy client's shared buffer
    /// from `buffer_offset` on (the disk region registered as the
    /// client's buffer): data moves with one copy, guest RAM ↔ disk, by
    /// the VMM.
    pub fn in_buffer(memory: SharedBuffer, buffer_offset: u64) -> Self {
        RamDisk {
            memory,
            buffer_offset: Some(buffer_offset),
        }
    }
}

impl Disk for RamDisk {
    fn len(&self) -> u64 {
        self.memory.len() as u64
    }
    fn load(&mut self, offset: u64, dst: &SharedBuffer, dst_offset: usize, len: usize) -> bool {
        usize::try_from(offset)
            .is_ok_and(|offset| dst.copy_from(dst_offset, &self.memory, offset, len).is_ok())
    }
    fn store(&mut self, offset: u64, src: &SharedBuffer, src_offset: usize, len: usize) -> bool {
        usize::try_from(offset)
            .is_ok_and(|offset| self.memory.copy_from(offset, src, src_offset, len).is_ok())
    }
    fn buffer_offset(&self) -> Option<u64> {
        self.buffer_offset
    }
}

/// Counters, for logs and measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests completed (any status).
    pub requests: u64,
    /// Requests completed with a status other than OK.
    pub failed: u64,
    /// Data bytes moved to or from the disk.
    pub bytes: u64,
}

impl core::ops::Add for Stats {
    type Output = Stats;
    fn add(self, other: Stats) -> Stats {
        Stats {
            requests: self.requests + other.requests,
            failed: self.failed + other.failed,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The backend state of one virtio-blk queue.
#[derive(Clone, Debug, Default)]
pub struct BlkBackend {
    queue: DeviceQueue,
    broken: bool,
    interrupt: bool,
    stats: Stats,
}

/// Segments per staged data chunk: a request's buffers, at most the queue.
type Segments = heapless::Vec<GpaRange, MAX_CHAIN>;

impl BlkBackend {
    /// A backend for a freshly configured queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a [`QueueError`] stopped the queue (until [`new`](Self::new)).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the last [`process`](Self::process) owes the driver an
    /// interrupt: it completed requests and, with
    /// `VIRTIO_RING_F_EVENT_IDX`, the used index passed the driver's
    /// `used_event` ([`DeviceQueue::events`]). (A broken ring interrupts
    /// whatever this says: the device needs a reset.)
    pub fn interrupt(&self) -> bool {
        self.interrupt
    }

    /// Serves every request the driver has made available since the last
    /// call and returns how many it completed. An `Err` means the ring is
    /// broken: the device must report `DEVICE_NEEDS_RESET`, and later calls
    /// do nothing until the backend is replaced by a new one.
    ///
    /// With `VIRTIO_RING_F_EVENT_IDX`, requests the driver made available
    /// while the device served (which it need not notify) are served in
    /// the same call, round after round until none came (each round
    /// serves at least one request), at most
    /// [`MAX_ROUNDS`](crate::virtq::MAX_ROUNDS) rounds.
    pub fn process<M: GuestDma, D: Disk>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<u16, QueueError> {
        self.interrupt = false;
        if self.broken {
            return Ok(0);
        }
        let mut served = 0u16;
        for _ in 0..crate::virtq::MAX_ROUNDS {
            let result = self.process_inner(layout, dma, disk);
            let n = match result {
                Ok(n) => n,
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            };
            served = served.saturating_add(n);
            if !layout.event_idx() {
                self.interrupt = served > 0;
                return Ok(served);
            }
            if n == 0 {
                return Ok(served);
            }
            let events = self.queue.events(layout, dma);
            self.interrupt |= events.interrupt;
            if !events.more {
                break;
            }
        }
        Ok(served)
    }

    fn process_inner<M: GuestDma, D: Disk>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<u16, QueueError> {
        // One call (see `Snapshot::take`), walked locally from here on.
        let snapshot = Snapshot::take(layout, &self.queue, dma)?;
        let pending = snapshot.pending();
        if pending == 0 {
            return Ok(0);
        }
        let mut served: heapless::Vec<Served, MAX_CHAIN> = heapless::Vec::new();
        for k in 0..pending {
            let (head, chain) = snapshot.chain(k)?;
            // Cannot fail: `pending <= size <= MAX_CHAIN`.
            let _ = served.push(self.serve(head, &chain, dma, disk));
        }
        self.complete(layout, &mut served, dma)?;
        for s in served.iter() {
            self.stats.requests += 1;
            self.stats.failed += u64::from(s.code != status::OK);
        }
        Ok(pending)
    }

    /// Publishes `served`: every status byte, the used elements and then
    /// the used index, in one call ([`DeviceQueue::publish`]). If that
    /// call is refused (a status byte outside what this PD may write), the
    /// statuses go one by one, those refused fail their request, and the
    /// used ring follows in a call of its own.
    fn complete<M: GuestDma>(
        &mut self,
        layout: &Layout,
        served: &mut [Served],
        dma: &mut M,
    ) -> Result<(), QueueError> {
        let mut prefix: heapless::Vec<(u64, u8), MAX_CHAIN> = heapless::Vec::new();
        for s in served.iter() {
            if let Some(gpa) = s.status_gpa {
                // Cannot fail: one per request, at most the queue size.
                let _ = prefix.push((gpa, s.code));
            }
        }
        if self
            .queue
            .publish(layout, &prefix, &used_elems(served), dma)
            .is_ok()
        {
            return Ok(());
        }
        // Slow path: which status bytes can be written?
        for s in served.iter_mut() {
            if let Some(gpa) = s.status_gpa {
                if dma.write(gpa, &[s.code]).is_err() {
                    s.code = status::IOERR;
                    s.status_gpa = None;
                }
            }
        }
        self.queue.publish(layout, &[], &used_elems(served), dma)
    }

    /// Serves one request, all but its status byte (written with the used
    /// ring by [`complete`](Self::complete)).
    fn serve<M: GuestDma, D: Disk>(
        &mut self,
        head: u16,
        chain: &Chain,
        dma: &mut M,
        disk: &mut D,
    ) -> Served {
        // The status byte is the last byte of the chain's final
        // descriptor, which must be device-writable and not empty; without
        // one there is nothing to report into, and the request is not
        // executed (used with length 0).
        let Some(status_gpa) = chain.last_writable().and_then(|last| last_byte(&[last])) else {
            return Served {
                head,
                code: status::IOERR,
                data_len: 0,
                status_gpa: None,
            };
        };
        let (code, data_len) = self
            .execute(chain, dma, disk)
            .unwrap_or_else(|code| (code, 0));
        Served {
            head,
            code,
            data_len,
            status_gpa: Some(status_gpa),
        }
    }

    /// The status and the data bytes written to the chain.
    fn execute<M: GuestDma, D: Disk>(
        &mut self,
        chain: &Chain,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<(u8, u32), u8> {
        if chain.readable_len() < HEADER_LEN {
            return Err(status::IOERR);
        }
        let mut header = <ReqHeader as FromZeros>::new_zeroed();
        let mut parts: heapless::Vec<GpaRange, 16> = heapless::Vec::new();
        queue::sub_ranges(chain.readable(), 0, HEADER_LEN, &mut parts)
            .map_err(|_| status::IOERR)?;
        dma.readv(&parts, header.as_mut_bytes())
            .map_err(|_| status::IOERR)?;
        // Cannot underflow: the final descriptor is writable and not empty.
        let writable_data = chain.writable_len().saturating_sub(1);
        match header.kind.get() {
            req::IN => {
                // Data for a read goes only into writable buffers: a
                // readable one after the header is a driver error, not an
                // empty read.
                if chain.readable_len() != HEADER_LEN {
                    return Err(status::IOERR);
                }
                let len = writable_data;
                data_segments(chain.writable(), 0, len)?;
                let offset = disk_range(header.sector.get(), len, disk)?;
                let n = self.disk_to_guest(chain.writable(), offset, len, dma, disk)?;
                Ok((status::OK, n))
            }
            req::OUT => {
                // And a write's data only from readable ones.
                if writable_data != 0 {
                    return Err(status::IOERR);
                }
                let len = chain.readable_len() - HEADER_LEN;
                data_segments(chain.readable(), HEADER_LEN, len)?;
                let offset = disk_range(header.sector.get(), len, disk)?;
                self.guest_to_disk(chain.readable(), offset, len, dma, disk)?;
                Ok((status::OK, 0))
            }
            req::FLUSH => {
                if disk.flush() {
                    Ok((status::OK, 0))
                } else {
                    Err(status::IOERR)
                }
            }
            req::GET_ID => {
                let n = writable_data.min(DEVICE_ID.len() as u64);
                let mut out: heapless::Vec<GpaRange, 32> = heapless::Vec::new();
                queue::sub_ranges(chain.writable(), 0, n, &mut out).map_err(|_| status::IOERR)?;
                dma.writev(&out, &DEVICE_ID[..n as usize])
                    .map_err(|_| status::IOERR)?;
                Ok((status::OK, n as u32))
            }
            _ => Err(status::UNSUPP),
        }
    }

    /// `IN`: disk → guest. With the disk in the shared buffer, one copy
    /// (the VMM's) straight from the disk; otherwise disk → staging buffer
    /// → guest, a buffer-full at a time. Returns the data bytes written.
    fn disk_to_guest<M: GuestDma, D: Disk>(
        &mut self,
        writable: &[GpaRange],
        offset: u64,
        len: u64,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<u32, u8> {
        if len == 0 {
            return Ok(0);
        }
        if let Some(base) = disk.buffer_offset() {
            let mut segments = Segments::new();
            queue::sub_ranges(writable, 0, len, &mut segments).map_err(|_| status::IOERR)?;
            let at = base.checked_add(offset).ok_or(status::IOERR)?;
            dma.scatter_at(&segments, at).map_err(|_| status::IOERR)?;
            self.stats.bytes += len;
            return u32::try_from(len).map_err(|_| status::IOERR);
        }
        if let Some((base, window)) = disk.window() {
            let step = window_step(window, disk)?;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(step);
                let mut segments = Segments::new();
                queue::sub_ranges(writable, done, n, &mut segments).map_err(|_| status::IOERR)?;
                if !disk.read_to_window(offset + done, n) {
                    return Err(status::IOERR);
                }
                dma.scatter_at(&segments, base).map_err(|_| status::IOERR)?;
                done += n;
                self.stats.bytes += n;
            }
            return u32::try_from(len).map_err(|_| status::IOERR);
        }
        let capacity = dma.staging().len() as u64;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(capacity);
            let mut segments = Segments::new();
            queue::sub_ranges(writable, done, n, &mut segments).map_err(|_| status::IOERR)?;
            let staging = *dma.staging();
            if !disk.load(offset + done, &staging, 0, n as usize) {
                return Err(status::IOERR);
            }
            dma.scatter(&segments).map_err(|_| status::IOERR)?;
            done += n;
            self.stats.bytes += n;
        }
        u32::try_from(len).map_err(|_| status::IOERR)
    }

    /// `OUT`: guest → staging buffer → disk, a buffer-full at a time.
    fn guest_to_disk<M: GuestDma, D: Disk>(
        &mut self,
        readable: &[GpaRange],
        offset: u64,
        len: u64,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<(), u8> {
        if let Some(base) = disk.buffer_offset() {
            if len == 0 {
                return Ok(());
            }
            let mut segments = Segments::new();
            queue::sub_ranges(readable, HEADER_LEN, len, &mut segments)
                .map_err(|_| status::IOERR)?;
            let at = base.checked_add(offset).ok_or(status::IOERR)?;
            dma.gather_at(&segments, at).map_err(|_| status::IOERR)?;
            self.stats.bytes += len;
            return Ok(());
        }
        if let Some((base, window)) = disk.window() {
            let step = window_step(window, disk)?;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(step);
                let mut segments = Segments::new();
                queue::sub_ranges(readable, HEADER_LEN + done, n, &mut segments)
                    .map_err(|_| status::IOERR)?;
                dma.gather_at(&segments, base).map_err(|_| status::IOERR)?;
                if !disk.write_from_window(offset + done, n) {
                    return Err(status::IOERR);
                }
                done += n;
                self.stats.bytes += n;
            }
            return Ok(());
        }
        let capacity = dma.staging().len() as u64;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(capacity);
            let mut segments = Segments::new();
            queue::sub_ranges(readable, HEADER_LEN + done, n, &mut segments)
                .map_err(|_| status::IOERR)?;
            dma.gather(&segments).map_err(|_| status::IOERR)?;
            let staging = *dma.staging();
            if !disk.store(offset + done, &staging, 0, n as usize) {
                return Err(status::IOERR);
            }
            done += n;
            self.stats.bytes += n;
        }
        Ok(())
    }
}

/// A request served but not yet published.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Served {
    /// Its chain's head: the used element's id.
    pub(crate) head: u16,
    /// Its status byte.
    pub(crate) code: u8,
    /// Data bytes written to its writable buffers.
    pub(crate) data_len: u32,
    /// Where its status byte goes (`None`: nowhere to report, or refused).
    pub(crate) status_gpa: Option<u64>,
}

/// The used elements of `served`: the data bytes written, plus the
/// status byte where there was one.
pub(crate) fn used_elems(served: &[Served]) -> heapless::Vec<UsedElem, MAX_CHAIN> {
    let mut used = heapless::Vec::new();
    for s in served {
        let len = s.data_len.saturating_add(u32::from(s.status_gpa.is_some()));
        // Cannot fail: `served` is at most a queue.
        let _ = used.push(UsedElem {
            id: u32::from(s.head).into(),
            len: len.into(),
        });
    }
    used
}

/// The disk byte offset of `sector`, if `len` bytes from there are whole
/// sectors inside the disk (and the request is at most 4 GiB, the most a
/// used element can report).
fn disk_range<D: Disk>(sector: u64, len: u64, disk: &D) -> Result<u64, u8> {
    disk_range_of(sector, len, disk.block_size(), disk.len())
}

/// [`disk_range`] for a disk of `disk_len` bytes in `block_size` blocks.
pub(crate) fn disk_range_of(
    sector: u64,
    len: u64,
    block_size: u32,
    disk_len: u64,
) -> Result<u64, u8> {
    let block = u64::from(block_size).max(SECTOR);
    if len % block != 0 || len >= u64::from(u32::MAX) {
        return Err(status::IOERR);
    }
    let offset = sector.checked_mul(SECTOR).ok_or(status::IOERR)?;
    if offset % block != 0 {
        return Err(status::IOERR);
    }
    let end = offset.checked_add(len).ok_or(status::IOERR)?;
    if end > disk_len {
        return Err(status::IOERR);
    }
    Ok(offset)
}

/// The bytes one window-full moves: the window rounded down to whole
/// blocks (an error if that is none).
fn window_step<D: Disk>(window: u64, disk: &D) -> Result<u64, u8> {
    let block = u64::from(disk.block_size()).max(SECTOR);
    let step = window - window % block;
    if step == 0 {
        return Err(status::IOERR);
    }
    Ok(step)
}

/// Checks that the data part `[skip, skip + len)` of `segments` is at
/// most [`SEG_MAX`] segments and not empty.
fn data_segments(segments: &[GpaRange], skip: u64, len: u64) -> Result<(), u8> {
    if len == 0 {
        return Err(status::IOERR);
    }
    let mut out = Segments::new();
    queue::sub_ranges(segments, skip, len, &mut out).map_err(|_| status::IOERR)?;
    if out.len() > SEG_MAX {
        return Err(status::IOERR);
    }
    Ok(())
}

/// The gpa of the last byte of `segments`.
pub(crate) fn last_byte(segments: &[GpaRange]) -> Option<u64> {
    let last = segments.last()?;
    last.gpa.checked_add(last.len - 1)
}
