// SPDX-License-Identifier: BSD-2-Clause
//! The page a VMM and a device backend PD share for one virtio device.
//!
//! The VMM owns the transport (it traps the guest's register accesses), the
//! backend PD owns the queue processing, so the queue configuration has to
//! cross. It does so through this page rather than through a call on every
//! notification: the VMM writes every queue's [`QueueState`] whenever the
//! configuration changes and then signals; the backend writes
//! [`BackendState`] and signals back. Each side writes only its own part,
//! and both copy a whole struct out before looking at it (never a
//! reference into shared memory), so a torn read is at worst a stale
//! generation, caught on the next signal (the VMM signals after every
//! publication).
//!
//! The page, little-endian, [`PAGE_LEN`] bytes in all:
//!
//! | offset | what | written by |
//! |---|---|---|
//! | [`queue_offset`]`(n)` = `n` × [`QUEUE_STATE_LEN`] (40) | queue `n`'s [`QueueState`], `n` < [`MAX_QUEUES`] | VMM |
//! | [`BACKEND_OFFSET`] (the first 64-byte line after the queues) | [`BackendState`] | backend |
//!
//! The backend's part has a cache line of its own, so the two writers
//! never share one.
//!
//! ```
//! # use core::ptr::NonNull;
//! use guest_ram::SharedBuffer;
//! use virtio::shared::{self, QueueState};
//! let mut page = [0u8; 4096];
//! let buffer = unsafe { SharedBuffer::new(NonNull::new(page.as_mut_ptr()).unwrap(), 4096) };
//! let state = QueueState::new(3, true, 128, 0x1000, 0x2000, 0x3000);
//! shared::publish_queue_n(&buffer, 1, &state).unwrap();
//! assert_eq!(shared::read_queue_n(&buffer, 1).unwrap(), state);
//! assert_ne!(shared::read_queue(&buffer).unwrap(), state);
//! ```

use guest_ram::{Error, SharedBuffer};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::mmio::MAX_QUEUES;
use crate::queue::{Layout, QueueError};

/// The queue as the driver configured it (VMM → backend).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct QueueState {
    /// The device's generation: bumped by the VMM on every change of any
    /// queue (reset, a queue ready or not). Every queue of one
    /// publication carries the same one; the backend reports against it.
    pub generation: U32,
    /// The generation in which this queue's configuration last changed:
    /// the backend starts the queue afresh (indices at 0) when it does,
    /// and only then, so setting up one queue does not restart another.
    pub configured: U32,
    /// 1 if the queue is ready and the driver running.
    pub ready: U16,
    /// Queue size.
    pub size: U16,
    /// Descriptor table gpa.
    pub desc: U64,
    /// Available ring gpa.
    pub avail: U64,
    /// Used ring gpa.
    pub used: U64,
    /// Ring features the driver negotiated that change how the backend
    /// works the rings: [`RING_EVENT_IDX`] or 0. Pads the record to a
    /// multiple of 8 bytes.
    pub ring_features: U32,
}

/// [`QueueState::ring_features`] bit: `VIRTIO_RING_F_EVENT_IDX` was
/// negotiated (the backend reads `used_event`, writes `avail_event`).
pub const RING_EVENT_IDX: u32 = 1;

impl QueueState {
    /// A state record, configured in `generation` (see
    /// [`with_configured`](Self::with_configured)).
    pub fn new(generation: u32, ready: bool, size: u16, desc: u64, avail: u64, used: u64) -> Self {
        QueueState {
            generation: generation.into(),
            configured: generation.into(),
            ready: u16::from(ready).into(),
            size: size.into(),
            desc: desc.into(),
            avail: avail.into(),
            used: used.into(),
            ring_features: 0.into(),
        }
    }

    /// The same record, with `VIRTIO_RING_F_EVENT_IDX` negotiated (`on`)
    /// or not.
    pub fn with_event_idx(mut self, on: bool) -> Self {
        let rest = self.ring_features.get() & !RING_EVENT_IDX;
        self.ring_features = (rest | if on { RING_EVENT_IDX } else { 0 }).into();
        self
    }

    /// Whether the record says `VIRTIO_RING_F_EVENT_IDX` was negotiated.
    pub fn event_idx(&self) -> bool {
        self.ring_features.get() & RING_EVENT_IDX != 0
    }

    /// The same record, saying the queue was last configured in
    /// generation `configured`.
    pub fn with_configured(mut self, configured: u32) -> Self {
        self.configured = configured.into();
        self
    }

    /// The checked layout, if the queue is ready, with
    /// [`event_idx`](Self::event_idx) carried over
    /// ([`Layout::with_event_idx`]).
    pub fn layout(&self) -> Option<Result<Layout, QueueError>> {
        (self.ready.get() != 0).then(|| {
            Layout::new(
                self.size.get(),
                self.desc.get(),
                self.avail.get(),
                self.used.get(),
            )
            .map(|layout| layout.with_event_idx(self.event_idx()))
        })
    }
}

/// What the backend reports (backend → VMM).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(C)]
pub struct BackendState {
    /// The [`QueueState::generation`] this report is about.
    pub generation: U32,
    /// 1 if the queue broke and the device needs a reset.
    pub needs_reset: U32,
    /// Chains the backend has used (requests served), for logs.
    pub served: U64,
    /// A device-specific value the VMM puts in the configuration space
    /// (`DeviceType::set_backend_value`): virtio-blk's capacity in 512-byte
    /// sectors (the backend owns the disk, so the VMM learns its size here
    /// rather than from a constant); 0 for the console.
    pub capacity: U64,
    /// The disk's block size in bytes ([`Disk::block_size`](crate::blk::Disk::block_size)),
    /// offered to the guest as `blk_size`; 0 means 512.
    pub block_size: U32,
    /// The latest generation the backend has read
    /// ([`BackendPage::read`](crate::device::BackendPage::read) writes it
    /// alone, [`publish_seen`], as soon as it finds a new one). The VMM
    /// refuses the backend's copy calls after a device reset until this
    /// reaches the reset's generation
    /// ([`Frontend::backend_may_copy`](crate::device::Frontend::backend_may_copy)):
    /// what the backend knew of the old rings must not be served into
    /// memory that is now the new driver's.
    pub seen: U32,
}

/// Bytes of one [`QueueState`] in the page.
pub const QUEUE_STATE_LEN: usize = core::mem::size_of::<QueueState>();
/// Where queue 0's [`QueueState`] lives in the page.
pub const QUEUE_OFFSET: usize = 0;
/// Where [`BackendState`] lives in the page: the first 64-byte line after
/// [`MAX_QUEUES`] queue states, so it has its cache line to itself.
pub const BACKEND_OFFSET: usize = (QUEUE_OFFSET + MAX_QUEUES * QUEUE_STATE_LEN).div_ceil(64) * 64;
/// The smallest page that holds every part.
pub const PAGE_LEN: usize = BACKEND_OFFSET + core::mem::size_of::<BackendState>();

// Checked when the crate builds: the records are 8-byte multiples, the
// queues end before the backend's line, and everything fits a 4 KiB page.
const _: () = assert!(
    QUEUE_STATE_LEN == 40 && BACKEND_OFFSET % 64 == 0 && PAGE_LEN <= 4096,
    "shared page layout"
);

/// Where queue `n`'s [`QueueState`] lives (meaningful for `n` below
/// [`MAX_QUEUES`]; the accessors refuse others).
pub const fn queue_offset(n: usize) -> usize {
    QUEUE_OFFSET + n * QUEUE_STATE_LEN
}

fn read<T: FromBytes + IntoBytes>(page: &SharedBuffer, offset: usize) -> Result<T, Error> {
    let mut value = T::new_zeroed();
    page.read(offset, value.as_mut_bytes())?;
    Ok(value)
}

/// The VMM publishes queue 0's state.
pub fn publish_queue(page: &SharedBuffer, state: &QueueState) -> Result<(), Error> {
    publish_queue_n(page, 0, state)
}

/// The backend reads queue 0's state.
pub fn read_queue(page: &SharedBuffer) -> Result<QueueState, Error> {
    read_queue_n(page, 0)
}

/// The VMM publishes queue `n`'s state; `n` must be below [`MAX_QUEUES`].
pub fn publish_queue_n(page: &SharedBuffer, n: usize, state: &QueueState) -> Result<(), Error> {
    if n >= MAX_QUEUES {
        return Err(Error::OutsideBuffer);
    }
    page.write(queue_offset(n), state.as_bytes())
}

/// The backend reads queue `n`'s state; `n` must be below [`MAX_QUEUES`].
pub fn read_queue_n(page: &SharedBuffer, n: usize) -> Result<QueueState, Error> {
    if n >= MAX_QUEUES {
        return Err(Error::OutsideBuffer);
    }
    read(page, queue_offset(n))
}

/// The backend publishes its state.
pub fn publish_backend(page: &SharedBuffer, state: &BackendState) -> Result<(), Error> {
    page.write(BACKEND_OFFSET, state.as_bytes())
}

/// Where [`BackendState::seen`] lives in the page.
pub const SEEN_OFFSET: usize = BACKEND_OFFSET + core::mem::offset_of!(BackendState, seen);

/// The backend says it has read generation `generation` (only
/// [`BackendState::seen`] is written: the report it made stays as it
/// was, about the generation it was about).
pub fn publish_seen(page: &SharedBuffer, generation: u32) -> Result<(), Error> {
    page.write(SEEN_OFFSET, &generation.to_le_bytes())
}

/// The VMM reads the backend's state.
pub fn read_backend(page: &SharedBuffer) -> Result<BackendState, Error> {
    read(page, BACKEND_OFFSET)
}
