// SPDX-License-Identifier: BSD-2-Clause
//! The first RAM bookkeeping: a sorted, fixed-capacity list of extents,
//! kept as the baseline that `make bench` measures the tree in
//! (`extents.rs`) against. Not used by `GuestRam`.
//!
//! It replaced libsel4vm's `realloc`'d region array that is re-sorted with
//! `qsort` after every change. The list is kept sorted and *canonical*:
//! extents never overlap, and two extents that touch always differ in state
//! (touching extents of the same state are merged). So the list is exactly
//! the maximal runs of "free RAM" and "allocated RAM" bytes, which makes the
//! number of entries a function of the byte-level state alone.
//!
//! Complexity, with `n` the number of extents (at most `N`):
//! - locating an address: `O(log n)` (binary search);
//! - querying a range covering `k` extents: `O(log n + k)`;
//! - changing a range: `O(log n + n)` (one in-place splice, no sorting);
//! - first-fit and largest-free searches: `O(n)`.

use crate::Error;

pub use crate::extents::{Extent, RangeState};

/// The canonical extent list; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Table<const N: usize> {
    list: heapless::Vec<Extent, N>,
}

impl<const N: usize> Table<N> {
    pub const fn new() -> Self {
        Self {
            list: heapless::Vec::new(),
        }
    }

    pub fn as_slice(&self) -> &[Extent] {
        &self.list
    }

    /// Index of the first extent that ends at or after `addr` (so it
    /// contains `addr` or touches it from the left, or lies past it).
    fn first_reaching(&self, addr: u64) -> usize {
        self.list.partition_point(|e| e.end < addr)
    }

    /// Classifies `[start, end)`; `start < end` is the caller's business.
    pub fn range_state(&self, start: u64, end: u64) -> RangeState {
        let mut i = self.list.partition_point(|e| e.end <= start);
        let mut at = start;
        let (mut free, mut allocated) = (false, false);
        while at < end {
            match self.list.get(i) {
                Some(e) if e.start <= at => {
                    if e.allocated {
                        allocated = true;
                    } else {
                        free = true;
                    }
                    at = e.end;
                    i += 1;
                }
                _ => return RangeState::NotAllRam,
            }
        }
        match (free, allocated) {
            (true, true) => RangeState::Mixed,
            (true, false) => RangeState::AllFree,
            _ => RangeState::AllAllocated,
        }
    }

    /// Whether any byte of `[start, end)` is registered RAM.
    pub fn any_ram(&self, start: u64, end: u64) -> bool {
        let i = self.list.partition_point(|e| e.end <= start);
        self.list.get(i).is_some_and(|e| e.start < end)
    }

    /// Sets every byte of `[start, end)` to `state` (`None`: not RAM,
    /// `Some(false)`: free RAM, `Some(true)`: allocated RAM), keeping the list
    /// canonical. Fails with [`Error::CapacityExceeded`], changing nothing,
    /// if the result needs more than `N` extents.
    pub fn paint(&mut self, start: u64, end: u64, state: Option<bool>) -> Result<(), Error> {
        debug_assert!(start < end);
        // Extents [i, j) overlap or touch [start, end].
        let i = self.first_reaching(start);
        let j = self.list.partition_point(|e| e.start <= end);
        let mut pieces: heapless::Vec<Extent, 3> = heapless::Vec::new();
        let (mut new_start, mut new_end) = (start, end);
        if i < j {
            let first = self.list[i];
            if first.start < start {
                if Some(first.allocated) == state {
                    new_start = first.start;
                } else {
                    let end = first.end.min(start);
                    let _ = pieces.push(Extent { end, ..first });
                }
            }
        }
        let mut right = None;
        if i < j {
            let last = self.list[j - 1];
            if last.end > end {
                if Some(last.allocated) == state {
                    new_end = last.end;
                } else {
                    let start = last.start.max(end);
                    right = Some(Extent { start, ..last });
                }
            }
        }
        if let Some(allocated) = state {
            let _ = pieces.push(Extent {
                start: new_start,
                end: new_end,
                allocated,
            });
        }
        if let Some(right) = right {
            let _ = pieces.push(right);
        }
        self.splice(i, j, &pieces)
    }

    /// Replaces `list[i..j]` with `pieces`, in place.
    ///
    /// `i <= j <= len` holds by construction; it is checked anyway, so that
    /// the optimiser can drop every slice bound check (the no-panic link
    /// check proves it does), and a broken invariant is an error.
    fn splice(&mut self, i: usize, j: usize, pieces: &[Extent]) -> Result<(), Error> {
        let old_len = self.list.len();
        if i > j || j > old_len {
            debug_assert!(false, "splice {i}..{j} of {old_len}");
            return Err(Error::CapacityExceeded);
        }
        let new_len = old_len - (j - i) + pieces.len();
        if new_len > N {
            return Err(Error::CapacityExceeded);
        }
        while self.list.len() < new_len {
            // Cannot fail: new_len <= N was checked above.
            let _ = self.list.push(Extent::default());
        }
        // Move the tail `[j, old_len)` to start at `dest`, then write the
        // pieces at `i`: element moves through checked accesses (a broken
        // invariant is an error, not a panic), in the direction that does
        // not overwrite what is still to be moved.
        let moved = old_len - j;
        let dest = i + pieces.len();
        let list = self.list.as_mut_slice();
        let mut step = |k: usize| -> Result<(), Error> {
            let e = *list.get(j + k).ok_or(Error::CapacityExceeded)?;
            *list.get_mut(dest + k).ok_or(Error::CapacityExceeded)? = e;
            Ok(())
        };
        if dest > j {
            (0..moved).rev().try_for_each(&mut step)?;
        } else if dest < j {
            (0..moved).try_for_each(&mut step)?;
        }
        for (k, piece) in pieces.iter().enumerate() {
            *list.get_mut(i + k).ok_or(Error::CapacityExceeded)? = *piece;
        }
        self.list.truncate(new_len);
        Ok(())
    }

    /// Lowest `addr` with `addr % align == 0` such that `[addr, addr + len)`
    /// is free RAM (first fit). `align` is a power of two.
    pub fn first_fit(&self, len: u64, align: u64) -> Option<u64> {
        self.list.iter().filter(|e| !e.allocated).find_map(|e| {
            let addr = e.start.checked_add(align - 1)? & !(align - 1);
            let end = addr.checked_add(len)?;
            (end <= e.end).then_some(addr)
        })
    }

    /// The largest free extent; the lowest one among equals.
    pub fn largest_free(&self) -> Option<Extent> {
        self.list
            .iter()
            .filter(|e| !e.allocated)
            .fold(None, |best: Option<Extent>, e| match best {
                Some(b) if b.end - b.start >= e.end - e.start => Some(b),
                _ => Some(*e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(start: u64, end: u64, allocated: bool) -> Extent {
        Extent {
            start,
            end,
            allocated,
        }
    }

    #[test]
    fn adjacent_registrations_merge() {
        let mut x = Table::<4>::new();
        x.paint(0x1000, 0x2000, Some(false)).unwrap();
        x.paint(0x3000, 0x4000, Some(false)).unwrap();
        x.paint(0x2000, 0x3000, Some(false)).unwrap();
        assert_eq!(x.as_slice(), &[ext(0x1000, 0x4000, false)]);
    }

    #[test]
    fn allocation_in_the_middle_splits_and_free_rejoins() {
        let mut x = Table::<4>::new();
        x.paint(0, 100, Some(false)).unwrap();
        x.paint(40, 60, Some(true)).unwrap();
        assert_eq!(
            x.as_slice(),
            &[ext(0, 40, false), ext(40, 60, true), ext(60, 100, false)]
        );
        assert_eq!(x.range_state(30, 50), RangeState::Mixed);
        assert_eq!(x.range_state(40, 60), RangeState::AllAllocated);
        assert_eq!(x.range_state(60, 100), RangeState::AllFree);
        assert_eq!(x.range_state(60, 101), RangeState::NotAllRam);
        x.paint(40, 60, Some(false)).unwrap();
        assert_eq!(x.as_slice(), &[ext(0, 100, false)]);
    }

    #[test]
    fn capacity_is_checked_before_anything_changes() {
        let mut x = Table::<2>::new();
        x.paint(0, 100, Some(false)).unwrap();
        assert_eq!(x.paint(40, 60, Some(true)), Err(Error::CapacityExceeded));
        assert_eq!(x.as_slice(), &[ext(0, 100, false)]);
        // Allocating at an edge needs one more extent only.
        x.paint(0, 10, Some(true)).unwrap();
        assert_eq!(x.as_slice(), &[ext(0, 10, true), ext(10, 100, false)]);
    }

    #[test]
    fn first_fit_honours_alignment_and_order() {
        let mut x = Table::<8>::new();
        x.paint(0x10, 0x30, Some(false)).unwrap();
        x.paint(0x100, 0x300, Some(false)).unwrap();
        assert_eq!(x.first_fit(0x10, 1), Some(0x10));
        assert_eq!(x.first_fit(0x10, 0x20), Some(0x20));
        assert_eq!(x.first_fit(0x20, 0x20), Some(0x100));
        assert_eq!(x.first_fit(0x201, 1), None);
        assert_eq!(x.largest_free(), Some(ext(0x100, 0x300, false)));
    }

    #[test]
    fn first_fit_near_the_top_does_not_wrap() {
        let mut x = Table::<2>::new();
        x.paint(u64::MAX - 10, u64::MAX, Some(false)).unwrap();
        assert_eq!(x.first_fit(1, 1 << 63), None);
        assert_eq!(x.first_fit(10, 1), Some(u64::MAX - 10));
    }
}
