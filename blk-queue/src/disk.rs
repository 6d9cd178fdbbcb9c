// SPDX-License-Identifier: BSD-2-Clause
//! An asynchronous virtio-blk disk ([`AsyncDisk`]) behind a block driver
//! PD: each request is one sDDF request through the [`Client`] rings, its
//! data in the data region both PDs map (the driver's DMA area). In the
//! blk PD that data region is also part of the copy client's shared
//! buffer, so the VMM copies guest RAM straight to and from it: the blk PD
//! never touches the data, the driver never sees guest RAM.
//!
//! Up to `N` requests are in flight, each in a slot of its own: the slot's
//! data space is a range of the data region that no other reserved or
//! in-flight slot overlaps (first fit; a slot with no data, a flush, takes
//! none). A request's id in the ring is its slot index in the low 8 bits
//! and a sequence number above, so a response names its slot and a stale
//! or made-up id is dropped (counted in [`DiskStats::stale`]).
//!
//! Nothing here waits: [`submit`](AsyncDisk::submit) queues,
//! [`kick`](AsyncDisk::kick) rings the driver once for everything queued,
//! and [`complete`](AsyncDisk::complete) takes the responses there are. A
//! driver that never answers leaves its slots in flight. A ring found
//! corrupt breaks the disk: every request in flight completes as failed,
//! their data space stays taken for good (the device may still write it),
//! and every later request is refused ([`Refused::Never`]).

use guest_ram::SharedBuffer;
use virtio::blk_async::{AsyncDisk, Op, Refused, Slot};

use crate::{read_storage_info, Client, Code, Error, Request, Response, Status, TRANSFER_SIZE};

/// How the disk reaches the driver.
pub trait Doorbell {
    /// Signals the driver that requests are queued.
    fn ring(&mut self);
}

/// Counters, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that came back with a status other than OK, or a count
    /// other than the request's.
    pub failed: u64,
    /// Responses dropped (an id of no request in flight).
    pub stale: u64,
    /// Doorbell rings.
    pub rings: u64,
}

/// Where a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reserved, not sent.
    Reserved,
    /// Sent, not answered.
    Sent,
    /// Answered, not released.
    Done,
    /// Lost with a broken ring: never released.
    Abandoned,
}

/// One slot in use.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Data region offset and length of its data space.
    offset: u64,
    len: u64,
    state: State,
    /// The id it was sent with, and what it asked.
    id: u32,
    code: Code,
    count: u16,
    ok: bool,
}

/// A disk served by a block driver PD over sDDF rings, with up to `N`
/// requests in flight (`N` at most 256), and never more than the rings
/// hold, so that the driver always has room for its answers.
pub struct QueueDisk<B, const N: usize> {
    client: Client,
    info: SharedBuffer,
    data_len: u64,
    data_offset: u64,
    doorbell: B,
    capacity: u64,
    entries: [Option<Entry>; N],
    sequence: u32,
    unrung: bool,
    broken: Option<Error>,
    stats: DiskStats,
}

impl<B: Doorbell, const N: usize> QueueDisk<B, N> {
    const FITS: () = assert!(N > 0 && N <= 256, "slot indices are 8 bits");

    /// A disk over `client`'s rings, whose driver describes the device in
    /// `info` and moves data through a data region of `data_len` bytes,
    /// which sits at `data_offset` in the copy client's shared buffer.
    pub fn new(
        client: Client,
        info: SharedBuffer,
        data_len: u64,
        data_offset: u64,
        doorbell: B,
    ) -> Self {
        let () = Self::FITS;
        let mut disk = QueueDisk {
            client,
            info,
            data_len,
            data_offset,
            doorbell,
            capacity: 0,
            entries: [None; N],
            sequence: 0,
            unrung: false,
            broken: None,
            stats: DiskStats::default(),
        };
        disk.refresh();
        disk
    }

    /// Reads the device's capacity from the storage-info page, if the
    /// driver has published it (until then the disk is empty).
    pub fn refresh(&mut self) {
        if self.capacity == 0 {
            if let Ok(Some(info)) = read_storage_info(&self.info) {
                self.capacity = info.capacity.get();
            }
        }
    }

    /// Why the disk stopped, if it did.
    pub fn broken(&self) -> Option<Error> {
        self.broken
    }

    /// Counters so far.
    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// The doorbell.
    pub fn doorbell(&mut self) -> &mut B {
        &mut self.doorbell
    }

    /// The first offset where `len` bytes overlap no slot's data space.
    fn fit(&self, len: u64) -> Option<u64> {
        if len == 0 {
            return Some(0);
        }
        let overlaps = |at: u64, end: u64| {
            self.entries
                .iter()
                .flatten()
                .any(|e| e.len > 0 && at < e.offset.saturating_add(e.len) && e.offset < end)
        };
        let candidates = core::iter::once(0).chain(
            self.entries
                .iter()
                .flatten()
                .map(|e| e.offset.saturating_add(e.len)),
        );
        candidates
            .filter(|&at| at.checked_add(len).is_some_and(|end| end <= self.data_len))
            .find(|&at| !overlaps(at, at.saturating_add(len)))
    }

    fn entry(&mut self, index: u16) -> Option<&mut Entry> {
        self.entries.get_mut(usize::from(index))?.as_mut()
    }

    fn release_slot(&mut self, index: u16) {
        if let Some(slot) = self.entries.get_mut(usize::from(index)) {
            if slot.is_some_and(|e| matches!(e.state, State::Reserved | State::Done)) {
                *slot = None;
            }
        }
    }

    /// The broken disk's next request in flight, failed and abandoned.
    fn abandon_one(&mut self) -> Option<(u16, bool)> {
        let (index, entry) = self.entries.iter_mut().enumerate().find_map(|(i, e)| {
            e.as_mut()
                .filter(|e| e.state == State::Sent)
                .map(|e| (i, e))
        })?;
        entry.state = State::Abandoned;
        self.stats.failed = self.stats.failed.saturating_add(1);
        u16::try_from(index).ok().map(|i| (i, false))
    }
}

impl<B: Doorbell, const N: usize> AsyncDisk for QueueDisk<B, N> {
    fn len(&self) -> u64 {
        self.capacity.saturating_mul(TRANSFER_SIZE)
    }

    fn block_size(&self) -> u32 {
        TRANSFER_SIZE as u32
    }

    fn reserve(&mut self, len: u64) -> Result<Slot, Refused> {
        let blocks = len / TRANSFER_SIZE;
        if self.broken.is_some() || len > self.data_len || blocks > u64::from(u16::MAX) {
            return Err(Refused::Never);
        }
        // No more slots in use than the rings hold: every request then
        // has room in the request ring, and its response in the other.
        let used = self.entries.iter().flatten().count();
        let limit = usize::try_from(self.client.capacity()).unwrap_or(usize::MAX);
        let free = self
            .entries
            .iter()
            .position(Option::is_none)
            .filter(|_| used < limit);
        let (Some(index), Some(offset)) = (free, self.fit(len)) else {
            return Err(Refused::Busy);
        };
        let (Ok(index16), Some(buffer_offset), Some(slot)) = (
            u16::try_from(index),
            self.data_offset.checked_add(offset),
            self.entries.get_mut(index),
        ) else {
            return Err(Refused::Never);
        };
        *slot = Some(Entry {
            offset,
            len,
            state: State::Reserved,
            id: 0,
            code: Code::Flush,
            count: 0,
            ok: false,
        });
        Ok(Slot {
            index: index16,
            buffer_offset,
        })
    }

    fn submit(&mut self, index: u16, op: Op, offset: u64, len: u64) -> bool {
        let sequence = self.sequence;
        let Some(entry) = self.entry(index).filter(|e| e.state == State::Reserved) else {
            return false;
        };
        let (code, count) = match op {
            Op::Flush => (Code::Flush, 0),
            Op::Read | Op::Write => {
                let whole = offset % TRANSFER_SIZE == 0 && len % TRANSFER_SIZE == 0;
                match u16::try_from(len / TRANSFER_SIZE) {
                    Ok(count) if whole && count > 0 && len <= entry.len => (
                        if op == Op::Read {
                            Code::Read
                        } else {
                            Code::Write
                        },
                        count,
                    ),
                    _ => {
                        self.release_slot(index);
                        return false;
                    }
                }
            }
        };
        let id = (sequence << 8) | u32::from(index);
        let request = Request::new(code, entry.offset, offset / TRANSFER_SIZE, count, id);
        entry.id = id;
        entry.code = code;
        entry.count = count;
        match self.client.enqueue(&request) {
            Ok(()) => {
                if let Some(entry) = self.entry(index) {
                    entry.state = State::Sent;
                }
                self.sequence = sequence.wrapping_add(1) & 0x00ff_ffff;
                self.stats.requests = self.stats.requests.saturating_add(1);
                self.unrung = true;
                true
            }
            Err(e) => {
                if e != Error::Full {
                    self.broken = Some(e);
                }
                self.release_slot(index);
                false
            }
        }
    }

    fn complete(&mut self) -> Option<(u16, bool)> {
        if self.broken.is_some() {
            return self.abandon_one();
        }
        loop {
            let Response {
                status,
                success_count,
                id,
            } = match self.client.dequeue() {
                Ok(Some(response)) => response,
                Ok(None) => return None,
                Err(e) => {
                    self.broken = Some(e);
                    return self.abandon_one();
                }
            };
            let index = (id & 0xff) as u16;
            match self.entry(index) {
                Some(entry) if entry.state == State::Sent && entry.id == id => {
                    let ok = status == Status::Ok
                        && (entry.code == Code::Flush || success_count == entry.count);
                    entry.state = State::Done;
                    entry.ok = ok;
                    self.stats.failed = self.stats.failed.saturating_add(u64::from(!ok));
                    return Some((index, ok));
                }
                _ => self.stats.stale = self.stats.stale.saturating_add(1),
            }
        }
    }

    fn release(&mut self, index: u16) {
        self.release_slot(index);
    }

    fn in_flight(&self) -> usize {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.state == State::Sent)
            .count()
    }

    fn kick(&mut self) {
        if self.unrung {
            self.unrung = false;
            self.stats.rings = self.stats.rings.saturating_add(1);
            self.doorbell.ring();
        }
    }
}
