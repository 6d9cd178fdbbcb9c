// SPDX-License-Identifier: BSD-2-Clause
//! The page a VMM and a device backend PD share for one virtio device.
//!
//! The VMM owns the transport (it traps the guest's register accesses), the
//! backend PD owns the queue processing, so the queue configuration has to
//! cross. It does so through this page rather than through a call on every
//! notification: the VMM writes [`QueueState`] whenever the configuration
//! changes and then signals; the backend writes [`BackendState`] and
//! signals back. Each side writes only its own half, and both copy a
//! whole struct out before looking at it (never a reference into shared
//! memory), so a torn read is at worst a stale generation, caught on the
//! next signal.
//!
//! ```
//! # use core::ptr::NonNull;
//! use guest_ram::SharedBuffer;
//! use virtio::shared::{self, QueueState};
//! let mut page = [0u8; 4096];
//! let buffer = unsafe { SharedBuffer::new(NonNull::new(page.as_mut_ptr()).unwrap(), 4096) };
//! let state = QueueState::new(3, true, 128, 0x1000, 0x2000, 0x3000);
//! shared::publish_queue(&buffer, &state).unwrap();
//! assert_eq!(shared::read_queue(&buffer).unwrap(), state);
//! ```

use guest_ram::{Error, SharedBuffer};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::queue::{Layout, QueueError};

/// The queue as the driver configured it (VMM → backend).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct QueueState {
    /// Bumped by the VMM on every change (reset, queue ready or not).
    pub generation: U32,
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
}

impl QueueState {
    /// A state record.
    pub fn new(generation: u32, ready: bool, size: u16, desc: u64, avail: u64, used: u64) -> Self {
        QueueState {
            generation: generation.into(),
            ready: u16::from(ready).into(),
            size: size.into(),
            desc: desc.into(),
            avail: avail.into(),
            used: used.into(),
        }
    }

    /// The checked layout, if the queue is ready.
    pub fn layout(&self) -> Option<Result<Layout, QueueError>> {
        (self.ready.get() != 0).then(|| {
            Layout::new(
                self.size.get(),
                self.desc.get(),
                self.avail.get(),
                self.used.get(),
            )
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
    /// Requests served in this generation.
    pub served: U64,
    /// The disk's capacity in 512-byte sectors: the backend owns the disk,
    /// so the VMM learns its size here rather than from a constant.
    pub capacity: U64,
    /// The disk's block size in bytes ([`Disk::block_size`](crate::blk::Disk::block_size)),
    /// offered to the guest as `blk_size`; 0 means 512.
    pub block_size: U32,
    /// Reserved.
    pub reserved: U32,
}

/// Where [`QueueState`] lives in the page.
pub const QUEUE_OFFSET: usize = 0;
/// Where [`BackendState`] lives in the page (its own cache line).
pub const BACKEND_OFFSET: usize = 64;
/// The smallest page that holds both.
pub const PAGE_LEN: usize = BACKEND_OFFSET + core::mem::size_of::<BackendState>();

fn read<T: FromBytes + IntoBytes>(page: &SharedBuffer, offset: usize) -> Result<T, Error> {
    let mut value = T::new_zeroed();
    page.read(offset, value.as_mut_bytes())?;
    Ok(value)
}

/// The VMM publishes the queue state.
pub fn publish_queue(page: &SharedBuffer, state: &QueueState) -> Result<(), Error> {
    page.write(QUEUE_OFFSET, state.as_bytes())
}

/// The backend reads the queue state.
pub fn read_queue(page: &SharedBuffer) -> Result<QueueState, Error> {
    read(page, QUEUE_OFFSET)
}

/// The backend publishes its state.
pub fn publish_backend(page: &SharedBuffer, state: &BackendState) -> Result<(), Error> {
    page.write(BACKEND_OFFSET, state.as_bytes())
}

/// The VMM reads the backend's state.
pub fn read_backend(page: &SharedBuffer) -> Result<BackendState, Error> {
    read(page, BACKEND_OFFSET)
}
