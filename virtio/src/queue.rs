// SPDX-License-Identifier: BSD-2-Clause
//! Split virtqueues (virtio 1.2, §2.7): where the parts of a queue live in
//! guest RAM, and descriptor-chain walking.
//!
//! A device here never walks the guest's live descriptor table: it copies
//! the table once per notification (one copy-service call) into a local
//! snapshot and walks that, so the guest cannot change a descriptor between
//! its check and its use. Every index is bounded by the queue size, every
//! chain by the queue size (which catches loops), and every `addr + len` is
//! checked.
//!
//! ```
//! use virtio::queue::{walk, Desc, Layout, flags};
//! let layout = Layout::new(4, 0x1000, 0x1100, 0x1200).unwrap();
//! assert_eq!(layout.used_elem_gpa(5), 0x1200 + 4 + 8 * 1);
//! let table = [
//!     Desc::new(0x8000, 16, flags::NEXT, 1),
//!     Desc::new(0x9000, 1, flags::WRITE, 0),
//!     Desc::new(0, 0, 0, 0),
//!     Desc::new(0, 0, 0, 0),
//! ];
//! let chain = walk(&table, 4, 0).unwrap();
//! assert_eq!((chain.readable_len(), chain.writable_len()), (16, 1));
//! // A loop: 0 -> 1 -> 0 ...
//! let looped = [Desc::new(0x8000, 16, flags::NEXT, 1), Desc::new(0x9000, 16, flags::NEXT, 0)];
//! assert!(walk(&looped, 2, 0).is_err());
//! ```

use core::fmt;

use guest_ram::GpaRange;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Largest queue the device offers. A power of two, so a queue of any
/// size up to it fits a 4 KiB descriptor snapshot (256 × 16 bytes). This
/// layer owns it (and [`Layout`]); the register file imports both, never
/// the other way round.
pub const QUEUE_SIZE_MAX: u16 = 256;

/// Descriptor flags.
pub mod flags {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (otherwise it reads it).
    pub const WRITE: u16 = 2;
    /// The buffer is a table of descriptors (`VIRTIO_F_INDIRECT_DESC`,
    /// which this device does not offer).
    pub const INDIRECT: u16 = 4;
}

/// One descriptor, as it is laid out in guest RAM (16 bytes, LE).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Desc {
    /// Buffer gpa.
    pub addr: U64,
    /// Buffer length.
    pub len: U32,
    /// [`flags`].
    pub flags: U16,
    /// Next descriptor, if `flags::NEXT`.
    pub next: U16,
}

impl Desc {
    /// A descriptor.
    pub fn new(addr: u64, len: u32, flags: u16, next: u16) -> Self {
        Desc {
            addr: addr.into(),
            len: len.into(),
            flags: flags.into(),
            next: next.into(),
        }
    }
}

/// One used-ring element (8 bytes, LE).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct UsedElem {
    /// Head index of the chain.
    pub id: U32,
    /// Bytes the device wrote into the chain's writable buffers.
    pub len: U32,
}

/// Why a queue's configuration or ring state is unusable. Each of these
/// makes the device report `DEVICE_NEEDS_RESET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Size zero, not a power of two, or above [`QUEUE_SIZE_MAX`].
    BadSize,
    /// A ring not aligned as §2.7 requires (16, 2 and 4 bytes).
    Misaligned,
    /// A ring whose end does not fit in 64 bits.
    Overflow,
    /// The available index ran more than a queue ahead of the device.
    AvailIndexJump,
    /// A ring could not be read or written (outside the device's window,
    /// not RAM).
    RingAccess,
    /// A descriptor chain is malformed.
    Chain(ChainError),
}

/// Why a descriptor chain is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// The head index is not below the queue size.
    HeadOutOfRange,
    /// A `next` index is not below the queue size.
    NextOutOfRange,
    /// More descriptors than the queue has: a loop, or a chain longer than
    /// the queue (§2.7.5.3.1 forbids both).
    TooLong,
    /// An indirect descriptor, which was not negotiated.
    Indirect,
    /// A device-readable descriptor after a device-writable one (§2.7.4.2).
    ReadableAfterWritable,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChainError::HeadOutOfRange => "head index out of range",
            ChainError::NextOutOfRange => "next index out of range",
            ChainError::TooLong => "descriptor loop or chain longer than the queue",
            ChainError::Indirect => "indirect descriptor not negotiated",
            ChainError::ReadableAfterWritable => "readable descriptor after a writable one",
        })
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::BadSize => {
                f.write_str("queue size is not a power of two up to the maximum")
            }
            QueueError::Misaligned => f.write_str("queue ring is misaligned"),
            QueueError::Overflow => f.write_str("queue ring end overflows"),
            QueueError::AvailIndexJump => {
                f.write_str("available index ran ahead by more than the queue size")
            }
            QueueError::RingAccess => f.write_str("queue ring is not accessible"),
            QueueError::Chain(e) => write!(f, "descriptor chain: {e}"),
        }
    }
}

/// Where a split virtqueue of `size` entries lives in guest RAM, checked.
///
/// It also says whether the driver negotiated `VIRTIO_RING_F_EVENT_IDX`
/// ([`with_event_idx`](Self::with_event_idx)): that changes what the
/// device reads and writes in the rings (the available ring's
/// `used_event` and the used ring's `avail_event`, each just past its
/// ring's entries), not where they lie: the checked lengths always
/// include those two bytes (§2.7: `6 + 2 × size` and `6 + 8 × size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
}

impl Layout {
    /// Checks a queue as the driver configured it: size a power of two up
    /// to [`QUEUE_SIZE_MAX`], descriptor table 16-aligned, available ring
    /// 2-aligned, used ring 4-aligned, no part's end overflowing.
    pub fn new(size: u16, desc: u64, avail: u64, used: u64) -> Result<Self, QueueError> {
        if size == 0 || !size.is_power_of_two() || size > QUEUE_SIZE_MAX {
            return Err(QueueError::BadSize);
        }
        if desc % 16 != 0 || avail % 2 != 0 || used % 4 != 0 {
            return Err(QueueError::Misaligned);
        }
        let n = u64::from(size);
        let parts = [(desc, 16 * n), (avail, 6 + 2 * n), (used, 6 + 8 * n)];
        if parts
            .iter()
            .any(|(gpa, len)| gpa.checked_add(*len).is_none())
        {
            return Err(QueueError::Overflow);
        }
        Ok(Layout {
            size,
            desc,
            avail,
            used,
            event_idx: false,
        })
    }

    /// The same queue, with `VIRTIO_RING_F_EVENT_IDX` negotiated (`on`)
    /// or not.
    pub fn with_event_idx(mut self, on: bool) -> Self {
        self.event_idx = on;
        self
    }

    /// Whether `VIRTIO_RING_F_EVENT_IDX` was negotiated: the rings'
    /// `flags` words mean nothing, `used_event` and `avail_event` do
    /// (§2.7.7, §2.7.10).
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// The available ring's `used_event` field (after `ring[size]`):
    /// with `VIRTIO_RING_F_EVENT_IDX`, the used index past which the
    /// driver wants an interrupt.
    pub fn used_event_gpa(&self) -> u64 {
        self.avail + 4 + 2 * u64::from(self.size)
    }

    /// The used ring's `avail_event` field (after `ring[size]`): with
    /// `VIRTIO_RING_F_EVENT_IDX`, the available index past which the
    /// device wants a notification.
    pub fn avail_event_gpa(&self) -> u64 {
        self.used + 4 + 8 * u64::from(self.size)
    }

    /// Queue size (entries).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The descriptor table.
    pub fn desc_table(&self) -> GpaRange {
        GpaRange {
            gpa: self.desc,
            len: 16 * u64::from(self.size),
        }
    }

    /// The available ring's `flags` field (its first bytes; `idx`
    /// follows).
    pub fn avail_flags_gpa(&self) -> u64 {
        self.avail
    }

    /// The available ring's `idx` field.
    pub fn avail_idx_gpa(&self) -> u64 {
        self.avail + 2
    }

    /// The available ring's entries (`ring[0..size]`).
    pub fn avail_ring(&self) -> GpaRange {
        GpaRange {
            gpa: self.avail + 4,
            len: 2 * u64::from(self.size),
        }
    }

    /// The used ring's `flags` field (its first bytes; `idx` follows).
    pub fn used_flags_gpa(&self) -> u64 {
        self.used
    }

    /// The used ring's `idx` field.
    pub fn used_idx_gpa(&self) -> u64 {
        self.used + 2
    }

    /// The used-ring element that free-running index `i` lands in.
    pub fn used_elem_gpa(&self, i: u16) -> u64 {
        self.used + 4 + 8 * u64::from(i % self.size)
    }
}

/// Most segments in one chain: a chain is never longer than its queue.
pub const MAX_CHAIN: usize = QUEUE_SIZE_MAX as usize;

/// A walked descriptor chain: its device-readable buffers, then its
/// device-writable ones. Zero-length descriptors are dropped.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    segments: heapless::Vec<GpaRange, MAX_CHAIN>,
    readable: usize,
    readable_len: u64,
    writable_len: u64,
    last: Option<GpaRange>,
}

impl Chain {
    /// The device-readable buffers, in order.
    pub fn readable(&self) -> &[GpaRange] {
        self.segments.get(..self.readable).unwrap_or(&[])
    }

    /// The device-writable buffers, in order.
    pub fn writable(&self) -> &[GpaRange] {
        self.segments.get(self.readable..).unwrap_or(&[])
    }

    /// Total device-readable bytes (saturating: a hostile chain can claim
    /// more than 2^64 bytes in all, and such a request fails later).
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Total device-writable bytes (saturating).
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// The chain's final descriptor, if it is device-writable and not
    /// empty: where a device that answers in the last byte (virtio-blk's
    /// status) may write. A final descriptor of length 0, or a readable
    /// one, gives `None` (zero-length descriptors are dropped from the
    /// segments, so the last segment may belong to an earlier one).
    pub fn last_writable(&self) -> Option<GpaRange> {
        self.last
    }
}

/// Walks the chain starting at `head` through `table` (a snapshot of a
/// queue of `size` entries). `O(chain length)`, at most `size` steps.
///
/// Each descriptor is checked as it is reached (indirect flag, then
/// readable-after-writable), and a loop is reported when the walk would
/// take more steps than the queue has entries, so every input has one
/// answer: the first fault along the chain.
pub fn walk(table: &[Desc], size: u16, head: u16) -> Result<Chain, ChainError> {
    let size = usize::from(size).min(table.len());
    if usize::from(head) >= size {
        return Err(ChainError::HeadOutOfRange);
    }
    let mut chain = Chain::default();
    let mut index = usize::from(head);
    for _ in 0..size {
        let Some(&desc) = table.get(index) else {
            return Err(ChainError::NextOutOfRange);
        };
        let flags = desc.flags.get();
        if flags & flags::INDIRECT != 0 {
            return Err(ChainError::Indirect);
        }
        let len = u64::from(desc.len.get());
        let writable = flags & flags::WRITE != 0;
        if !writable && chain.readable < chain.segments.len() {
            return Err(ChainError::ReadableAfterWritable);
        }
        if len != 0 {
            let segment = GpaRange {
                gpa: desc.addr.get(),
                len,
            };
            // Cannot fail: at most `size <= MAX_CHAIN` pushes.
            let _ = chain.segments.push(segment);
            if writable {
                chain.writable_len = chain.writable_len.saturating_add(len);
            } else {
                chain.readable += 1;
                chain.readable_len = chain.readable_len.saturating_add(len);
            }
        }
        if flags & flags::NEXT == 0 {
            chain.last = (writable && len != 0).then_some(GpaRange {
                gpa: desc.addr.get(),
                len,
            });
            return Ok(chain);
        }
        index = usize::from(desc.next.get());
        if index >= size {
            return Err(ChainError::NextOutOfRange);
        }
    }
    Err(ChainError::TooLong)
}

/// `out` is full, or a sub-range's start overflows (a hostile segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubRangeError;

/// Appends to `out` the part `[skip, skip + take)` of the byte stream that
/// `segments` describe, as sub-ranges. Returns how many bytes it covered
/// (less than `take` if the segments end first). `O(segments)`.
///
/// ```
/// use guest_ram::GpaRange;
/// use virtio::queue::sub_ranges;
/// let segs = [GpaRange { gpa: 0x100, len: 16 }, GpaRange { gpa: 0x200, len: 32 }];
/// let mut out = heapless::Vec::<GpaRange, 4>::new();
/// assert_eq!(sub_ranges(&segs, 8, 16, &mut out), Ok(16));
/// assert_eq!(out, [GpaRange { gpa: 0x108, len: 8 }, GpaRange { gpa: 0x200, len: 8 }]);
/// ```
pub fn sub_ranges<const N: usize>(
    segments: &[GpaRange],
    mut skip: u64,
    take: u64,
    out: &mut heapless::Vec<GpaRange, N>,
) -> Result<u64, SubRangeError> {
    let mut left = take;
    for s in segments {
        if left == 0 {
            break;
        }
        if skip >= s.len {
            skip -= s.len;
            continue;
        }
        let n = (s.len - skip).min(left);
        let gpa = s.gpa.checked_add(skip).ok_or(SubRangeError)?;
        out.push(GpaRange { gpa, len: n })
            .map_err(|_| SubRangeError)?;
        left -= n;
        skip = 0;
    }
    Ok(take - left)
}
