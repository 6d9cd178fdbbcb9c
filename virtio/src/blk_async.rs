// SPDX-License-Identifier: BSD-2-Clause
//! Asynchronous virtio-blk: a backend that hands every request the guest
//! has queued to an [`AsyncDisk`] (a block driver PD behind sDDF's rings)
//! and returns without waiting; each request completes when the disk says
//! it is done, in whatever order the disk finishes them.
//!
//! Per call of [`AsyncBlkBackend::process`] (the glue calls it on every
//! signal, from the VMM or from the driver):
//!
//! 1. **Completions**: every request the disk has finished. A read's data
//!    goes from its data slot to the guest's buffers (one copy call), then
//!    the slot is released.
//! 2. **New requests**, in available-ring order: the header (one call), a
//!    data slot ([`AsyncDisk::reserve`]: no two requests in flight share a
//!    byte of it), a write's data into the slot (one call), and the
//!    request to the disk ([`AsyncDisk::submit`]). A request that cannot
//!    go yet (no free slot or data space, or a flush waiting for the
//!    writes before it) stays in the available ring, and so does every
//!    request after it: the next call starts again from it.
//! 3. The disk is rung once ([`AsyncDisk::kick`]) and every completed
//!    request's status byte, used element and the used index are
//!    published in one call.
//! 4. With `VIRTIO_RING_F_EVENT_IDX` ([`Layout::event_idx`]), after a
//!    publication: the used ring's `avail_event` went with it (the
//!    device's position), so the driver notifies only when it adds a
//!    request past those the device has taken; then one call reads the
//!    available index and the driver's `used_event` back
//!    ([`DeviceQueue::events`]). The guest is interrupted only if the used
//!    index passed `used_event` ([`AsyncBlkBackend::interrupt`]); requests
//!    that arrived meanwhile (which the driver need not have notified) are
//!    started at once, from step 2 again, unless they would only wait
//!    behind requests at the disk (at most
//!    [`MAX_ROUNDS`](crate::virtq::MAX_ROUNDS) rounds). A call
//!    that only sent requests to the disk (none completed) publishes
//!    nothing and leaves `avail_event` behind: the driver does not notify
//!    the requests it queues while those are at the disk, and their
//!    completion, which runs this again, finds them (at step 2, or as
//!    `more`). That saves a notification per request queued behind
//!    others, and the device the two calls an `avail_event` of its own
//!    and its check would cost, at the price of those requests waiting
//!    for the next completion.
//!
//! **Flush and order.** virtio-blk (§5.2.6) promises only that a flush
//! completes after every write *completed* before the flush was
//! *submitted* is durable; requests in flight together may complete in
//! any order. This backend gives more, simply: a flush goes to the disk
//! only when nothing is in flight there (it waits, with everything after
//! it, in the available ring), and nothing after it goes until it
//! completes. So a flush covers every write the guest made available
//! before it, completed or not, and the disk's driver may serve its
//! requests in any order (it also drains before a flush; see
//! `blk_queue::driver`). A write completes to the guest only after the
//! driver says the device completed it; with QEMU's writeback cache that
//! means it is in the host's page cache, and the flush (an `fdatasync`)
//! makes it durable.
//!
//! **Failures.** A request the disk fails, or fails to start, completes
//! with [`status::IOERR`]; so does a read whose data cannot be copied back.
//! A disk that never answers leaves its requests pending (the guest's own
//! timeout decides); once every slot is taken, the rest wait in the
//! available ring. Nothing here waits or spins.
//!
//! **Queue reset.** A new queue configuration gets a new backend
//! ([`AsyncBlkService`](crate::device::AsyncBlkService)); requests of the
//! old one that complete later find no entry here and only release their
//! slots, so nothing is written into the new guest's memory.

use guest_ram::GpaRange;
use zerocopy::{FromZeros, IntoBytes};

use crate::blk::{
    disk_range_of, last_byte, req, status, used_elems, GuestDma, ReqHeader, Served, Stats,
    DEVICE_ID, HEADER_LEN, SEG_MAX,
};
use crate::queue::{self, Chain, Layout, QueueError, MAX_CHAIN};
use crate::virtq::{DeviceQueue, Snapshot};

/// What a request asks of an [`AsyncDisk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Disk → the request's data slot.
    Read,
    /// The request's data slot → disk.
    Write,
    /// Make every completed write durable.
    Flush,
}

/// Why [`AsyncDisk::reserve`] gave no slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not now: every slot, or the data space, is taken by requests in
    /// flight. Try again after a completion.
    Busy,
    /// Never: the request is larger than the data space, or the disk is
    /// broken. The request fails.
    Never,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::Busy => f.write_str("every slot or the data space is in use"),
            Refused::Never => f.write_str("the request can never be served"),
        }
    }
}

/// A reserved slot: its index and where its data lies in the copy
/// client's shared buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The slot's index (below the disk's slot count).
    pub index: u16,
    /// Byte offset of its data space in the copy client's shared buffer.
    pub buffer_offset: u64,
}

/// A disk whose requests complete later, each in a slot of its own.
pub trait AsyncDisk {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the disk has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes per block: a request covers whole blocks at a block-aligned
    /// offset.
    fn block_size(&self) -> u32;
    /// Reserves a slot with `len` bytes of data space that no other
    /// reserved or in-flight slot shares.
    fn reserve(&mut self, len: u64) -> Result<Slot, Refused>;
    /// Sends reserved slot `index`'s request: `op` over `len` bytes at
    /// disk byte `offset` (its data in the slot's space). `false`: it
    /// could not be sent, and the slot is released.
    fn submit(&mut self, index: u16, op: Op, offset: u64, len: u64) -> bool;
    /// The next finished request: its slot and whether it succeeded. The
    /// slot's data stays until [`release`](Self::release).
    fn complete(&mut self) -> Option<(u16, bool)>;
    /// Gives back a slot that is reserved and not sent, or finished.
    fn release(&mut self, index: u16);
    /// Requests sent and not finished.
    fn in_flight(&self) -> usize;
    /// Tells the driver about the requests sent since the last kick.
    fn kick(&mut self);
}

/// The data segments of one request (at most [`SEG_MAX`]).
type DataSegments = heapless::Vec<GpaRange, SEG_MAX>;

/// A guest request in flight at the disk.
#[derive(Clone, Debug)]
struct Pending {
    head: u16,
    status_gpa: u64,
    /// A read's buffers, filled from the slot when it completes.
    read: Option<DataSegments>,
    buffer_offset: u64,
    data_len: u32,
}

/// What starting one chain came to.
enum Start {
    /// At the disk.
    Sent,
    /// Completed at once (an error, or `GET_ID`).
    Done(Served),
    /// Cannot go yet: it stays available, with everything after it.
    Wait,
}

/// The asynchronous backend of one virtio-blk queue, with up to `N`
/// requests in flight (slot indices from the disk at or above `N` fail
/// their request).
#[derive(Debug)]
pub struct AsyncBlkBackend<const N: usize> {
    queue: DeviceQueue,
    pending: [Option<Pending>; N],
    /// The slot of the flush in flight: nothing new goes until it is done.
    flushing: Option<u16>,
    broken: bool,
    interrupt: bool,
    stats: Stats,
}

impl<const N: usize> Default for AsyncBlkBackend<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AsyncBlkBackend<N> {
    /// A backend for a freshly configured queue.
    pub fn new() -> Self {
        AsyncBlkBackend {
            queue: DeviceQueue::new(),
            pending: [const { None }; N],
            flushing: None,
            broken: false,
            interrupt: false,
            stats: Stats::default(),
        }
    }

    /// Counters so far (completed requests).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a [`QueueError`] stopped the queue.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Guest requests in flight at the disk.
    pub fn in_flight(&self) -> usize {
        self.pending.iter().filter(|p| p.is_some()).count()
    }

    /// Whether the last [`process`](Self::process) owes the driver an
    /// interrupt: it completed requests and, with
    /// `VIRTIO_RING_F_EVENT_IDX`, the used index passed the driver's
    /// `used_event` ([`DeviceQueue::events`]).
    pub fn interrupt(&self) -> bool {
        self.interrupt
    }

    /// Completes what the disk finished, starts what the guest queued, and
    /// publishes every completion. Returns how many requests completed (the
    /// guest is to be interrupted if any). An `Err` means the ring is
    /// broken: the device must report `DEVICE_NEEDS_RESET`; later calls
    /// only release the slots of requests that finish.
    pub fn process<M: GuestDma, D: AsyncDisk>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<u16, QueueError> {
        self.interrupt = false;
        if self.broken {
            self.drop_completions(disk);
            return Ok(0);
        }
        let result = self.process_inner(layout, dma, disk);
        if result.is_err() {
            self.broken = true;
            disk.kick();
        }
        result
    }

    /// Releases the slots of finished requests without touching the guest
    /// (a broken queue, or one no longer configured).
    pub fn drop_completions<D: AsyncDisk>(&mut self, disk: &mut D) {
        while let Some((index, _)) = disk.complete() {
            if let Some(p) = self.pending.get_mut(usize::from(index)) {
                *p = None;
            }
            if self.flushing == Some(index) {
                self.flushing = None;
            }
            disk.release(index);
        }
    }

    fn process_inner<M: GuestDma, D: AsyncDisk>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        disk: &mut D,
    ) -> Result<u16, QueueError> {
        let mut done: heapless::Vec<Served, MAX_CHAIN> = heapless::Vec::new();
        let mut completed = 0u16;
        // 1. What the disk finished.
        while let Some((index, ok)) = disk.complete() {
            let Some(p) = self
                .pending
                .get_mut(usize::from(index))
                .and_then(Option::take)
            else {
                // Not this queue's (a reset, or a slot the disk made up).
                disk.release(index);
                continue;
            };
            if self.flushing == Some(index) {
                self.flushing = None;
            }
            let mut code = if ok { status::OK } else { status::IOERR };
            if let (status::OK, Some(segments)) = (code, &p.read) {
                if dma.scatter_at(segments, p.buffer_offset).is_err() {
                    code = status::IOERR;
                }
            }
            disk.release(index);
            if code == status::OK {
                self.stats.bytes = self.stats.bytes.saturating_add(u64::from(p.data_len));
            }
            let data_len = if code == status::OK && p.read.is_some() {
                p.data_len
            } else {
                0
            };
            completed = completed.saturating_add(self.push(
                layout,
                dma,
                &mut done,
                Served {
                    head: p.head,
                    code,
                    data_len,
                    status_gpa: Some(p.status_gpa),
                },
            )?);
        }
        // Chains used before this round (none before the first: step 1's
        // count in it).
        let mut before = 0;
        for _ in 0..crate::virtq::MAX_ROUNDS {
            // 2. What the guest queued, in order, until one must wait.
            // `waiting`: a request stays in the available ring behind
            // requests at the disk (no free slot, a flush in flight or
            // waiting for the writes before it), whose completion runs
            // this again.
            let mut waiting = self.flushing.is_some();
            if self.flushing.is_none() {
                let snapshot = Snapshot::take(layout, &self.queue, dma)?;
                for k in 0..snapshot.pending() {
                    if self.queue.outstanding() >= layout.size() {
                        waiting = true;
                        break;
                    }
                    let (head, chain) = snapshot.chain(k)?;
                    match self.start(head, &chain, dma, disk) {
                        Start::Wait => {
                            waiting = true;
                            break;
                        }
                        Start::Sent => self.queue.take(1),
                        Start::Done(served) => {
                            self.queue.take(1);
                            completed = completed
                                .saturating_add(self.push(layout, dma, &mut done, served)?);
                        }
                    }
                    if self.flushing.is_some() {
                        waiting = true;
                        break;
                    }
                }
            }
            // 3. Ring the driver, publish the completions.
            disk.kick();
            completed = completed.saturating_add(self.publish(layout, dma, &mut done)?);
            if !layout.event_idx() {
                self.interrupt = completed > 0;
                return Ok(completed);
            }
            // 4. The event indices, after a publication. A round that
            //    only sent requests to the disk leaves `avail_event` where
            //    the last publication put it: their completion runs this
            //    again, and looks then (so requests the driver queues
            //    meanwhile cost it no notification, and the device two
            //    calls fewer per request).
            if completed == before {
                return Ok(completed);
            }
            let events = self.queue.events(layout, dma);
            self.interrupt |= events.interrupt;
            // Requests the driver queued since this round's snapshot: it
            // may not have notified them (it read the `avail_event` from
            // before this publication), so the device takes them now,
            // unless they would only wait behind requests at the disk.
            // (Stopping whenever this round started nothing lost them: a
            // round whose snapshot came before the driver queued them
            // starts nothing, and with nothing at the disk no completion
            // ran this again. The guest's disk hung.)
            if !events.more || waiting {
                break;
            }
            before = completed;
        }
        Ok(completed)
    }

    /// Adds `served` to `done`, publishing first if `done` is full.
    fn push<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        done: &mut heapless::Vec<Served, MAX_CHAIN>,
        served: Served,
    ) -> Result<u16, QueueError> {
        let mut published = 0;
        if done.is_full() {
            published = self.publish(layout, dma, done)?;
        }
        // Cannot fail: emptied above if it was full.
        let _ = done.push(served);
        Ok(published)
    }

    /// Publishes `done` (status bytes, used elements, used index: one
    /// call; one by one if that is refused) and empties it.
    fn publish<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        done: &mut heapless::Vec<Served, MAX_CHAIN>,
    ) -> Result<u16, QueueError> {
        if done.is_empty() {
            return Ok(0);
        }
        let mut prefix: heapless::Vec<(u64, u8), MAX_CHAIN> = heapless::Vec::new();
        for s in done.iter() {
            if let Some(gpa) = s.status_gpa {
                // Cannot fail: at most `done`'s capacity.
                let _ = prefix.push((gpa, s.code));
            }
        }
        let count = match self
            .queue
            .publish_used(layout, &prefix, &used_elems(done), dma)
        {
            Ok(n) => n,
            Err(_) => {
                for s in done.iter_mut() {
                    if let Some(gpa) = s.status_gpa {
                        if dma.write(gpa, &[s.code]).is_err() {
                            s.code = status::IOERR;
                            s.status_gpa = None;
                        }
                    }
                }
                self.queue
                    .publish_used(layout, &[], &used_elems(done), dma)?
            }
        };
        for s in done.iter() {
            self.stats.requests = self.stats.requests.saturating_add(1);
            self.stats.failed = self
                .stats
                .failed
                .saturating_add(u64::from(s.code != status::OK));
        }
        done.clear();
        Ok(count)
    }

    /// Starts one chain.
    fn start<M: GuestDma, D: AsyncDisk>(
        &mut self,
        head: u16,
        chain: &Chain,
        dma: &mut M,
        disk: &mut D,
    ) -> Start {
        let fail = |code: u8, status_gpa: Option<u64>| {
            Start::Done(Served {
                head,
                code,
                data_len: 0,
                status_gpa,
            })
        };
        // As in the synchronous backend: no writable last byte, nothing
        // to report into, and the request is not executed.
        let Some(status_gpa) = chain.last_writable().and_then(|last| last_byte(&[last])) else {
            return fail(status::IOERR, None);
        };
        let failed = fail(status::IOERR, Some(status_gpa));
        if chain.readable_len() < HEADER_LEN {
            return failed;
        }
        let mut header = <ReqHeader as FromZeros>::new_zeroed();
        let mut parts: heapless::Vec<GpaRange, 16> = heapless::Vec::new();
        if queue::sub_ranges(chain.readable(), 0, HEADER_LEN, &mut parts).is_err()
            || dma.readv(&parts, header.as_mut_bytes()).is_err()
        {
            return failed;
        }
        let writable_data = chain.writable_len().saturating_sub(1);
        let (op, buffers, skip, len) = match header.kind.get() {
            req::IN if chain.readable_len() == HEADER_LEN => {
                (Op::Read, chain.writable(), 0, writable_data)
            }
            req::OUT if writable_data == 0 => (
                Op::Write,
                chain.readable(),
                HEADER_LEN,
                chain.readable_len().saturating_sub(HEADER_LEN),
            ),
            req::IN | req::OUT => return failed,
            req::FLUSH => {
                if disk.in_flight() > 0 {
                    // Waits for everything before it.
                    return Start::Wait;
                }
                return match disk.reserve(0) {
                    Err(Refused::Busy) => Start::Wait,
                    Err(Refused::Never) => failed,
                    Ok(slot) => self.send(disk, slot, Op::Flush, 0, 0, None, head, status_gpa),
                };
            }
            req::GET_ID => {
                let n = writable_data.min(DEVICE_ID.len() as u64);
                let mut out: heapless::Vec<GpaRange, 32> = heapless::Vec::new();
                let id = DEVICE_ID.get(..n as usize).unwrap_or(&[]);
                if queue::sub_ranges(chain.writable(), 0, n, &mut out).is_err()
                    || dma.writev(&out, id).is_err()
                {
                    return failed;
                }
                return Start::Done(Served {
                    head,
                    code: status::OK,
                    data_len: n as u32,
                    status_gpa: Some(status_gpa),
                });
            }
            _ => return fail(status::UNSUPP, Some(status_gpa)),
        };
        let mut segments = DataSegments::new();
        if len == 0 || queue::sub_ranges(buffers, skip, len, &mut segments).is_err() {
            // Empty, or more than `SEG_MAX` segments.
            return failed;
        }
        let Ok(offset) = disk_range_of(header.sector.get(), len, disk.block_size(), disk.len())
        else {
            return failed;
        };
        let slot = match disk.reserve(len) {
            Err(Refused::Busy) => return Start::Wait,
            Err(Refused::Never) => return failed,
            Ok(slot) => slot,
        };
        if op == Op::Write && dma.gather_at(&segments, slot.buffer_offset).is_err() {
            disk.release(slot.index);
            return failed;
        }
        let read = (op == Op::Read).then_some(segments);
        self.send(disk, slot, op, offset, len, read, head, status_gpa)
    }

    /// Sends a reserved slot's request and records it as pending.
    #[allow(
        clippy::too_many_arguments,
        reason = "one request's parts, from one caller"
    )]
    fn send<D: AsyncDisk>(
        &mut self,
        disk: &mut D,
        slot: Slot,
        op: Op,
        offset: u64,
        len: u64,
        read: Option<DataSegments>,
        head: u16,
        status_gpa: u64,
    ) -> Start {
        let failed = Start::Done(Served {
            head,
            code: status::IOERR,
            data_len: 0,
            status_gpa: Some(status_gpa),
        });
        // `disk_range_of` bounds a request below 4 GiB.
        let Ok(data_len) = u32::try_from(len) else {
            disk.release(slot.index);
            return failed;
        };
        let Some(entry) = self.pending.get_mut(usize::from(slot.index)) else {
            disk.release(slot.index);
            return failed;
        };
        if entry.is_some() {
            // The disk gave out a slot that is still in flight here.
            return failed;
        }
        if !disk.submit(slot.index, op, offset, len) {
            return failed;
        }
        *entry = Some(Pending {
            head,
            status_gpa,
            read,
            buffer_offset: slot.buffer_offset,
            data_len,
        });
        if op == Op::Flush {
            self.flushing = Some(slot.index);
        }
        Start::Sent
    }
}
