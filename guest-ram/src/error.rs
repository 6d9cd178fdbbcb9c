// SPDX-License-Identifier: BSD-2-Clause
//! The core layer's error type.

use core::fmt;

/// Why a guest-RAM operation was refused.
///
/// Every operation validates its whole input before it changes anything, so
/// an `Err` always means "nothing happened". Checks run in a fixed order
/// (range shape first, then backing/RAM, then allocation state, then
/// capacity), so each input has exactly one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// A range of length zero.
    ZeroLength,
    /// `gpa + len` (or `vaddr + len`, or `offset + len`) does not fit the
    /// address type.
    Overflow,
    /// An alignment that is zero or not a power of two.
    BadAlignment,
    /// A backing region that overlaps another one, in gpa or in vaddr.
    BackingOverlap,
    /// Part of the range is not covered by any pre-mapped backing region.
    NotBacked,
    /// Part of the range is already registered as RAM.
    AlreadyRam,
    /// Part of the range is not registered RAM.
    NotRam,
    /// Part of the range is already allocated.
    AlreadyAllocated,
    /// Part of the range is free, so it cannot be freed.
    NotAllocated,
    /// No free range (or unregistered backed range) is large enough.
    NoSpace,
    /// The range is RAM but crosses from one backing region into another
    /// that does not follow it directly in the VMM's address space, so it
    /// has no single vaddr ([`GuestRam::translate`](crate::GuestRam::translate);
    /// regions adjacent in both gpa and vaddr translate as one).
    NotContiguous,
    /// A shared-buffer range (`offset + len`) lies outside the buffer.
    OutsideBuffer,
    /// A fixed-capacity table (backing regions or RAM extents) is full.
    CapacityExceeded,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::ZeroLength => "zero-length range",
            Error::Overflow => "range end overflows the address space",
            Error::BadAlignment => "alignment is zero or not a power of two",
            Error::BackingOverlap => "backing regions overlap",
            Error::NotBacked => "range is not backed by a pre-mapped region",
            Error::AlreadyRam => "range overlaps registered RAM",
            Error::NotRam => "range is not entirely registered RAM",
            Error::AlreadyAllocated => "range overlaps allocated RAM",
            Error::NotAllocated => "range is not entirely allocated",
            Error::NoSpace => "no free range is large enough",
            Error::NotContiguous => "range is not contiguous in the VMM address space",
            Error::OutsideBuffer => "range lies outside the shared buffer",
            Error::CapacityExceeded => "bookkeeping table is full",
        })
    }
}

impl core::error::Error for Error {}
