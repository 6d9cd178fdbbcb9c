// SPDX-License-Identifier: BSD-2-Clause
//! The device side of a split virtqueue, shared by every backend here
//! (virtio-blk, virtio-console, and the next one): how a device reads
//! what the driver made available and publishes what it used, through a
//! [`GuestDma`] (in a device PD, guest-ram's copy client), in as few calls
//! as the copy service allows.
//!
//! - [`Snapshot::take`]: **one call** whose segments the copy server
//!   copies in order, each before the next: the available ring's flags
//!   and index, then the descriptor table and the available ring. The
//!   driver writes the entries before the index that publishes them, so
//!   the entries are read after it; the snapshot is then walked locally
//!   ([`Snapshot::chain`]), so the guest cannot change a descriptor
//!   between its check and its use.
//! - [`DeviceQueue::publish`]: **one call** that writes whatever the
//!   device writes before completing (virtio-blk's status bytes), the used
//!   elements (at most two runs: the ring may wrap), `avail_event` with
//!   event indices, and then the used
//!   ring's flags and index (adjacent: one segment), in that order, so the
//!   driver sees the index only after the elements it covers. The flags
//!   carry the device's [`USED_F_NO_NOTIFY`] at no extra cost
//!   ([`DeviceQueue::set_no_notify`]).
//!
//! A backend therefore pays 2 calls per notification for the rings,
//! whatever the number of chains, plus its own data calls.
//!
//! The available ring's flags come with the snapshot, so whether the
//! driver asked for no interrupt (`VIRTQ_AVAIL_F_NO_INTERRUPT`, §2.7.10)
//! costs nothing to know: [`Snapshot::wants_interrupt`]. But the flags
//! in a snapshot are as old as the snapshot: a driver that runs while the
//! device works (another core, or a device PD that a guest can preempt)
//! may clear the flag after the snapshot, check the used index before the
//! device publishes, and wait for an interrupt (Linux's
//! `virtqueue_enable_cb_prepare` and `virtqueue_poll`). A device that
//! found the flag set therefore reads it again after publishing, before
//! it decides against the interrupt: [`DeviceQueue::wants_interrupt_now`],
//! one more call, only when the snapshot said no.
//!
//! **`VIRTIO_RING_F_EVENT_IDX`** (§2.7.7, §2.7.10; [`Layout::event_idx`]),
//! offered by virtio-blk and virtio-net: under TCG every notification is
//! a trapped MMIO write and every interrupt an injection plus a VGIC
//! maintenance exit at the guest's EOI, so the fewer of each the better,
//! and the event indices let both sides say precisely when they need the
//! other. The rings' `flags` words then mean nothing.
//! - The device writes the used ring's `avail_event` = its position (the
//!   available index it has taken chains up to) with every publication
//!   (the same call: one more segment), or in a write of its own when it
//!   took chains and used none ([`DeviceQueue::events`]); the driver
//!   notifies only when its available index passes it, so chains added
//!   while the device has not caught up cost no trap. A queue that never
//!   wants notifications ([`DeviceQueue::set_no_notify`]) writes one
//!   behind its position, which the driver never passes.
//! - After publishing, one call reads the available index and the
//!   driver's `used_event` back ([`DeviceQueue::events`]): the device
//!   interrupts only if the used index passed `used_event` since its last
//!   decision ([`need_event`]), and looks again if the driver added chains
//!   meanwhile (it may not have notified them: it read the old
//!   `avail_event`).
//!
//! A device therefore pays, with event indices, 2 calls per notification
//! plus 1 per round that published (and 1 more if it calls
//! [`DeviceQueue::events`] having taken chains and used none, which the
//! asynchronous virtio-blk backend avoids: see
//! [`blk_async`](crate::blk_async)).
//!
//! What breaks the ring itself (a descriptor loop, an index out of range,
//! an available index that jumps, a ring the device may not touch) is a
//! [`QueueError`]; the device then reports `DEVICE_NEEDS_RESET`.

use core::fmt;

use guest_ram::client::{Client, ClientError, Transport};
use guest_ram::{GpaRange, SharedBuffer};
use zerocopy::{FromBytes, IntoBytes};

use crate::queue::{self, Chain, Desc, Layout, QueueError, UsedElem, MAX_CHAIN};

/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver does not want an interrupt
/// when the device uses buffers (§2.7.7).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// `VIRTQ_USED_F_NO_NOTIFY`: the device does not want the driver to
/// notify it when it makes buffers available (§2.7.10), a hint the driver
/// may ignore.
pub const USED_F_NO_NOTIFY: u16 = 1;

/// Guest-RAM access for a device model: small reads and writes, and
/// in-place gather/scatter through a staging buffer.
pub trait GuestDma {
    /// Why an access was refused.
    type Error: fmt::Display;
    /// Reads guest RAM at `gpa` into `dst`.
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), Self::Error>;
    /// Gathers `segments` into `dst`.
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes `src` into guest RAM at `gpa`.
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), Self::Error>;
    /// Scatters `src` over `segments`.
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), Self::Error>;
    /// The staging buffer.
    fn staging(&self) -> &SharedBuffer;
    /// Gathers `segments` into the staging buffer from offset 0.
    fn gather(&mut self, segments: &[GpaRange]) -> Result<usize, Self::Error>;
    /// Scatters the start of the staging buffer over `segments`.
    fn scatter(&mut self, segments: &[GpaRange]) -> Result<usize, Self::Error>;
    /// Gathers `segments` into the shared buffer at contiguous offsets from
    /// `buffer_offset` (a disk that lives in the buffer).
    fn gather_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, Self::Error>;
    /// Scatters the shared buffer's bytes from `buffer_offset` over
    /// `segments`.
    fn scatter_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, Self::Error>;
}

impl<T: Transport> GuestDma for Client<T> {
    type Error = ClientError;
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), ClientError> {
        Client::read(self, gpa, dst)
    }
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), ClientError> {
        Client::readv(self, segments, dst)
    }
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), ClientError> {
        Client::write(self, gpa, src)
    }
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), ClientError> {
        Client::writev(self, segments, src)
    }
    fn staging(&self) -> &SharedBuffer {
        Client::staging(self)
    }
    fn gather(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.readv_in_place(segments)
    }
    fn scatter(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.writev_in_place(segments)
    }
    fn gather_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, ClientError> {
        self.readv_at(segments, buffer_offset)
    }
    fn scatter_at(
        &mut self,
        segments: &[GpaRange],
        buffer_offset: u64,
    ) -> Result<usize, ClientError> {
        self.writev_at(segments, buffer_offset)
    }
}

/// A copy client whose gathers into, and scatters from, its own shared
/// buffer go in place: a [`GuestDma::readv`] whose destination (or a
/// [`GuestDma::writev`] whose source) lies wholly in the client's shared
/// buffer at or past `in_place_from` is one [`Client::readv_at`]
/// ([`Client::writev_at`]) at that offset, the VMM copying straight
/// between guest RAM and that memory; anything else goes through the
/// staging area as [`Client`] does. For a device PD whose frames or blocks
/// already live in the shared buffer (the `net` PD's pair areas).
pub struct InPlace<'a, T> {
    client: &'a mut Client<T>,
    in_place_from: usize,
}

impl<'a, T: Transport> InPlace<'a, T> {
    /// `client`, in place for its shared buffer's bytes from
    /// `in_place_from` on (below: its staging area).
    pub fn new(client: &'a mut Client<T>, in_place_from: usize) -> Self {
        InPlace {
            client,
            in_place_from,
        }
    }

    /// `bytes`' offset in the shared buffer, if it lies wholly inside it
    /// at or past `in_place_from`. Address arithmetic only.
    fn offset_of(&self, bytes: &[u8]) -> Option<u64> {
        let buffer = self.client.buffer();
        let base = buffer.vaddr().as_ptr() as usize;
        let at = (bytes.as_ptr() as usize).checked_sub(base)?;
        let inside = at >= self.in_place_from && at.checked_add(bytes.len())? <= buffer.len();
        inside.then_some(at as u64)
    }
}

impl<T: Transport> GuestDma for InPlace<'_, T> {
    type Error = ClientError;
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), ClientError> {
        self.client.read(gpa, dst)
    }
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), ClientError> {
        match self.offset_of(dst) {
            Some(at) => match self.client.readv_at(segments, at)? {
                n if n == dst.len() => Ok(()),
                _ => Err(ClientError::TooLarge),
            },
            None => self.client.readv(segments, dst),
        }
    }
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), ClientError> {
        self.client.write(gpa, src)
    }
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), ClientError> {
        match self.offset_of(src) {
            Some(at) => match self.client.writev_at(segments, at)? {
                n if n == src.len() => Ok(()),
                _ => Err(ClientError::TooLarge),
            },
            None => self.client.writev(segments, src),
        }
    }
    fn staging(&self) -> &SharedBuffer {
        self.client.staging()
    }
    fn gather(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.client.readv_in_place(segments)
    }
    fn scatter(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.client.writev_in_place(segments)
    }
    fn gather_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.client.readv_at(segments, offset)
    }
    fn scatter_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.client.writev_at(segments, offset)
    }
}

/// Bytes of the largest descriptor table.
const TABLE_BYTES: usize = 16 * MAX_CHAIN;
/// Bytes of the largest snapshot: flags and index, table, ring.
const SNAPSHOT_BYTES: usize = 4 + TABLE_BYTES + 2 * MAX_CHAIN;

/// A local copy of the driver's side of one queue, taken in one call:
/// what is pending, and the descriptors to walk it with.
pub struct Snapshot {
    bytes: [u8; SNAPSHOT_BYTES],
    size: u16,
    flags: u16,
    avail_idx: u16,
    first: u16,
    pending: u16,
}

impl Snapshot {
    /// Reads queue `layout`'s available flags and index, descriptor table
    /// and available ring in one [`GuestDma::readv`], and counts the
    /// chains made available since `queue`'s position. An index more than
    /// a queue ahead is [`QueueError::AvailIndexJump`].
    pub fn take<M: GuestDma>(
        layout: &Layout,
        queue: &DeviceQueue,
        dma: &mut M,
    ) -> Result<Self, QueueError> {
        let size = layout.size();
        let mut snapshot = Snapshot {
            bytes: [0; SNAPSHOT_BYTES],
            size,
            flags: 0,
            avail_idx: 0,
            first: queue.last_avail,
            pending: 0,
        };
        let len = 4 + 18 * usize::from(size);
        let bytes = snapshot.bytes.get_mut(..len).ok_or(QueueError::BadSize)?;
        let head = GpaRange {
            gpa: layout.avail_flags_gpa(),
            len: 4,
        };
        dma.readv(&[head, layout.desc_table(), layout.avail_ring()], bytes)
            .map_err(|_| QueueError::RingAccess)?;
        let (flags, idx) = match bytes.first_chunk::<4>() {
            Some(&[f0, f1, i0, i1]) => (u16::from_le_bytes([f0, f1]), u16::from_le_bytes([i0, i1])),
            None => return Err(QueueError::RingAccess),
        };
        let pending = idx.wrapping_sub(queue.last_avail);
        if pending > size {
            return Err(QueueError::AvailIndexJump);
        }
        snapshot.flags = flags;
        snapshot.avail_idx = idx;
        snapshot.pending = pending;
        Ok(snapshot)
    }

    /// Chains made available since the device's position when the
    /// snapshot was taken (at most the queue size).
    pub fn pending(&self) -> u16 {
        self.pending
    }

    /// The available index the driver had published.
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// The available ring's flags.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Whether the driver wants an interrupt when the device uses buffers
    /// (`VIRTQ_AVAIL_F_NO_INTERRUPT` clear). A hint (§2.7.7): a device
    /// that needs a reset interrupts anyway.
    pub fn wants_interrupt(&self) -> bool {
        self.flags & AVAIL_F_NO_INTERRUPT == 0
    }

    /// The descriptor table, as copied.
    pub fn table(&self) -> &[Desc] {
        let len = 16 * usize::from(self.size);
        self.bytes
            .get(4..4 + len)
            .and_then(|bytes| <[Desc]>::ref_from_bytes(bytes).ok())
            .unwrap_or(&[])
    }

    /// The head index of the `k`-th pending chain, and the chain walked
    /// through the table. `k` must be below [`pending`](Self::pending).
    pub fn chain(&self, k: u16) -> Result<(u16, Chain), QueueError> {
        if k >= self.pending {
            return Err(QueueError::AvailIndexJump);
        }
        let slot = usize::from(self.first.wrapping_add(k) % self.size.max(1));
        let at = 4 + 16 * usize::from(self.size) + 2 * slot;
        let head = match self.bytes.get(at..at + 2) {
            Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
            _ => return Err(QueueError::RingAccess),
        };
        let chain = queue::walk(self.table(), self.size, head).map_err(QueueError::Chain)?;
        Ok((head, chain))
    }
}

/// The device's position in one queue: the next available entry it will
/// take and the next used entry it will fill. Both start at 0 when the
/// driver configures the queue. Also the used ring's `flags` the device
/// keeps there ([`set_no_notify`](Self::set_no_notify)).
///
/// With `VIRTIO_RING_F_EVENT_IDX` ([`Layout::event_idx`]) it also keeps
/// the used index at its last interrupt decision and the `avail_event` it
/// last wrote ([`events`](Self::events)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceQueue {
    last_avail: u16,
    used_idx: u16,
    used_flags: u16,
    /// EVENT_IDX: the used index when the device last decided whether to
    /// interrupt (QEMU's `signalled_used`): the driver has been told, or
    /// asked not to be, about every entry below it. 0 at the start, when
    /// there is nothing to tell.
    signalled_used: u16,
    /// EVENT_IDX: the `avail_event` the device last wrote, if it wrote
    /// one.
    avail_event: Option<u16>,
}

/// `vring_need_event` (§2.7.7.2, §2.7.10.1): whether an index that moved
/// from `old` to `new` passed `event`, that is whether `event` lies in
/// `[old, new)`, all modulo 2^16. The device interrupts when the used
/// index passes the driver's `used_event`; the driver notifies when the
/// available index passes the device's `avail_event`.
///
/// ```
/// use virtio::virtq::need_event;
/// assert!(need_event(5, 6, 5)); // 5 -> 6 passes 5
/// assert!(!need_event(6, 6, 5)); // ... not 6
/// assert!(need_event(0xffff, 2, 0xfffe)); // across the wrap
/// assert!(!need_event(3, 3, 3)); // nothing moved
/// ```
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The most rounds a device serves in one call when, with
/// `VIRTIO_RING_F_EVENT_IDX`, [`Events::more`] keeps finding chains the
/// driver added meanwhile (each round serves at least one). A driver
/// that adds one chain at a time as fast as the device serves them (or
/// rewrites its ring under the device, through the device's own writes)
/// gets no more of the device's time than that per notification. Linux's
/// needs one or two: it adds chains during a call only while the device
/// PD is off the core (its budget spent) or from another core. The price
/// of the bound: chains found in the last round's read-back that the
/// driver did not notify (it read the `avail_event` from before that
/// round's publication) wait for its next notification, or for the next
/// completion of a request at the disk; a driver that added chains
/// through all 16 rounds of one call is the only one that can see it.
pub const MAX_ROUNDS: usize = 16;

/// What the device learnt after working a queue with
/// `VIRTIO_RING_F_EVENT_IDX` ([`DeviceQueue::events`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Interrupt the driver: the used index passed its `used_event` since
    /// the last decision.
    pub interrupt: bool,
    /// The driver made chains available past the device's position: the
    /// device looks again, since the driver need not notify it about
    /// them (it may have read an older `avail_event`).
    pub more: bool,
}

/// Most bytes a device writes before the used ring in one publication:
/// one per chain (virtio-blk's status bytes).
pub const MAX_PREFIX: usize = MAX_CHAIN;

impl DeviceQueue {
    /// A queue the driver has just configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next available-ring index the device will take.
    pub fn last_avail(&self) -> u16 {
        self.last_avail
    }

    /// The used index the device has published.
    pub fn used_idx(&self) -> u16 {
        self.used_idx
    }

    /// Whether the device asks the driver not to notify it
    /// ([`USED_F_NO_NOTIFY`]): written into the used ring's `flags` with
    /// the next [`publish`](Self::publish), in the same segment as the
    /// used index (the two are adjacent), so at no extra call. A device
    /// that never acts on this queue's notifications (a virtio-net
    /// receive queue: frames for a guest without buffers are dropped, not
    /// held until it posts some) sets it for good.
    ///
    /// With `VIRTIO_RING_F_EVENT_IDX` the flags mean nothing; the same
    /// request is an `avail_event` one behind the device's position, an
    /// index the driver's available index has already passed and does not
    /// pass again before the device writes a new one (the driver is never
    /// more than a queue ahead): it never notifies.
    pub fn set_no_notify(&mut self, on: bool) {
        self.used_flags = if on { USED_F_NO_NOTIFY } else { 0 };
    }

    /// The used ring's `flags` the next publication writes.
    pub fn used_flags(&self) -> u16 {
        self.used_flags
    }

    /// Whether the driver wants an interrupt, read from the available
    /// ring's flags now, after a [`publish`](Self::publish) (one
    /// [`GuestDma::read`]): the check that a stale
    /// [`Snapshot::wants_interrupt`] of `false` needs before the device
    /// skips the interrupt (see the module docs). A flag that cannot be
    /// read asks for the interrupt: a spurious one is harmless, a lost one
    /// is not.
    ///
    /// Without `VIRTIO_RING_F_EVENT_IDX` only; with it, see
    /// [`events`](Self::events).
    pub fn wants_interrupt_now<M: GuestDma>(&self, layout: &Layout, dma: &mut M) -> bool {
        let mut flags = [0u8; 2];
        dma.read(layout.avail_flags_gpa(), &mut flags)
            .map_or(true, |()| {
                u16::from_le_bytes(flags) & AVAIL_F_NO_INTERRUPT == 0
            })
    }

    /// The `avail_event` the device asks for once its position is
    /// `last_avail`: that index (notify me when you make the next chain
    /// available), or one behind it when the device wants no
    /// notifications ([`set_no_notify`](Self::set_no_notify)).
    fn avail_event_at(&self, last_avail: u16) -> u16 {
        if self.used_flags & USED_F_NO_NOTIFY != 0 {
            last_avail.wrapping_sub(1)
        } else {
            last_avail
        }
    }

    /// With `VIRTIO_RING_F_EVENT_IDX`, after the device published used
    /// chains or took available ones: the decisions the driver's and the
    /// device's event indices ask for, in one [`GuestDma::readv`] (and
    /// one [`GuestDma::write`] first if the last publication did not
    /// carry the current `avail_event`, a device that took chains and
    /// used none).
    ///
    /// - `avail_event` is made current (the device's position, or one
    ///   behind it: [`set_no_notify`](Self::set_no_notify)) **before** the
    ///   available index is read again: a driver that added chains after
    ///   the snapshot and read the old `avail_event` did not notify, and
    ///   the device finds them here ([`Events::more`]) instead.
    /// - The driver's `used_event` is read **after** the used index was
    ///   published, for the race [`wants_interrupt_now`](Self::wants_interrupt_now)
    ///   guards against: a driver that asked for an interrupt at an index
    ///   the device has just passed either saw the new used index or is
    ///   seen here. [`Events::interrupt`] is
    ///   [`need_event`]`(used_event, used index, used index at the last
    ///   decision)`; the decision moves the last-decision index on whether
    ///   or not it interrupts (QEMU's `signalled_used`), so the driver is
    ///   interrupted once per `used_event` it sets, never for entries it
    ///   has already been told about or asked not to be.
    ///
    /// Everything read is the guest's and only compared: no index is
    /// trusted to be in range. If the read is refused, the device
    /// interrupts if it published anything since the last decision (a
    /// spurious interrupt is harmless, a lost one is not) and finds
    /// nothing more.
    pub fn events<M: GuestDma>(&mut self, layout: &Layout, dma: &mut M) -> Events {
        let event = self.avail_event_at(self.last_avail);
        if self.avail_event != Some(event)
            && dma
                .write(layout.avail_event_gpa(), &event.to_le_bytes())
                .is_ok()
        {
            self.avail_event = Some(event);
        }
        let segments = [
            GpaRange {
                gpa: layout.avail_idx_gpa(),
                len: 2,
            },
            GpaRange {
                gpa: layout.used_event_gpa(),
                len: 2,
            },
        ];
        let mut bytes = [0u8; 4];
        let read = dma.readv(&segments, &mut bytes);
        let (new, old) = (self.used_idx, self.signalled_used);
        self.signalled_used = new;
        match (read, bytes) {
            (Ok(()), [a0, a1, e0, e1]) => Events {
                interrupt: need_event(u16::from_le_bytes([e0, e1]), new, old),
                more: u16::from_le_bytes([a0, a1]) != self.last_avail,
            },
            (Err(_), _) => Events {
                interrupt: new != old,
                more: false,
            },
        }
    }

    /// Publishes, in one [`GuestDma::writev`] whose segments the copy
    /// server writes in order: `prefix` (single bytes the device writes
    /// before completing, such as virtio-blk's status bytes, at most
    /// [`MAX_PREFIX`]), the used elements `used` from the device's used
    /// index on, and the used ring's `flags` and new index (one 4-byte
    /// segment). Each element completes the next
    /// available chain, so on success both positions advance by
    /// `used.len()`; on failure ([`QueueError::RingAccess`]) nothing
    /// advances and the caller may retry without the prefix. An empty
    /// `used` makes no call.
    pub fn publish<M: GuestDma>(
        &mut self,
        layout: &Layout,
        prefix: &[(u64, u8)],
        used: &[UsedElem],
        dma: &mut M,
    ) -> Result<(), QueueError> {
        let count = self.publish_inner(layout, prefix, used, true, dma)?;
        self.last_avail = self.last_avail.wrapping_add(count);
        Ok(())
    }

    /// Takes the next `n` available chains without completing them (a
    /// device that completes chains later, in any order: asynchronous
    /// virtio-blk): the available position advances, the used one does
    /// not. Chains taken are completed later by
    /// [`publish_used`](Self::publish_used).
    pub fn take(&mut self, n: u16) {
        self.last_avail = self.last_avail.wrapping_add(n);
    }

    /// Chains taken and not yet used.
    pub fn outstanding(&self) -> u16 {
        self.last_avail.wrapping_sub(self.used_idx)
    }

    /// As [`publish`](Self::publish), for chains already
    /// [`take`](Self::take)n: only the used position advances. Returns how
    /// many elements were published.
    pub fn publish_used<M: GuestDma>(
        &mut self,
        layout: &Layout,
        prefix: &[(u64, u8)],
        used: &[UsedElem],
        dma: &mut M,
    ) -> Result<u16, QueueError> {
        self.publish_inner(layout, prefix, used, false, dma)
    }

    /// [`publish_used`](Self::publish_used); with
    /// `VIRTIO_RING_F_EVENT_IDX`, the used ring's `avail_event` goes in
    /// the same call, for the position the device has once it is done
    /// (`last_avail`, moved on by the chains used if `advance`).
    fn publish_inner<M: GuestDma>(
        &mut self,
        layout: &Layout,
        prefix: &[(u64, u8)],
        used: &[UsedElem],
        advance: bool,
        dma: &mut M,
    ) -> Result<u16, QueueError> {
        if used.is_empty() {
            return Ok(0);
        }
        let size = layout.size();
        let count = u16::try_from(used.len())
            .ok()
            .filter(|n| *n <= size)
            .ok_or(QueueError::AvailIndexJump)?;
        let mut segments: heapless::Vec<GpaRange, { MAX_PREFIX + 4 }> = heapless::Vec::new();
        let mut bytes = [0u8; MAX_PREFIX + 8 * MAX_CHAIN + 6];
        let mut at = 0;
        for &(gpa, byte) in prefix {
            segments
                .push(GpaRange { gpa, len: 1 })
                .map_err(|_| QueueError::RingAccess)?;
            *bytes.get_mut(at).ok_or(QueueError::RingAccess)? = byte;
            at += 1;
        }
        let first = usize::from(self.used_idx.checked_rem(size).ok_or(QueueError::BadSize)?);
        let run = used.len().min(usize::from(size).saturating_sub(first));
        let (a, b) = used.split_at_checked(run).ok_or(QueueError::RingAccess)?;
        let [i0, i1] = self.used_idx.wrapping_add(count).to_le_bytes();
        let [f0, f1] = self.used_flags.to_le_bytes();
        let flags_and_idx = [f0, f1, i0, i1];
        let last_avail = if advance {
            self.last_avail.wrapping_add(count)
        } else {
            self.last_avail
        };
        let event = self.avail_event_at(last_avail);
        let event_bytes = event.to_le_bytes();
        let avail_event: &[u8] = if layout.event_idx() {
            &event_bytes
        } else {
            &[]
        };
        let pieces = [
            (layout.used_elem_gpa(self.used_idx), a.as_bytes()),
            (layout.used_elem_gpa(0), b.as_bytes()),
            (layout.avail_event_gpa(), avail_event),
            (layout.used_flags_gpa(), &flags_and_idx[..]),
        ];
        for (gpa, piece) in pieces {
            if piece.is_empty() {
                continue;
            }
            let end = at + piece.len();
            bytes
                .get_mut(at..end)
                .ok_or(QueueError::RingAccess)?
                .copy_from_slice(piece);
            segments
                .push(GpaRange {
                    gpa,
                    len: piece.len() as u64,
                })
                .map_err(|_| QueueError::RingAccess)?;
            at = end;
        }
        dma.writev(&segments, bytes.get(..at).unwrap_or(&[]))
            .map_err(|_| QueueError::RingAccess)?;
        self.used_idx = self.used_idx.wrapping_add(count);
        if layout.event_idx() {
            self.avail_event = Some(event);
        }
        Ok(count)
    }
}

/// A [`GuestDma`] for unit tests.
/// One chain of a batch: where its buffers end in the batch's segment
/// list, its bytes, and its used element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    pub(crate) segments_end: usize,
    pub(crate) len: usize,
    pub(crate) used: usize,
}

/// Guest buffers gathered or scattered in one call (the console's and
/// net's batches: up to a queue's worth of buffers and chains).
pub(crate) struct Batch {
    pub(crate) segments: heapless::Vec<GpaRange, MAX_CHAIN>,
    pub(crate) chains: heapless::Vec<Planned, MAX_CHAIN>,
    pub(crate) bytes: usize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Batch {
            segments: heapless::Vec::new(),
            chains: heapless::Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a chain's `buffers` (`len` bytes) completing used element
    /// `used`; `false` if they do not fit.
    pub(crate) fn add(&mut self, buffers: &[GpaRange], len: usize, used: usize) -> bool {
        if self.segments.len() + buffers.len() > MAX_CHAIN || self.chains.is_full() {
            return false;
        }
        for b in buffers {
            // Cannot fail: checked above.
            let _ = self.segments.push(*b);
        }
        self.bytes += len;
        // Cannot fail: checked above.
        let _ = self.chains.push(Planned {
            segments_end: self.segments.len(),
            len,
            used,
        });
        true
    }

    /// Each chain's buffers and plan, in order.
    pub(crate) fn each(&self) -> impl Iterator<Item = (&[GpaRange], Planned)> {
        let mut start = 0;
        self.chains.iter().map(move |c| {
            let s = self.segments.get(start..c.segments_end).unwrap_or(&[]);
            start = c.segments_end;
            (s, *c)
        })
    }

    pub(crate) fn clear(&mut self) {
        self.segments.clear();
        self.chains.clear();
        self.bytes = 0;
    }
}

pub(crate) type Used = heapless::Vec<UsedElem, MAX_CHAIN>;

pub(crate) fn used_elem(head: u16, len: usize) -> UsedElem {
    UsedElem {
        id: u32::from(head).into(),
        len: u32::try_from(len).unwrap_or(u32::MAX).into(),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::queue::{flags, Desc};
    use zerocopy::IntoBytes;

    /// The queue a test [`Driver`] sets up: its size and where its parts lie.
    pub(crate) const SIZE: u16 = 8;
    pub(crate) const DESC: u64 = 0x1000;
    pub(crate) const AVAIL: u64 = 0x2000;
    pub(crate) const USED: u64 = 0x3000;

    /// The guest's side of one queue in a [`Flat`] memory.
    pub(crate) struct Driver {
        pub(crate) layout: Layout,
        next_desc: u16,
        avail_idx: u16,
    }

    impl Driver {
        pub(crate) fn new() -> Self {
            Driver {
                layout: Layout::new(SIZE, DESC, AVAIL, USED).unwrap(),
                next_desc: 0,
                avail_idx: 0,
            }
        }

        /// Posts a chain of `(gpa, len, writable)` buffers.
        pub(crate) fn post(&mut self, mem: &mut Flat, buffers: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc % SIZE;
            for (i, &(gpa, len, writable)) in buffers.iter().enumerate() {
                let index = (self.next_desc + i as u16) % SIZE;
                let last = i + 1 == buffers.len();
                let f = (u16::from(!last) * flags::NEXT) | (u16::from(writable) * flags::WRITE);
                let desc = Desc::new(gpa, len, f, (index + 1) % SIZE);
                mem.put(DESC + 16 * u64::from(index), desc.as_bytes());
            }
            self.next_desc += buffers.len() as u16;
            mem.put(
                AVAIL + 4 + 2 * u64::from(self.avail_idx % SIZE),
                &head.to_le_bytes(),
            );
            self.avail_idx += 1;
            mem.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
            head
        }

        /// The used elements `(id, len)` from `from` to the used index.
        pub(crate) fn used(&self, mem: &Flat, from: u16) -> std::vec::Vec<(u32, u32)> {
            let at = |gpa: u64| mem.mem[gpa as usize..gpa as usize + 4].try_into().unwrap();
            let idx = u16::from_le_bytes(
                mem.mem[USED as usize + 2..USED as usize + 4]
                    .try_into()
                    .unwrap(),
            );
            (from..idx)
                .map(|i| {
                    let gpa = self.layout.used_elem_gpa(i);
                    (u32::from_le_bytes(at(gpa)), u32::from_le_bytes(at(gpa + 4)))
                })
                .collect()
        }
    }

    /// Guest memory as a flat array at gpa 0, counting calls; every access
    /// ending above `refuse_above` is refused whole, as the copy server
    /// refuses a request with one segment outside the window.
    pub(crate) struct Flat {
        pub(crate) mem: std::vec::Vec<u8>,
        pub(crate) calls: usize,
        pub(crate) refuse_above: u64,
    }

    impl Flat {
        pub(crate) fn new() -> Self {
            Flat {
                mem: std::vec![0; 0x10000],
                calls: 0,
                refuse_above: 0x10000,
            }
        }
        fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, &'static str> {
            let end = gpa.checked_add(len as u64).ok_or("overflow")?;
            if end > self.refuse_above {
                return Err("outside");
            }
            Ok(gpa as usize..end as usize)
        }
        pub(crate) fn put(&mut self, gpa: u64, bytes: &[u8]) {
            self.mem[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
        }
    }

    impl GuestDma for Flat {
        type Error = &'static str;
        fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), Self::Error> {
            self.readv(
                &[GpaRange {
                    gpa,
                    len: dst.len() as u64,
                }],
                dst,
            )
        }
        fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), Self::Error> {
            self.calls += 1;
            let mut at = 0;
            for s in segments {
                self.range(s.gpa, s.len as usize)?;
            }
            for s in segments {
                let r = self.range(s.gpa, s.len as usize)?;
                dst[at..at + r.len()].copy_from_slice(&self.mem[r.clone()]);
                at += r.len();
            }
            Ok(())
        }
        fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), Self::Error> {
            self.writev(
                &[GpaRange {
                    gpa,
                    len: src.len() as u64,
                }],
                src,
            )
        }
        fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), Self::Error> {
            self.calls += 1;
            for s in segments {
                self.range(s.gpa, s.len as usize)?;
            }
            let mut at = 0;
            for s in segments {
                let r = self.range(s.gpa, s.len as usize)?;
                let n = r.len();
                self.mem[r].copy_from_slice(&src[at..at + n]);
                at += n;
            }
            Ok(())
        }
        fn staging(&self) -> &SharedBuffer {
            unimplemented!()
        }
        fn gather(&mut self, _: &[GpaRange]) -> Result<usize, Self::Error> {
            Err("no staging")
        }
        fn scatter(&mut self, _: &[GpaRange]) -> Result<usize, Self::Error> {
            Err("no staging")
        }
        fn gather_at(&mut self, _: &[GpaRange], _: u64) -> Result<usize, Self::Error> {
            Err("no staging")
        }
        fn scatter_at(&mut self, _: &[GpaRange], _: u64) -> Result<usize, Self::Error> {
            Err("no staging")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Flat;
    use super::*;
    use crate::queue::flags;
    use std::vec::Vec;

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;

    fn post(mem: &mut Flat, size: u16, idx: u16, heads: &[(u16, u16)]) {
        for &(slot, head) in heads {
            mem.put(AVAIL + 4 + 2 * u64::from(slot % size), &head.to_le_bytes());
        }
        mem.put(AVAIL + 2, &idx.to_le_bytes());
    }

    #[test]
    fn snapshot_then_publish_is_two_calls_and_wraps_the_used_ring() {
        let mut mem = Flat::new();
        let layout = Layout::new(4, DESC, AVAIL, USED).unwrap();
        for d in 0..4u16 {
            let desc = Desc::new(0x100 * u64::from(d), 8, 0, 0);
            mem.put(DESC + 16 * u64::from(d), desc.as_bytes());
        }
        let mut queue = DeviceQueue::new();
        // Three chains, then three more: the second batch wraps.
        for round in 0..2u16 {
            let base = 3 * round;
            let heads: Vec<(u16, u16)> = (0..3).map(|k| (base + k, (base + k) % 4)).collect();
            post(&mut mem, 4, base + 3, &heads);
            mem.calls = 0;
            let snap = Snapshot::take(&layout, &queue, &mut mem).unwrap();
            assert_eq!(snap.pending(), 3);
            assert!(snap.wants_interrupt());
            let used: Vec<UsedElem> = (0..3)
                .map(|k| {
                    let (head, chain) = snap.chain(k).unwrap();
                    assert_eq!(chain.readable()[0].gpa, 0x100 * u64::from(head));
                    UsedElem {
                        id: u32::from(head).into(),
                        len: 0.into(),
                    }
                })
                .collect();
            queue.publish(&layout, &[], &used, &mut mem).unwrap();
            assert_eq!(mem.calls, 2);
            assert_eq!(queue.used_idx(), base + 3);
            assert_eq!(queue.last_avail(), base + 3);
        }
        let used_idx = u16::from_le_bytes([mem.mem[USED as usize + 2], mem.mem[USED as usize + 3]]);
        assert_eq!(used_idx, 6);
        // Entries 3, 0, 1 were written by the wrapped second batch.
        let id = |slot: usize| mem.mem[USED as usize + 4 + 8 * slot];
        assert_eq!([id(3), id(0), id(1)], [3, 0, 1]);
    }

    #[test]
    fn no_notify_goes_out_with_the_used_index() {
        let mut mem = Flat::new();
        let layout = Layout::new(4, DESC, AVAIL, USED).unwrap();
        mem.put(DESC, Desc::new(0x100, 8, 0, 0).as_bytes());
        let mut queue = DeviceQueue::new();
        assert_eq!(queue.used_flags(), 0);
        queue.set_no_notify(true);
        let used = [UsedElem {
            id: 0.into(),
            len: 0.into(),
        }];
        for (round, on) in [(1u16, true), (2, false)] {
            queue.set_no_notify(on);
            post(&mut mem, 4, round, &[(round - 1, 0)]);
            mem.calls = 0;
            queue.publish(&layout, &[], &used, &mut mem).unwrap();
            assert_eq!(mem.calls, 1);
            let word =
                |at: u64| u16::from_le_bytes([mem.mem[at as usize], mem.mem[at as usize + 1]]);
            assert_eq!(word(USED), u16::from(on) * USED_F_NO_NOTIFY);
            assert_eq!(word(USED + 2), round);
        }
    }

    #[test]
    fn the_interrupt_flag_read_again_after_publishing() {
        let mut mem = Flat::new();
        let layout = Layout::new(4, DESC, AVAIL, USED).unwrap();
        let queue = DeviceQueue::new();
        // The driver set the flag when the snapshot was taken ...
        mem.put(AVAIL, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
        post(&mut mem, 4, 1, &[(0, 0)]);
        let snap = Snapshot::take(&layout, &queue, &mut mem).unwrap();
        assert!(!snap.wants_interrupt());
        mem.calls = 0;
        assert!(!queue.wants_interrupt_now(&layout, &mut mem));
        // ... and cleared it since: the check after publishing sees it.
        mem.put(AVAIL, &0u16.to_le_bytes());
        assert!(queue.wants_interrupt_now(&layout, &mut mem));
        assert_eq!(mem.calls, 2);
        // Unreadable: interrupt rather than risk a lost one.
        mem.refuse_above = AVAIL;
        assert!(queue.wants_interrupt_now(&layout, &mut mem));
    }

    #[test]
    fn no_interrupt_flag_and_index_jump() {
        let mut mem = Flat::new();
        let layout = Layout::new(4, DESC, AVAIL, USED).unwrap();
        mem.put(AVAIL, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
        post(&mut mem, 4, 1, &[(0, 0)]);
        let snap = Snapshot::take(&layout, &DeviceQueue::new(), &mut mem).unwrap();
        assert!(!snap.wants_interrupt());
        assert_eq!(snap.chain(1).err(), Some(QueueError::AvailIndexJump));
        post(&mut mem, 4, 5, &[]);
        assert_eq!(
            Snapshot::take(&layout, &DeviceQueue::new(), &mut mem).err(),
            Some(QueueError::AvailIndexJump)
        );
    }

    fn word(mem: &Flat, at: u64) -> u16 {
        u16::from_le_bytes([mem.mem[at as usize], mem.mem[at as usize + 1]])
    }

    /// The tests' queue of 4, with `VIRTIO_RING_F_EVENT_IDX`.
    fn event_idx_layout() -> Layout {
        Layout::new(4, DESC, AVAIL, USED)
            .unwrap()
            .with_event_idx(true)
    }

    fn one_used() -> [UsedElem; 1] {
        [UsedElem {
            id: 0.into(),
            len: 0.into(),
        }]
    }

    #[test]
    fn need_event_is_linux_vring_need_event() {
        // (u16)(new - event - 1) < (u16)(new - old), exhaustively near the
        // wrap against the plain-integer reading: event in [old, new).
        for old in [0xfff0u16, 0xfffe, 0xffff, 0, 1, 0x7fff, 0x8000] {
            for step in 0..20u16 {
                let new = old.wrapping_add(step);
                for d in 0..24u16 {
                    let event = old.wrapping_add(d).wrapping_sub(2);
                    let passed = (0..step).any(|k| old.wrapping_add(k) == event);
                    assert_eq!(need_event(event, new, old), passed, "{event} {new} {old}");
                }
            }
        }
    }

    #[test]
    fn event_idx_publication_carries_avail_event_in_the_same_call() {
        let mut mem = Flat::new();
        let layout = event_idx_layout();
        mem.put(DESC, Desc::new(0x100, 8, 0, 0).as_bytes());
        let mut queue = DeviceQueue::new();
        post(&mut mem, 4, 1, &[(0, 0)]);
        mem.calls = 0;
        queue.publish(&layout, &[], &one_used(), &mut mem).unwrap();
        assert_eq!(mem.calls, 1);
        assert_eq!(word(&mem, layout.avail_event_gpa()), 1);
        assert_eq!(word(&mem, USED + 2), 1);
        // The receive queue's "no notifications": one behind.
        queue.set_no_notify(true);
        post(&mut mem, 4, 2, &[(1, 0)]);
        queue.publish(&layout, &[], &one_used(), &mut mem).unwrap();
        assert_eq!(word(&mem, layout.avail_event_gpa()), 1);
        // Without the feature nothing is written past the used ring.
        let mut mem = Flat::new();
        let plain = Layout::new(4, DESC, AVAIL, USED).unwrap();
        post(&mut mem, 4, 1, &[(0, 0)]);
        DeviceQueue::new()
            .publish(&plain, &[], &one_used(), &mut mem)
            .unwrap();
        assert_eq!(word(&mem, plain.avail_event_gpa()), 0);
    }

    #[test]
    fn events_interrupt_once_per_used_event_and_find_what_came_since() {
        let mut mem = Flat::new();
        let layout = event_idx_layout();
        let mut queue = DeviceQueue::new();
        // The driver wants an interrupt at the first used entry.
        mem.put(layout.used_event_gpa(), &0u16.to_le_bytes());
        post(&mut mem, 4, 2, &[(0, 0), (1, 0)]);
        queue.take(2);
        mem.calls = 0;
        // Taken, none used: avail_event written (1 call), then one read.
        let e = queue.events(&layout, &mut mem);
        assert_eq!(e, Events::default());
        assert_eq!(mem.calls, 2);
        assert_eq!(word(&mem, layout.avail_event_gpa()), 2);
        queue
            .publish_used(&layout, &[], &one_used(), &mut mem)
            .unwrap();
        mem.calls = 0;
        // avail_event went with the publication: one call.
        assert!(queue.events(&layout, &mut mem).interrupt);
        assert_eq!(mem.calls, 1);
        // The driver has not moved used_event: no second interrupt.
        queue
            .publish_used(&layout, &[], &one_used(), &mut mem)
            .unwrap();
        assert!(!queue.events(&layout, &mut mem).interrupt);
        // It asks for the 4th used entry (index 3); the 3rd is not it.
        mem.put(layout.used_event_gpa(), &3u16.to_le_bytes());
        post(&mut mem, 4, 4, &[(2, 0), (3, 0)]);
        let e = queue.events(&layout, &mut mem);
        assert_eq!(
            e,
            Events {
                interrupt: false,
                more: true
            }
        );
        queue.take(2);
        queue
            .publish_used(&layout, &[], &one_used(), &mut mem)
            .unwrap();
        assert!(!queue.events(&layout, &mut mem).interrupt);
        queue
            .publish_used(&layout, &[], &one_used(), &mut mem)
            .unwrap();
        assert!(queue.events(&layout, &mut mem).interrupt);
        // A used_event set after the device passed it (the driver's race)
        // is seen on the next publication only if it lies in that one's
        // range: the driver re-checks the used index itself.
        // Unreadable rings: interrupt if anything was published.
        mem.refuse_above = AVAIL;
        assert!(!queue.events(&layout, &mut mem).interrupt);
    }

    #[test]
    fn the_used_event_is_read_after_the_publication() {
        // The driver re-enables interrupts (used_event = its last used
        // index) after the device's snapshot: the device must see it.
        let mut mem = Flat::new();
        let layout = event_idx_layout();
        let mut queue = DeviceQueue::new();
        mem.put(layout.used_event_gpa(), &0x8000u16.to_le_bytes());
        post(&mut mem, 4, 1, &[(0, 0)]);
        let _snapshot = Snapshot::take(&layout, &queue, &mut mem).unwrap();
        mem.put(layout.used_event_gpa(), &0u16.to_le_bytes());
        queue.publish(&layout, &[], &one_used(), &mut mem).unwrap();
        assert!(queue.events(&layout, &mut mem).interrupt);
    }

    #[test]
    fn event_indices_from_the_guest_are_only_compared() {
        // Any used_event and available index: no panic, and an index
        // beyond the queue shows as more (the snapshot then refuses it).
        let layout = event_idx_layout();
        for value in [0u16, 1, 3, 4, 0x7fff, 0x8000, 0xfffe, 0xffff] {
            let mut mem = Flat::new();
            mem.put(layout.used_event_gpa(), &value.to_le_bytes());
            mem.put(AVAIL + 2, &value.to_le_bytes());
            let mut queue = DeviceQueue::new();
            let e = queue.events(&layout, &mut mem);
            assert_eq!(e.more, value != 0);
            assert!(!e.interrupt);
        }
        // The layout check counts the event fields: an available ring
        // whose entries end at the top of the address space but whose
        // used_event would not is refused.
        let avail_top = Layout::new(4, DESC, u64::MAX - 13, USED);
        assert_eq!(avail_top.err(), Some(QueueError::Overflow));
    }

    #[test]
    fn a_loop_or_a_ring_out_of_reach_is_a_queue_error() {
        let mut mem = Flat::new();
        let layout = Layout::new(2, DESC, AVAIL, USED).unwrap();
        mem.put(DESC, Desc::new(0, 8, flags::NEXT, 1).as_bytes());
        mem.put(DESC + 16, Desc::new(0, 8, flags::NEXT, 0).as_bytes());
        post(&mut mem, 2, 1, &[(0, 0)]);
        let snap = Snapshot::take(&layout, &DeviceQueue::new(), &mut mem).unwrap();
        assert!(matches!(snap.chain(0), Err(QueueError::Chain(_))));
        mem.refuse_above = USED;
        let used = [UsedElem {
            id: 0.into(),
            len: 0.into(),
        }];
        let mut queue = DeviceQueue::new();
        assert_eq!(
            queue.publish(&layout, &[], &used, &mut mem),
            Err(QueueError::RingAccess)
        );
        assert_eq!(queue, DeviceQueue::new());
        mem.refuse_above = AVAIL;
        assert_eq!(
            Snapshot::take(&layout, &queue, &mut mem).err(),
            Some(QueueError::RingAccess)
        );
    }
}
