// SPDX-License-Identifier: BSD-2-Clause
//! [`GuestRam`]: the `guest_ram.h` interface over pre-mapped backing.
#![allow(
    unsafe_code,
    reason = "copies through mem over spans that check_ram and the backing table validated"
)]

use core::ptr::NonNull;

use crate::backing::{Access, Direction, GpaRange, MappedRegion, ReadWrite, SharedBuffer};
use crate::extents::{splice_one, Extents, RangeState};
use crate::{mem, Error};

/// Granule of [`GuestRam::touch`]'s callbacks, as in libsel4vm's
/// `vm_ram_touch` (`PAGE_SIZE_4K`).
pub const PAGE_SIZE: u64 = 4096;

/// One call of a [`GuestRam::touch`] or [`GuestRam::touch_spans`] callback:
/// the part of the touched range that lies in one 4 KiB page (`touch`) or one
/// contiguous mapping (`touch_spans`).
///
/// It carries the chunk's VMM address as a raw pointer, never a reference:
/// the guest may change those bytes at any time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Guest-physical address of the chunk's first byte.
    pub gpa: u64,
    /// Where that byte is mapped in the VMM PD.
    pub vaddr: *mut u8,
    /// Length of the chunk in bytes.
    pub len: usize,
    /// Offset of the chunk from the start of the touched range.
    pub offset: usize,
}

/// Error of [`GuestRam::touch`]: the range was refused, or a callback failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchError<E> {
    /// The range was refused before any callback ran.
    Ram(Error),
    /// A callback returned this error; no further callback ran.
    Callback(E),
}

impl<E: core::fmt::Display> core::fmt::Display for TouchError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TouchError::Ram(e) => write!(f, "touch refused: {e}"),
            TouchError::Callback(e) => write!(f, "touch callback failed: {e}"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> core::error::Error for TouchError<E> {}

/// A registered extent of RAM, as reported by [`GuestRam::extents`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamExtent {
    /// The addresses.
    pub range: GpaRange,
    /// Whether the range is allocated (otherwise it is free).
    pub allocated: bool,
}

/// A VM's guest RAM: its pre-mapped backing and the bookkeeping of which
/// guest-physical ranges are RAM and which of those are allocated.
///
/// * `B`: the most backing regions (`<memory_region>`s mapped into the VMM).
/// * `E`: the most RAM extents, where an extent is a maximal run of free or
///   of allocated RAM. Every allocation can cost up to two extents; an error
///   ([`Error::CapacityExceeded`]) says when the table is full.
///
/// Nothing is mapped at run time: the backing is fixed in `system.xml`, and
/// translating a gpa is a binary search over the backing plus an offset.
/// The extents are a treap over a fixed arena of `E` nodes: `allocate`,
/// `free`, `mark_allocated` and `find_largest_free_region` are `O(log n)`
/// expected in the number `n` of extents, and "is this RAM", asked by
/// every copy, does not depend on it.
///
/// ```
/// use core::ptr::NonNull;
/// use guest_ram::{GuestRam, MappedRegion};
///
/// let mut backing = vec![0u8; 0x4000];
/// let vaddr = NonNull::new(backing.as_mut_ptr()).unwrap();
/// // SAFETY: `backing` outlives `ram` and is only used through it.
/// let region = unsafe { MappedRegion::new(0x4000_0000, vaddr, 0x4000) };
/// let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
///
/// ram.register_at(0x4000_0000, 0x4000).unwrap();
/// let kernel = ram.allocate(0x1000).unwrap();
/// assert_eq!(kernel, 0x4000_0000);
/// ram.write(kernel + 0xffe, b"abcd").unwrap(); // crosses a page boundary
/// let mut out = [0u8; 4];
/// ram.read(kernel + 0xffe, &mut out).unwrap();
/// assert_eq!(&out, b"abcd");
/// assert_eq!(ram.find_largest_free_region().unwrap().len, 0x3000);
/// ```
#[derive(Clone, Debug)]
pub struct GuestRam<const B: usize, const E: usize> {
    backing: heapless::Vec<MappedRegion, B>,
    extents: Extents<E>,
}

impl<const B: usize, const E: usize> GuestRam<B, E> {
    /// Takes the VMM's pre-mapped backing regions (in any order). Nothing is
    /// RAM yet: declare RAM with [`register_at`](Self::register_at) or
    /// [`register`](Self::register).
    ///
    /// Errors: a region of zero length ([`Error::ZeroLength`]), one whose gpa
    /// or vaddr end overflows ([`Error::Overflow`]), two that overlap in gpa
    /// or in vaddr ([`Error::BackingOverlap`]), more than `B` regions
    /// ([`Error::CapacityExceeded`]). `O(B²)`, once at start-up.
    pub fn new(regions: &[MappedRegion]) -> Result<Self, Error> {
        // Checks run in the order `Error` promises, each over all regions,
        // so the answer does not depend on the order they come in: shape,
        // then overlap, then capacity.
        for region in regions {
            region.checked_end()?;
        }
        for (k, region) in regions.iter().enumerate() {
            let (v_start, v_end) = region.vaddr_range();
            for other in regions.iter().skip(k + 1) {
                let (o_start, o_end) = other.vaddr_range();
                let gpa_overlap = region.gpa() < other.end() && other.gpa() < region.end();
                if gpa_overlap || (v_start < o_end && o_start < v_end) {
                    return Err(Error::BackingOverlap);
                }
            }
        }
        if regions.len() > B {
            return Err(Error::CapacityExceeded);
        }
        let mut backing: heapless::Vec<MappedRegion, B> = heapless::Vec::new();
        for region in regions {
            let at = backing.partition_point(|r| r.gpa() < region.gpa());
            splice_one(&mut backing, at, at, *region).map_err(|_| Error::CapacityExceeded)?;
        }
        for r in backing.iter() {
            log::debug!(
                "guest-ram: backing gpa {:#x}..{:#x} at vaddr {:p}",
                r.gpa(),
                r.end(),
                r.vaddr()
            );
        }
        Ok(Self {
            backing,
            extents: Extents::new(),
        })
    }

    /// The backing regions, sorted by gpa.
    pub fn backing(&self) -> &[MappedRegion] {
        &self.backing
    }

    /// The registered RAM, in gpa order, as maximal free and allocated runs.
    pub fn extents(&self) -> impl Iterator<Item = RamExtent> + '_ {
        self.extents.iter().map(|e| RamExtent {
            range: GpaRange {
                gpa: e.start,
                len: e.end - e.start,
            },
            allocated: e.allocated,
        })
    }

    /// Index of the backing region containing `gpa`, if any. `O(log B)`.
    fn backing_index(&self, gpa: u64) -> Option<usize> {
        let i = self.backing.partition_point(|r| r.end() <= gpa);
        (self.backing.get(i)?.gpa() <= gpa).then_some(i)
    }

    /// Whether every byte of `[gpa, end)` is backed.
    fn is_backed(&self, gpa: u64, end: u64) -> bool {
        let Some(mut i) = self.backing_index(gpa) else {
            return false;
        };
        loop {
            let Some(region) = self.backing.get(i) else {
                return false;
            };
            if region.end() >= end {
                return true;
            }
            match self.backing.get(i + 1) {
                Some(next) if next.gpa() == region.end() => i += 1,
                _ => return false,
            }
        }
    }

    /// Checks that `[gpa, gpa + len)` is registered RAM (free or allocated;
    /// a range may cross from one into the other) and returns its end.
    pub fn check_ram(&self, gpa: u64, len: u64) -> Result<u64, Error> {
        let end = GpaRange { gpa, len }.end()?;
        if self.extents.is_ram(gpa, end) {
            Ok(end)
        } else {
            Err(Error::NotRam)
        }
    }

    /// Declares `[gpa, gpa + len)` guest RAM (free). It must be backed and
    /// must not overlap RAM already registered; registrations that touch
    /// merge into one. (`vm_ram_register_at`.)
    ///
    /// Errors, in order: [`Error::ZeroLength`], [`Error::Overflow`],
    /// [`Error::NotBacked`], [`Error::AlreadyRam`],
    /// [`Error::CapacityExceeded`].
    pub fn register_at(&mut self, gpa: u64, len: u64) -> Result<(), Error> {
        let end = GpaRange { gpa, len }.end()?;
        if !self.is_backed(gpa, end) {
            return Err(Error::NotBacked);
        }
        if self.extents.any_ram(gpa, end) {
            return Err(Error::AlreadyRam);
        }
        self.extents.register(gpa, end)?;
        log::debug!("guest-ram: registered {gpa:#x}..{end:#x}");
        Ok(())
    }

    /// Registers `len` bytes of RAM at the lowest gpa where `len` backed,
    /// not-yet-registered bytes follow each other, and returns that gpa.
    /// (`vm_ram_register`, which picks the address itself.)
    ///
    /// Errors: [`Error::ZeroLength`], [`Error::NoSpace`],
    /// [`Error::CapacityExceeded`]. `O(B + E)`.
    pub fn register(&mut self, len: u64) -> Result<u64, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        let gpa = self.lowest_unregistered(len).ok_or(Error::NoSpace)?;
        self.register_at(gpa, len)?;
        Ok(gpa)
    }

    /// First-fit search over backed runs minus registered RAM.
    fn lowest_unregistered(&self, len: u64) -> Option<u64> {
        let ram = self.extents.runs();
        let mut next_ram = 0;
        let mut i = 0;
        while i < self.backing.len() {
            // A run of gpa-contiguous backing regions: [run_start, run_end).
            let run_start = self.backing[i].gpa();
            let mut run_end = self.backing[i].end();
            i += 1;
            while i < self.backing.len() && self.backing[i].gpa() == run_end {
                run_end = self.backing[i].end();
                i += 1;
            }
            // Walk the gaps between RAM extents inside the run.
            let mut gap_start = run_start;
            while next_ram < ram.len() && ram[next_ram].start < run_end {
                let e = ram[next_ram];
                if e.start >= gap_start && e.start - gap_start >= len {
                    return Some(gap_start);
                }
                gap_start = gap_start.max(e.end);
                next_ram += 1;
            }
            if run_end > gap_start && run_end - gap_start >= len {
                return Some(gap_start);
            }
        }
        None
    }

    /// Marks `[gpa, gpa + len)` allocated, e.g. where a kernel image or a
    /// device tree has been placed. Every byte must be free RAM.
    /// (`vm_ram_mark_allocated`, which silently ignored bad ranges.)
    ///
    /// Errors, in order: [`Error::ZeroLength`], [`Error::Overflow`],
    /// [`Error::NotRam`], [`Error::AlreadyAllocated`],
    /// [`Error::CapacityExceeded`].
    pub fn mark_allocated(&mut self, gpa: u64, len: u64) -> Result<(), Error> {
        let end = GpaRange { gpa, len }.end()?;
        // Inside one free extent (RAM, all free): one descent.
        if let Some(done) = self.extents.flip_within(gpa, end, true) {
            return done;
        }
        // Anything else is refused (an all-free range of RAM always lies
        // inside one free extent: the extents are canonical); say why.
        match self.extents.range_state(gpa, end) {
            RangeState::NotAllRam => Err(Error::NotRam),
            _ => Err(Error::AlreadyAllocated),
        }
    }

    /// Allocates `len` bytes at the lowest free gpa (first fit) and returns
    /// that gpa. (`vm_ram_allocate`.)
    ///
    /// Errors: [`Error::ZeroLength`], [`Error::NoSpace`],
    /// [`Error::CapacityExceeded`].
    pub fn allocate(&mut self, len: u64) -> Result<u64, Error> {
        self.allocate_aligned(len, 1)
    }

    /// Allocates `len` bytes at the lowest free gpa that is a multiple of
    /// `align` (a power of two), e.g. 2 MiB for a Linux kernel image.
    ///
    /// Errors: [`Error::ZeroLength`], [`Error::BadAlignment`],
    /// [`Error::NoSpace`], [`Error::CapacityExceeded`].
    pub fn allocate_aligned(&mut self, len: u64, align: u64) -> Result<u64, Error> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if !align.is_power_of_two() {
            return Err(Error::BadAlignment);
        }
        self.extents.allocate(len, align)
    }

    /// Frees `[gpa, gpa + len)`, which must be entirely allocated; free
    /// neighbours coalesce. Part of an allocation may be freed. (libsel4vm's
    /// `vm_ram_free` does nothing at all.)
    ///
    /// Errors, in order: [`Error::ZeroLength`], [`Error::Overflow`],
    /// [`Error::NotRam`], [`Error::NotAllocated`],
    /// [`Error::CapacityExceeded`].
    pub fn free(&mut self, gpa: u64, len: u64) -> Result<(), Error> {
        let end = GpaRange { gpa, len }.end()?;
        // Inside one allocated extent (RAM, all allocated): one descent.
        if let Some(done) = self.extents.flip_within(gpa, end, false) {
            return done;
        }
        // Anything else is refused (an all-allocated range always lies
        // inside one allocated extent); say why.
        match self.extents.range_state(gpa, end) {
            RangeState::NotAllRam => Err(Error::NotRam),
            _ => Err(Error::NotAllocated),
        }
    }

    /// The largest free range of RAM (the lowest one among equals).
    /// (`vm_ram_find_largest_free_region`, which returned through out
    /// parameters and `-1`.)
    ///
    /// Errors: [`Error::NoSpace`] when no RAM is free.
    pub fn find_largest_free_region(&self) -> Result<GpaRange, Error> {
        let e = self.extents.largest_free().ok_or(Error::NoSpace)?;
        Ok(GpaRange {
            gpa: e.start,
            len: e.end - e.start,
        })
    }

    /// Calls `callback` once per backing region that the RAM range
    /// `[gpa, gpa + len)` crosses, with the part in that region, in order
    /// (two regions that happen to be adjacent in vaddr too still get a
    /// call each).
    /// The whole range is validated before the first call; the first
    /// callback error stops the walk and is returned.
    pub fn touch_spans<F, X>(&self, gpa: u64, len: u64, callback: F) -> Result<(), TouchError<X>>
    where
        F: FnMut(Chunk) -> Result<(), X>,
    {
        let end = self.check_ram(gpa, len).map_err(TouchError::Ram)?;
        self.spans(gpa, end, callback).map_err(TouchError::Callback)
    }

    /// Calls `callback` for each 4 KiB page of the RAM range
    /// `[gpa, gpa + len)` with the part of the range in that page, like
    /// libsel4vm's `vm_ram_touch` (gpa, VMM address, size, offset from
    /// start), with two differences. A chunk's `gpa` is the address of its
    /// first byte, so the first chunk starts at `gpa` itself where
    /// `vm_ram_touch` passes the page base. And a page that two backing
    /// regions share (only possible with regions that are not page-aligned)
    /// comes in two chunks, one per region, since the two parts have
    /// different VMM addresses. The whole range is validated first (it may
    /// cross from allocated into free RAM, which `vm_ram_touch` wrongly
    /// refused); the first callback error stops the walk and is returned.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::{GuestRam, MappedRegion};
    /// # let mut backing = vec![0u8; 0x3000];
    /// # let vaddr = NonNull::new(backing.as_mut_ptr()).unwrap();
    /// # let region = unsafe { MappedRegion::new(0x8000_0000, vaddr, 0x3000) };
    /// let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    /// ram.register_at(0x8000_0000, 0x3000).unwrap();
    /// let mut sizes = Vec::new();
    /// ram.touch(0x8000_0800, 0x2000, |chunk| {
    ///     sizes.push((chunk.gpa, chunk.len, chunk.offset));
    ///     Ok::<(), ()>(())
    /// })
    /// .unwrap();
    /// assert_eq!(
    ///     sizes,
    ///     [(0x8000_0800, 0x800, 0), (0x8000_1000, 0x1000, 0x800), (0x8000_2000, 0x800, 0x1800)]
    /// );
    /// ```
    pub fn touch<F, X>(&self, gpa: u64, len: u64, mut callback: F) -> Result<(), TouchError<X>>
    where
        F: FnMut(Chunk) -> Result<(), X>,
    {
        let end = self.check_ram(gpa, len).map_err(TouchError::Ram)?;
        self.spans(gpa, end, |span| {
            let mut done = 0;
            while done < span.len {
                let page_gpa = span.gpa + done as u64;
                let room = (PAGE_SIZE - (page_gpa & (PAGE_SIZE - 1))) as usize;
                let chunk_len = room.min(span.len - done);
                callback(Chunk {
                    gpa: page_gpa,
                    vaddr: span.vaddr.wrapping_add(done),
                    len: chunk_len,
                    offset: span.offset + done,
                })?;
                done += chunk_len;
            }
            Ok(())
        })
        .map_err(TouchError::Callback)
    }

    /// Walks the backed range `[gpa, end)` (already validated as RAM, hence
    /// backed) one backing region at a time.
    fn spans<X>(
        &self,
        gpa: u64,
        end: u64,
        mut f: impl FnMut(Chunk) -> Result<(), X>,
    ) -> Result<(), X> {
        let mut i = self.backing.partition_point(|r| r.end() <= gpa);
        let mut at = gpa;
        while at < end {
            // The range was checked to be RAM, hence backed, so a region
            // always exists here; stopping short is the panic-free answer
            // to a broken invariant.
            let Some(region) = self.backing.get(i) else {
                debug_assert!(false, "RAM not backed at {at:#x}");
                break;
            };
            let span_end = region.end().min(end);
            f(Chunk {
                gpa: at,
                vaddr: region.ptr(at),
                len: (span_end - at) as usize,
                offset: (at - gpa) as usize,
            })?;
            at = span_end;
            i += 1;
        }
        Ok(())
    }

    /// The VMM address of `gpa` if `[gpa, end)` lies in one backing region:
    /// the fast path of every copy (always taken with one region), which
    /// skips the span walk.
    #[inline]
    fn in_one_region(&self, gpa: u64, end: u64) -> Option<*mut u8> {
        let region = match self.backing.as_slice() {
            [only] => only,
            many => many.get(many.partition_point(|r| r.end() <= gpa))?,
        };
        (region.gpa() <= gpa && end <= region.end()).then(|| region.ptr(gpa))
    }

    /// Infallible span walk for copies.
    fn for_each_span(&self, gpa: u64, end: u64, mut f: impl FnMut(Chunk)) {
        let _ = self.spans::<core::convert::Infallible>(gpa, end, |c| {
            f(c);
            Ok(())
        });
    }

    /// Checks a copy's RAM range, where the length comes from a slice.
    fn check_copy(&self, gpa: u64, len: usize) -> Result<u64, Error> {
        self.check_ram(gpa, u64::try_from(len).map_err(|_| Error::Overflow)?)
    }

    /// Copies guest RAM at `gpa` into `dst`, across page and backing-region
    /// boundaries. The whole range must be RAM; on error nothing is copied.
    pub fn read(&self, gpa: u64, dst: &mut [u8]) -> Result<(), Error> {
        let end = self.check_copy(gpa, dst.len())?;
        if let Some(vaddr) = self.in_one_region(gpa, end) {
            // SAFETY: `[gpa, end)` is RAM, hence backed, and lies in one
            // backing region, whose mapping `MappedRegion::new`'s caller
            // promised.
            unsafe { mem::copy_out(vaddr, dst) };
            return Ok(());
        }
        self.for_each_span(gpa, end, |span| {
            // The spans tile `[0, dst.len())`; `get_mut` keeps that
            // invariant from being a panic path (make no-panic).
            if let Some(out) = dst.get_mut(span.offset..span.offset + span.len) {
                // SAFETY: `span` lies inside one backing region (checked RAM
                // ⊂ backing), whose mapping `MappedRegion::new`'s caller
                // promised.
                unsafe { mem::copy_out(span.vaddr, out) };
            }
        });
        Ok(())
    }

    /// Copies `src` into guest RAM at `gpa`; see [`read`](Self::read).
    pub fn write(&self, gpa: u64, src: &[u8]) -> Result<(), Error> {
        let end = self.check_copy(gpa, src.len())?;
        if let Some(vaddr) = self.in_one_region(gpa, end) {
            // SAFETY: as in `read`'s one-region case.
            unsafe { mem::copy_in(src, vaddr) };
            return Ok(());
        }
        self.for_each_span(gpa, end, |span| {
            // As in `read`: the spans tile `[0, src.len())`.
            if let Some(input) = src.get(span.offset..span.offset + span.len) {
                // SAFETY: as in `read`.
                unsafe { mem::copy_in(input, span.vaddr) };
            }
        });
        Ok(())
    }

    /// Sets `len` bytes of guest RAM at `gpa` to `byte`.
    pub fn fill(&self, gpa: u64, len: u64, byte: u8) -> Result<(), Error> {
        let end = self.check_ram(gpa, len)?;
        self.for_each_span(gpa, end, |span| {
            // SAFETY: as in `read`.
            unsafe { mem::fill(span.vaddr, byte, span.len) };
        });
        Ok(())
    }

    /// Copies `len` bytes of guest RAM at `gpa` into `buffer` at `offset`.
    /// Both ranges are checked before any byte moves.
    pub fn read_to_buffer(
        &self,
        gpa: u64,
        len: u64,
        buffer: &SharedBuffer<ReadWrite>,
        offset: u64,
    ) -> Result<(), Error> {
        self.copy_buffer(gpa, len, buffer, offset, Direction::FromGuest)
    }

    /// Copies `len` bytes of `buffer` (which may be a read-only mapping) at
    /// `offset` into guest RAM at `gpa`. Both ranges are checked before any
    /// byte moves.
    pub fn write_from_buffer<A: Access>(
        &self,
        gpa: u64,
        len: u64,
        buffer: &SharedBuffer<A>,
        offset: u64,
    ) -> Result<(), Error> {
        self.copy_buffer(gpa, len, buffer, offset, Direction::ToGuest)
    }

    /// Guest RAM ↔ shared buffer. Private: the public functions above fix
    /// the direction, and only [`Direction::ToGuest`] is reachable with a
    /// read-only buffer.
    fn copy_buffer<A: Access>(
        &self,
        gpa: u64,
        len: u64,
        buffer: &SharedBuffer<A>,
        offset: u64,
        direction: Direction,
    ) -> Result<(), Error> {
        let end = self.check_ram(gpa, len)?;
        self.copy_buffer_ram_checked(gpa, end, len, buffer, offset, direction)
    }

    /// The copy service's copy: the server checked `[gpa, end)` is RAM
    /// (`end` from [`check_ram`](Self::check_ram)) with this same
    /// `GuestRam`, which it holds shared, so RAM cannot have changed since;
    /// the buffer side is still checked here.
    pub(crate) fn copy_buffer_ram_checked<A: Access>(
        &self,
        gpa: u64,
        end: u64,
        len: u64,
        buffer: &SharedBuffer<A>,
        offset: u64,
        direction: Direction,
    ) -> Result<(), Error> {
        let base = buffer.range_ptr(offset, len)?;
        if let Some(vaddr) = self.in_one_region(gpa, end) {
            let (src, dst) = match direction {
                Direction::ToGuest => (base, vaddr),
                Direction::FromGuest => (vaddr, base),
            };
            // SAFETY: the guest range lies in one backing region (as in
            // `read`) and `base..base + len` in the buffer (`range_ptr`);
            // a read-only buffer is only ever the source.
            unsafe { mem::copy_between(src, dst, len as usize) };
            return Ok(());
        }
        self.for_each_span(gpa, end, |span| {
            let in_buffer = base.wrapping_add(span.offset);
            let (src, dst) = match direction {
                Direction::ToGuest => (in_buffer, span.vaddr),
                Direction::FromGuest => (span.vaddr, in_buffer),
            };
            // SAFETY: the guest span is backed (as in `read`) and
            // `base + span.offset .. + span.len` lies inside the buffer range
            // checked by `range_ptr`; a read-only buffer is only ever the
            // source (`write_from_buffer`).
            unsafe { mem::copy_between(src, dst, span.len) };
        });
        Ok(())
    }

    /// The VMM address of the RAM range `[gpa, gpa + len)`, which must be
    /// contiguous in the VMM's address space: inside one backing region, or
    /// across backing regions adjacent in both gpa and vaddr (they
    /// translate as one). The pointer is for `unsafe` PD code (e.g. handing
    /// a buffer to a loader); the crate itself never dereferences it
    /// outside `mem`.
    ///
    /// Errors: [`Error::ZeroLength`], [`Error::Overflow`], [`Error::NotRam`],
    /// [`Error::NotContiguous`].
    pub fn translate(&self, gpa: u64, len: u64) -> Result<NonNull<u8>, Error> {
        let end = self.check_ram(gpa, len)?;
        let i = self.backing_index(gpa).ok_or(Error::NotRam)?;
        let first = self.backing.get(i).ok_or(Error::NotRam)?;
        // Walk on while the range goes on into a region that follows this
        // one in both gpa and vaddr: then the whole range has one address.
        let mut region = first;
        for next in self.backing.iter().skip(i + 1) {
            if region.end() >= end {
                break;
            }
            let follows_in_vaddr = region.vaddr_range().1 == next.vaddr_range().0;
            if next.gpa() != region.end() || !follows_in_vaddr {
                return Err(Error::NotContiguous);
            }
            region = next;
        }
        if region.end() < end {
            return Err(Error::NotContiguous);
        }
        NonNull::new(first.ptr(gpa)).ok_or(Error::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(memory: &mut [u8], gpa: u64, offset: usize, len: usize) -> MappedRegion {
        let vaddr = NonNull::new(memory[offset..].as_mut_ptr()).unwrap();
        // SAFETY: the tests keep `memory` alive and unborrowed meanwhile.
        unsafe { MappedRegion::new(gpa, vaddr, len as u64) }
    }

    #[test]
    fn new_answers_the_same_for_any_order() {
        // B = 1; r3 overlaps r1: overlap is reported before capacity,
        // whatever the order.
        let mut memory = [0u8; 0x4000];
        let r1 = region(&mut memory, 0x1000, 0, 0x1000);
        let r2 = region(&mut memory, 0x3000, 0x1000, 0x1000);
        let r3 = region(&mut memory, 0x1800, 0x2000, 0x1000);
        for order in [[r1, r3, r2], [r1, r2, r3], [r3, r2, r1], [r2, r1, r3]] {
            assert_eq!(
                GuestRam::<1, 4>::new(&order).err(),
                Some(Error::BackingOverlap)
            );
        }
        assert_eq!(
            GuestRam::<1, 4>::new(&[r1, r2]).err(),
            Some(Error::CapacityExceeded)
        );
    }

    #[test]
    fn translate_crosses_regions_adjacent_in_gpa_and_vaddr() {
        let mut memory = [0u8; 0x3000];
        let a = region(&mut memory, 0x1000, 0, 0x1000);
        let b = region(&mut memory, 0x2000, 0x1000, 0x1000);
        // Adjacent in gpa only: c's memory is not right after b's.
        let c = region(&mut memory, 0x3000, 0x2800, 0x800);
        let mut ram = GuestRam::<3, 8>::new(&[c, b, a]).unwrap();
        ram.register_at(0x1000, 0x2800).unwrap();
        let base = ram.translate(0x1000, 0x10).unwrap().as_ptr();
        assert_eq!(
            ram.translate(0x1800, 0x1000).unwrap().as_ptr(),
            base.wrapping_add(0x800)
        );
        assert_eq!(ram.translate(0x2800, 0x1000), Err(Error::NotContiguous));
        assert_eq!(
            ram.translate(0x3000, 0x800).unwrap().as_ptr(),
            base.wrapping_add(0x2800)
        );
    }
}
