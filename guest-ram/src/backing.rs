//! Descriptions of memory that is mapped into the VMM PD at build time.

use core::ptr::NonNull;

use crate::{mem, Error};

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
/// variable) and into the guest at `gpa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRegion {
    gpa: u64,
    vaddr: NonNull<u8>,
    len: u64,
}

// SAFETY: a `MappedRegion` is an address range of a static mapping, not
// owned data; which thread uses it does not matter. All access goes through
// `mem`, which never creates references into it.
unsafe impl Send for MappedRegion {}

impl MappedRegion {
    /// Describes `len` bytes mapped at `vaddr` that the guest sees at `gpa`.
    ///
    /// Shape checks (zero length, overflow of `gpa + len` or
    /// `vaddr + len`, `len > isize::MAX`) happen when the region is handed to
    /// [`GuestRam::new`](crate::GuestRam::new), which reports them as errors.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be mapped readable and writable in this
    /// address space for as long as any [`GuestRam`](crate::GuestRam) built
    /// from this region exists, and nothing may hold a Rust reference into
    /// it. Microkit mappings declared in `system.xml` satisfy this for the
    /// life of the PD.
    pub const unsafe fn new(gpa: u64, vaddr: NonNull<u8>, len: u64) -> Self {
        Self { gpa, vaddr, len }
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

/// A buffer shared between the VMM PD and one client PD, mapped into the
/// current PD at `vaddr`. It is the staging area for copies to and from
/// guest RAM.
///
/// Both sides may write it, so the crate never hands out a reference into it
/// except through [`Client::read_in_place`](crate::client::Client::read_in_place),
/// which documents why that one is sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedBuffer {
    vaddr: NonNull<u8>,
    len: usize,
}

// SAFETY: as for `MappedRegion`: an address range of a static mapping.
unsafe impl Send for SharedBuffer {}

impl SharedBuffer {
    /// Describes `len` bytes mapped at `vaddr`.
    ///
    /// # Safety
    /// `vaddr..vaddr + len` must be mapped readable and writable for as long
    /// as this value (or a copy) is used, `vaddr + len` must not overflow,
    /// `len <= isize::MAX`, and nothing may hold a Rust reference into it.
    pub const unsafe fn new(vaddr: NonNull<u8>, len: usize) -> Self {
        Self { vaddr, len }
    }

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

    /// Copies `dst.len()` bytes from the buffer at `offset` into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), Error> {
        let src = self.range_ptr(offset as u64, dst.len() as u64)?;
        // SAFETY: `range_ptr` checked the range lies inside the buffer, whose
        // mapping `new`'s caller promised.
        unsafe { mem::copy_out(src, dst) };
        Ok(())
    }

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
    pub fn copy_from(
        &self,
        offset: usize,
        src: &SharedBuffer,
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
