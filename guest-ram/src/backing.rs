// SPDX-License-Identifier: BSD-2-Clause
//! Descriptions of memory that is mapped into the VMM PD at build time,
//! with the access the mapping allows in their type ([`ReadOnly`] or
//! [`ReadWrite`]), so that a read-only mapping cannot be written through.
#![allow(
    unsafe_code,
    reason = "unsafe constructors carry the mapping obligation; Send for address ranges; copies through mem over checked ranges"
)]

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::{mem, Error};

mod sealed {
    pub trait Sealed {}
}

/// How a mapping may be accessed: [`ReadOnly`] or [`ReadWrite`] (the way
/// Tock's `ReadOnlyProcessBuffer`/`ReadWriteProcessBuffer` and rust-sel4's
/// `SharedMemoryRef<_, _, ReadOnly>` put it in the type).
pub trait Access: sealed::Sealed + Copy + core::fmt::Debug + Eq {}

/// The mapping may only be read (`perms="r"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadOnly;

/// The mapping may be read and written (`perms="rw"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadWrite;

impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for ReadWrite {}
impl Access for ReadOnly {}
impl Access for ReadWrite {}

/// Which way a copy moves bytes, for callers that choose at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Guest RAM → buffer (a read of the guest).
    FromGuest,
    /// Buffer → guest RAM (a write of the guest).
    ToGuest,
}

/// A half-open range of guest-physical addresses, `[gpa, gpa + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GpaRange {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
}

impl GpaRange {
    /// Checks the range's shape: non-empty and `gpa + len` fits in `u64`.
    /// Returns the exclusive end.
    ///
    /// ```
    /// use guest_ram::{Error, GpaRange};
    /// assert_eq!(GpaRange { gpa: 0x1000, len: 0x10 }.end(), Ok(0x1010));
    /// assert_eq!(GpaRange { gpa: 0x1000, len: 0 }.end(), Err(Error::ZeroLength));
    /// assert_eq!(GpaRange { gpa: u64::MAX, len: 1 }.end(), Err(Error::Overflow));
    /// ```
    pub fn end(&self) -> Result<u64, Error> {
        if self.len == 0 {
            return Err(Error::ZeroLength);
        }
        self.gpa.checked_add(self.len).ok_or(Error::Overflow)
    }
}

/// One pre-mapped piece of guest RAM backing: `len` bytes of guest-physical
/// space starting at `gpa`, mapped into the VMM PD at `vaddr`.
///
/// In a Microkit system this is a `<memory_region>` of `system.xml`, mapped
/// into the VMM PD with `setvar_vaddr` (the VMM learns `vaddr` from that
/// variable) and into the guest at `gpa`. [`GuestRam`](crate::GuestRam)
/// takes read-write regions; a PD that maps guest RAM read-only (as a
/// device that only inspects the guest would) describes it with
/// [`new_read_only`](MappedRegion::new_read_only) and can only
/// [`read`](MappedRegion::read) it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRegion<A: Access = ReadWrite> {
    gpa: u64,
    vaddr: NonNull<u8>,
    len: u64,
    access: PhantomData<A>,
}

// SAFETY: a `MappedRegion` is an address range of a static mapping, not
// owned data; which thread uses it does not matter. All access goes through
// `mem`, which never creates references into it.
unsafe impl<A: Access> Send for MappedRegion<A> {}

impl MappedRegion<ReadWrite> {
    /// Describes `len` bytes mapped read-write at `vaddr` that the guest
    /// sees at `gpa`.
    ///
    /// Shape checks (zero length, overflow of `gpa + len` or
    /// `vaddr + len`, `len > isize::MAX`) happen when the region is handed to
    /// [`GuestRam::new`](crate::GuestRam::new), which reports them as errors.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be mapped readable and writable in this
    /// address space for as long as this value (or a copy, or a
    /// [`GuestRam`](crate::GuestRam) built from it) is used, and nothing may
    /// hold a Rust reference into it. Microkit mappings declared in
    /// `system.xml` with `perms="rw"` satisfy this for the life of the PD.
    pub const unsafe fn new(gpa: u64, vaddr: NonNull<u8>, len: u64) -> Self {
        Self {
            gpa,
            vaddr,
            len,
            access: PhantomData,
        }
    }
}

impl MappedRegion<ReadOnly> {
    /// Describes `len` bytes mapped read-only at `vaddr` that the guest sees
    /// at `gpa`.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be mapped readable for as long as this
    /// value (or a copy) is used, `vaddr + len` must not overflow, and
    /// nothing may hold a Rust reference into it (`perms="r"` mappings in
    /// `system.xml` satisfy this for the life of the PD).
    pub const unsafe fn new_read_only(gpa: u64, vaddr: NonNull<u8>, len: u64) -> Self {
        Self {
            gpa,
            vaddr,
            len,
            access: PhantomData,
        }
    }
}

impl<A: Access> MappedRegion<A> {
    /// Copies the bytes at `gpa` into `dst`; the whole range must lie in
    /// the region.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// use guest_ram::{Error, MappedRegion};
    /// let mut memory = [7u8; 16];
    /// let view = unsafe {
    ///     MappedRegion::new_read_only(0x1000, NonNull::new(memory.as_mut_ptr()).unwrap(), 16)
    /// };
    /// let mut out = [0u8; 4];
    /// view.read(0x100c, &mut out).unwrap();
    /// assert_eq!(out, [7; 4]);
    /// assert_eq!(view.read(0x100e, &mut out), Err(Error::NotBacked));
    /// ```
    pub fn read(&self, gpa: u64, dst: &mut [u8]) -> Result<(), Error> {
        let len = u64::try_from(dst.len()).map_err(|_| Error::Overflow)?;
        let end = gpa.checked_add(len).ok_or(Error::Overflow)?;
        let region_end = self.gpa.checked_add(self.len).ok_or(Error::Overflow)?;
        if gpa < self.gpa || end > region_end {
            return Err(Error::NotBacked);
        }
        // SAFETY: `[gpa, end)` lies inside the region, whose mapping the
        // constructor's caller promised readable.
        unsafe { mem::copy_out(mem::at(self.vaddr, gpa - self.gpa), dst) };
        Ok(())
    }

    /// First guest-physical address.
    pub const fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Address of the first byte in the VMM PD.
    pub const fn vaddr(&self) -> NonNull<u8> {
        self.vaddr
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (never true for a region a
    /// [`GuestRam`](crate::GuestRam) accepted).
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl MappedRegion<ReadWrite> {
    /// The exclusive gpa end, after checking the region's shape.
    pub(crate) fn checked_end(&self) -> Result<u64, Error> {
        let end = GpaRange {
            gpa: self.gpa,
            len: self.len,
        }
        .end()?;
        let len = usize::try_from(self.len).map_err(|_| Error::Overflow)?;
        if len > isize::MAX as usize {
            return Err(Error::Overflow);
        }
        (self.vaddr.as_ptr() as usize)
            .checked_add(len)
            .ok_or(Error::Overflow)?;
        Ok(end)
    }

    /// Exclusive gpa end; only for regions already checked.
    pub(crate) fn end(&self) -> u64 {
        self.gpa + self.len
    }

    /// The VMM address of `gpa`, which must lie inside this region.
    pub(crate) fn ptr(&self, gpa: u64) -> *mut u8 {
        debug_assert!(gpa >= self.gpa && gpa < self.end());
        mem::at(self.vaddr, gpa - self.gpa)
    }

    pub(crate) fn vaddr_range(&self) -> (usize, usize) {
        let start = self.vaddr.as_ptr() as usize;
        (start, start + self.len as usize)
    }
}

/// A buffer shared between the VMM PD and one client PD (or any other
/// mapping a PD copies through: a RAM disk, a device page), mapped into the
/// current PD at `vaddr`, with its access in the type. It is the staging
/// area for copies to and from guest RAM.
///
/// Both sides may write it, so the crate never hands out a reference into it
/// except through [`Client::read_in_place`](crate::client::Client::read_in_place),
/// which documents why that one is sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedBuffer<A: Access = ReadWrite> {
    vaddr: NonNull<u8>,
    len: usize,
    access: PhantomData<A>,
}

// SAFETY: as for `MappedRegion`: an address range of a static mapping.
unsafe impl<A: Access> Send for SharedBuffer<A> {}

impl SharedBuffer<ReadWrite> {
    /// Describes `len` bytes mapped read-write at `vaddr`.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be mapped readable and writable for as long
    /// as this value (or a copy) is used, `vaddr + len` must not overflow,
    /// `len <= isize::MAX`, and nothing may hold a Rust reference into it.
    pub const unsafe fn new(vaddr: NonNull<u8>, len: usize) -> Self {
        Self {
            vaddr,
            len,
            access: PhantomData,
        }
    }
}

impl SharedBuffer<ReadOnly> {
    /// Describes `len` bytes mapped read-only at `vaddr`: it can be read and
    /// copied from, never written. Writing does not compile:
    ///
    /// ```compile_fail
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// let mut page = [0u8; 16];
    /// let ro = unsafe { SharedBuffer::new_read_only(NonNull::new(page.as_mut_ptr()).unwrap(), 16) };
    /// ro.write(0, &[1]).unwrap(); // no `write` on SharedBuffer<ReadOnly>
    /// ```
    ///
    /// and neither does reading guest RAM into it:
    ///
    /// ```compile_fail
    /// # use core::ptr::NonNull;
    /// # use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
    /// # let mut page = [0u8; 16];
    /// # let ro = unsafe { SharedBuffer::new_read_only(NonNull::new(page.as_mut_ptr()).unwrap(), 16) };
    /// # let mut mem = [0u8; 16];
    /// # let region = unsafe { MappedRegion::new(0, NonNull::new(mem.as_mut_ptr()).unwrap(), 16) };
    /// let ram = GuestRam::<1, 4>::new(&[region]).unwrap();
    /// ram.read_to_buffer(0, 4, &ro, 0).unwrap(); // expects SharedBuffer<ReadWrite>
    /// ```
    ///
    /// # Safety
    /// As for [`SharedBuffer::new`], but the mapping need only be readable.
    pub const unsafe fn new_read_only(vaddr: NonNull<u8>, len: usize) -> Self {
        Self {
            vaddr,
            len,
            access: PhantomData,
        }
    }
}

impl<A: Access> SharedBuffer<A> {
    /// Length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first byte in this PD.
    pub const fn vaddr(&self) -> NonNull<u8> {
        self.vaddr
    }

    /// Checks that `[offset, offset + len)` lies inside the buffer and
    /// returns a pointer to its first byte.
    pub(crate) fn range_ptr(&self, offset: u64, len: u64) -> Result<*mut u8, Error> {
        let end = offset.checked_add(len).ok_or(Error::Overflow)?;
        if end > self.len as u64 {
            return Err(Error::OutsideBuffer);
        }
        Ok(mem::at(self.vaddr, offset))
    }

    /// The `len` bytes at `offset`, as a buffer of their own (a staging
    /// area inside a larger shared region, say). Errors if they do not lie
    /// inside this buffer.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// let mut bytes = [0u8; 16];
    /// let whole = unsafe { SharedBuffer::new(NonNull::new(bytes.as_mut_ptr()).unwrap(), 16) };
    /// let tail = whole.sub(12, 4).unwrap();
    /// tail.write(0, &[7]).unwrap();
    /// let mut b = [0u8; 1];
    /// whole.read(12, &mut b).unwrap();
    /// assert_eq!(b, [7]);
    /// assert!(whole.sub(12, 5).is_err());
    /// ```
    pub fn sub(&self, offset: usize, len: usize) -> Result<Self, Error> {
        let start = self.range_ptr(offset as u64, len as u64)?;
        Ok(Self {
            // In bounds of a non-null mapping: `range_ptr` checked it.
            vaddr: NonNull::new(start).ok_or(Error::OutsideBuffer)?,
            len,
            access: PhantomData,
        })
    }

    /// Copies `dst.len()` bytes from the buffer at `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Error> {
        let src = self.range_ptr(offset as u64, dst.len() as u64)?;
        // SAFETY: `range_ptr` checked the range lies inside the buffer, whose
        // mapping `new`'s caller promised.
        unsafe { mem::copy_out(src, dst) };
        Ok(())
    }
}

impl SharedBuffer<ReadWrite> {
    /// Copies `src` into the buffer at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), Error> {
        let dst = self.range_ptr(offset as u64, src.len() as u64)?;
        // SAFETY: as in `read`.
        unsafe { mem::copy_in(src, dst) };
        Ok(())
    }

    /// Copies `len` bytes from `src` at `src_offset` into this buffer at
    /// `offset`: the one copy between two mappings (a RAM disk and a shared
    /// buffer, say) that needs no bounce through a slice. Both ranges are
    /// checked before any byte moves.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// let (mut a, mut b) = ([1u8; 8], [0u8; 8]);
    /// let src = unsafe { SharedBuffer::new(NonNull::new(a.as_mut_ptr()).unwrap(), 8) };
    /// let dst = unsafe { SharedBuffer::new(NonNull::new(b.as_mut_ptr()).unwrap(), 8) };
    /// dst.copy_from(2, &src, 0, 4).unwrap();
    /// let mut out = [0u8; 8];
    /// dst.read(0, &mut out).unwrap();
    /// assert_eq!(out, [0, 0, 1, 1, 1, 1, 0, 0]);
    /// assert!(dst.copy_from(6, &src, 0, 4).is_err());
    /// ```
    pub fn copy_from<S: Access>(
        &self,
        offset: usize,
        src: &SharedBuffer<S>,
        src_offset: usize,
        len: usize,
    ) -> Result<(), Error> {
        let from = src.range_ptr(src_offset as u64, len as u64)?;
        let to = self.range_ptr(offset as u64, len as u64)?;
        // SAFETY: `range_ptr` checked both ranges against their mappings,
        // which the buffers' constructors promised; `copy` allows overlap.
        unsafe { mem::copy_between(from, to, len) };
        Ok(())
    }

    /// A shared view of the first `len` bytes.
    ///
    /// # Safety
    /// Nothing may write those bytes while the slice lives.
    pub(crate) unsafe fn slice(&self, len: usize) -> Result<&[u8], Error> {
        self.range_ptr(0, len as u64)?;
        // SAFETY: in bounds (checked above); no writer, by this fn's contract.
        Ok(unsafe { mem::shared_slice(self.vaddr, len) })
    }
}
