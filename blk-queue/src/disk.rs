// SPDX-License-Identifier: BSD-2-Clause
//! A virtio-blk [`Disk`] behind a block driver PD: each load or store is
//! one sDDF request through the [`Client`] rings, its data in the data
//! region both PDs map (the driver's DMA area). In the blk PD that data
//! region is also the copy client's shared buffer, so the VMM copies guest
//! RAM straight to and from it ([`Disk::window`]): the blk PD never touches
//! the data, the driver never sees guest RAM.
//!
//! One request is in flight at a time: the disk queues it, rings the
//! driver ([`Doorbell::ring`]) and waits for its response
//! ([`Doorbell::wait`], which says when to give up). A response with
//! another id (left over from a request given up on) is dropped. A request
//! given up on, or a ring found corrupt, breaks the disk: every later
//! request fails at once, since the device may still write the data
//! region for the lost one.

use guest_ram::SharedBuffer;
use virtio::blk::Disk;

use crate::{read_storage_info, Client, Code, Error, Request, Response, Status, TRANSFER_SIZE};

/// How the disk reaches the driver.
pub trait Doorbell {
    /// Signals the driver that requests are queued.
    fn ring(&mut self);
    /// Called while waiting for a response, between looks at the ring:
    /// returns `false` once the wait has gone on too long.
    fn wait(&mut self) -> bool;
}

/// Counters, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that came back with a status other than OK.
    pub failed: u64,
    /// Responses dropped (another id).
    pub stale: u64,
}

/// A disk served by a block driver PD over sDDF rings.
pub struct QueueDisk<B> {
    client: Client,
    info: SharedBuffer,
    data: SharedBuffer,
    data_offset: u64,
    doorbell: B,
    capacity: u64,
    next_id: u32,
    broken: Option<Error>,
    stats: DiskStats,
}

impl<B: Doorbell> QueueDisk<B> {
    /// A disk over `client`'s rings, whose driver describes the device in
    /// `info` and moves data through `data`, which sits at `data_offset` in
    /// the copy client's shared buffer.
    pub fn new(
        client: Client,
        info: SharedBuffer,
        data: SharedBuffer,
        data_offset: u64,
        doorbell: B,
    ) -> Self {
        let mut disk = QueueDisk {
            client,
            info,
            data,
            data_offset,
            doorbell,
            capacity: 0,
            next_id: 0,
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

    /// Sends one request and waits for its response: whether it succeeded.
    fn call(&mut self, code: Code, block: u64, count: u16) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.stats.requests += 1;
        if let Err(e) = self
            .client
            .enqueue(&Request::new(code, 0, block, count, id))
        {
            self.broken = Some(e);
            return false;
        }
        self.doorbell.ring();
        loop {
            match self.client.dequeue() {
                Ok(Some(Response {
                    status,
                    success_count,
                    id: got,
                })) if got == id => {
                    let ok = status == Status::Ok
                        && (matches!(code, Code::Flush | Code::Barrier) || success_count == count);
                    self.stats.failed += u64::from(!ok);
                    return ok;
                }
                Ok(Some(_)) => self.stats.stale += 1,
                Ok(None) => {
                    if !self.doorbell.wait() {
                        // The request is lost: the device may still write
                        // the data region for it.
                        self.broken = Some(Error::TimedOut);
                        return false;
                    }
                }
                Err(e) => {
                    self.broken = Some(e);
                    return false;
                }
            }
        }
    }

    /// The data region's first `len` bytes ↔ the disk at `offset`: one
    /// request, if the range is whole blocks inside the disk and the data
    /// region.
    fn transfer(&mut self, code: Code, offset: u64, len: u64) -> bool {
        let fits = offset % TRANSFER_SIZE == 0
            && len % TRANSFER_SIZE == 0
            && len <= self.data.len() as u64
            && offset.checked_add(len).is_some_and(|end| end <= self.len());
        let Ok(count) = u16::try_from(len / TRANSFER_SIZE) else {
            return false;
        };
        fits && count > 0 && self.call(code, offset / TRANSFER_SIZE, count)
    }

    /// The window's length: the data region, at most what one request's
    /// count can say.
    fn window_len(&self) -> u64 {
        (self.data.len() as u64).min(u64::from(u16::MAX) * TRANSFER_SIZE)
    }
}

impl<B: Doorbell> Disk for QueueDisk<B> {
    fn len(&self) -> u64 {
        self.capacity.saturating_mul(TRANSFER_SIZE)
    }
    fn load(&mut self, offset: u64, dst: &SharedBuffer, dst_offset: usize, len: usize) -> bool {
        let data = self.data;
        self.read_to_window(offset, len as u64) && dst.copy_from(dst_offset, &data, 0, len).is_ok()
    }
    fn store(&mut self, offset: u64, src: &SharedBuffer, src_offset: usize, len: usize) -> bool {
        self.data.copy_from(0, src, src_offset, len).is_ok()
            && self.write_from_window(offset, len as u64)
    }
    fn flush(&mut self) -> bool {
        self.call(Code::Flush, 0, 0)
    }
    fn block_size(&self) -> u32 {
        TRANSFER_SIZE as u32
    }
    fn window(&self) -> Option<(u64, u64)> {
        Some((self.data_offset, self.window_len()))
    }
    fn read_to_window(&mut self, offset: u64, len: u64) -> bool {
        self.transfer(Code::Read, offset, len)
    }
    fn write_from_window(&mut self, offset: u64, len: u64) -> bool {
        self.transfer(Code::Write, offset, len)
    }
}
