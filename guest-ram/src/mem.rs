// SPDX-License-Identifier: BSD-2-Clause
//! The only module that touches memory through raw pointers.
//!
//! Guest RAM is shared with a running guest, and a client's shared buffer is
//! shared with the client PD: either may change at any moment, so no Rust
//! reference (`&[u8]`, `&mut [u8]`) into guest RAM is ever created, and
//! into a shared buffer only one, by [`shared_slice`]: the client's view of
//! its own buffer in
//! [`Client::read_in_place`](crate::client::Client::read_in_place), at a
//! time when the VMM cannot write it (it writes only during the client's
//! call, and the slice borrows the client). Copies
//! instead go through raw pointers with [`core::ptr::copy`], which reads and
//! writes each byte exactly once and promises nothing about the values it
//! sees. A concurrent writer can make a copy observe a mix of old and new
//! bytes (a torn read), exactly like DMA would: the protocols on top (virtio
//! rings and the like) already order such accesses with their own barriers.
//!
//! `copy` (memmove) rather than `copy_nonoverlapping` is used so that even a
//! misconfigured system, where a client buffer overlaps guest RAM, cannot
//! trigger undefined behaviour here.
//!
//! The pointers that reach this module come from [`MappedRegion`] and
//! [`SharedBuffer`], whose constructors are `unsafe` and carry the
//! obligation that the memory is mapped and stays mapped. Every offset is
//! checked against those bounds by the callers before it gets here.
//!
//! [`MappedRegion`]: crate::MappedRegion
//! [`SharedBuffer`]: crate::SharedBuffer
#![allow(
    unsafe_code,
    reason = "the one module that dereferences raw pointers into guest RAM and shared buffers"
)]

use core::ptr::NonNull;

/// `base + offset` as a pointer, without dereferencing it.
///
/// Uses `wrapping_add`, which is safe; callers only pass offsets they have
/// checked to lie inside the mapping that `base` starts.
#[inline]
pub(crate) fn at(base: NonNull<u8>, offset: u64) -> *mut u8 {
    base.as_ptr().wrapping_add(offset as usize)
}

/// Copies `len` bytes from the mapped memory at `src` into `dst`.
///
/// # Safety
/// `src..src + dst.len()` lies inside one mapping promised by a
/// [`MappedRegion`](crate::MappedRegion) or [`SharedBuffer`](crate::SharedBuffer).
#[inline]
pub(crate) unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller guarantees `src` is valid for `dst.len()` reads;
    // `dst` is a live exclusive slice, so it is valid for writes. `copy`
    // allows the two to overlap.
    unsafe { core::ptr::copy(src, dst.as_mut_ptr(), dst.len()) }
}

/// Copies `src` into the mapped memory at `dst`.
///
/// # Safety
/// `dst..dst + src.len()` lies inside one mapping promised by a
/// [`MappedRegion`](crate::MappedRegion) or [`SharedBuffer`](crate::SharedBuffer).
#[inline]
pub(crate) unsafe fn copy_in(src: &[u8], dst: *mut u8) {
    // SAFETY: `src` is a live slice, valid for reads; the caller guarantees
    // `dst` is valid for `src.len()` writes. `copy` allows overlap.
    unsafe { core::ptr::copy(src.as_ptr(), dst, src.len()) }
}

/// Copies `len` bytes between two mappings.
///
/// # Safety
/// Both `src..src + len` and `dst..dst + len` lie inside mappings promised by
/// a [`MappedRegion`](crate::MappedRegion) or [`SharedBuffer`](crate::SharedBuffer).
#[inline]
pub(crate) unsafe fn copy_between(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller guarantees both ranges are mapped and valid for
    // `len` bytes; `copy` allows them to overlap.
    unsafe { core::ptr::copy(src, dst, len) }
}

/// Sets `len` bytes of the mapped memory at `dst` to `byte`.
///
/// # Safety
/// `dst..dst + len` lies inside one mapping promised by a
/// [`MappedRegion`](crate::MappedRegion) or [`SharedBuffer`](crate::SharedBuffer).
#[inline]
pub(crate) unsafe fn fill(dst: *mut u8, byte: u8, len: usize) {
    // SAFETY: the caller guarantees `dst` is valid for `len` writes.
    unsafe { core::ptr::write_bytes(dst, byte, len) }
}

/// Views `len` bytes of a shared buffer as a slice.
///
/// # Safety
/// `base..base + len` lies inside the mapping of a
/// [`SharedBuffer`](crate::SharedBuffer), and nothing writes to those bytes
/// for `'a`. The client uses this for its own buffer, which the VMM only
/// writes while the client is blocked in a PPC; holding `&mut` on the client
/// for `'a` rules out a PPC during that time.
#[inline]
pub(crate) unsafe fn shared_slice<'a>(base: NonNull<u8>, len: usize) -> &'a [u8] {
    // SAFETY: see the function's contract.
    unsafe { core::slice::from_raw_parts(base.as_ptr(), len) }
}
