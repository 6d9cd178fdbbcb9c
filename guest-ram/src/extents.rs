// SPDX-License-Identifier: BSD-2-Clause
//! RAM bookkeeping: canonical extents in a balanced tree, and the runs of
//! registered RAM beside it.
//!
//! The extents are *canonical*: they never overlap, and two that touch
//! always differ in state (touching extents of the same state are merged),
//! so they are exactly the maximal runs of "free RAM" and "allocated RAM"
//! bytes and their number is a function of the byte-level state alone.
//!
//! They live in a treap (a binary search tree by address, heap-ordered by
//! pseudo-random priorities, so balanced with high probability whatever the
//! order of changes) in a fixed arena of `N` nodes: no allocation. Each node
//! also holds the longest free extent in its subtree, which answers "the
//! largest free region" at the root and lets first fit skip every subtree
//! with no free extent long enough. Each node links to its parent and to
//! its neighbours in address order, so once a descent has found an extent,
//! its neighbours, the slot for a new extent beside it and the path back
//! to the root are at hand: an allocate or a free is one descent, and the
//! rest is `O(1)` expected work (a treap insertion or removal makes fewer
//! than two rotations on average; `max_free` updates stop at the first
//! ancestor they do not change).
//!
//! The registered RAM runs (free and allocated together) are kept apart in
//! a short sorted list that only registration changes. "Is this range
//! RAM?", asked by every copy, is a binary search there and does not
//! depend on how many allocations exist.
//!
//! Complexity, with `n` the number of extents (at most `N`), `d` the
//! tree's depth (`O(log n)` expected) and `r` the number of RAM runs:
//! - "is `[a, b)` RAM": `O(log r)`;
//! - the state of a range covering `k` extents: `O(d + k)`;
//! - changing a range inside one extent (every allocate and free, most
//!   marks): `O(d)` (the descent that finds it, then boundaries moved in
//!   place and at most two nodes inserted or removed beside it); a range
//!   covering `k` extents (only registration, which touches at most two,
//!   and direct use of [`Extents::paint`]): `O(k·d)`;
//! - largest free extent: `O(d)`;
//! - first fit of `len` bytes: `O(d)` when `align` is 1; otherwise `O(d)`
//!   when the first free extent of at least `len` bytes can hold an
//!   aligned range, and each free extent of at least `len` but less than
//!   `len + align - 1` bytes that cannot adds `O(d)`;
//! - iterating over the extents: `O(1)` per extent.

use crate::Error;

/// One run of registered RAM in a single state, `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Allocated (or free).
    pub allocated: bool,
}

impl Extent {
    fn free_len(&self) -> u64 {
        if self.allocated {
            0
        } else {
            self.end - self.start
        }
    }
}

/// What a range of guest-physical addresses is, as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeState {
    /// Some byte is not registered RAM.
    NotAllRam,
    /// All RAM, all free.
    AllFree,
    /// All RAM, all allocated.
    AllAllocated,
    /// All RAM, partly free and partly allocated.
    Mixed,
}

/// A run of registered RAM, `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
}

/// No node.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    extent: Extent,
    /// Longest free extent in this subtree (0: none).
    max_free: u64,
    left: u32,
    right: u32,
    parent: u32,
    /// The extent before this one in address order (`NIL`: none).
    prev: u32,
    /// The extent after this one in address order (`NIL`: none); on the
    /// free list, the next free node.
    next: u32,
    priority: u32,
}

const EMPTY: Node = Node {
    extent: Extent {
        start: 0,
        end: 0,
        allocated: false,
    },
    max_free: 0,
    left: NIL,
    right: NIL,
    parent: NIL,
    prev: NIL,
    next: NIL,
    priority: 0,
};

/// The canonical extents and RAM runs; see the module docs.
#[derive(Clone, Debug)]
pub struct Extents<const N: usize> {
    nodes: [Node; N],
    root: u32,
    /// The lowest extent (`NIL`: none).
    head: u32,
    /// Head of the list of free nodes, linked through `next`.
    free_list: u32,
    /// Nodes `[0, fresh)` have been handed out at least once.
    fresh: usize,
    len: usize,
    /// xorshift32 state for priorities (any fixed seed: the guest cannot
    /// see or steer them).
    seed: u32,
    runs: heapless::Vec<Run, N>,
}

impl<const N: usize> Default for Extents<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Extents<N> {
    /// No RAM.
    pub const fn new() -> Self {
        Self {
            nodes: [EMPTY; N],
            root: NIL,
            head: NIL,
            free_list: NIL,
            fresh: 0,
            len: 0,
            seed: 0x9e37_79b9,
            runs: heapless::Vec::new(),
        }
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no RAM.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The registered RAM runs, in address order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The extents in address order. `O(1)` per step.
    pub fn iter(&self) -> impl Iterator<Item = Extent> + '_ {
        let mut t = self.head;
        core::iter::from_fn(move || {
            let n = self.node(t)?;
            t = n.next;
            Some(n.extent)
        })
    }

    // --- arena -----------------------------------------------------------
    //
    // Every access goes through `get`: an index that is `NIL` (or, if the
    // links were ever wrong, out of range) reads as "no node" and writes
    // nothing, so there is no panic path.

    fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node> {
        self.nodes.get_mut(i as usize)
    }

    fn extent(&self, i: u32) -> Option<Extent> {
        self.node(i).map(|n| n.extent)
    }

    fn max_free(&self, i: u32) -> u64 {
        self.node(i).map_or(0, |n| n.max_free)
    }

    fn priority(&self, i: u32) -> u32 {
        self.node(i).map_or(0, |n| n.priority)
    }

    fn left(&self, i: u32) -> u32 {
        self.node(i).map_or(NIL, |n| n.left)
    }

    fn right(&self, i: u32) -> u32 {
        self.node(i).map_or(NIL, |n| n.right)
    }

    fn parent(&self, i: u32) -> u32 {
        self.node(i).map_or(NIL, |n| n.parent)
    }

    fn next(&self, i: u32) -> u32 {
        self.node(i).map_or(NIL, |n| n.next)
    }

    fn set_parent(&mut self, i: u32, parent: u32) {
        if let Some(n) = self.node_mut(i) {
            n.parent = parent;
        }
    }

    /// Takes a node for `extent`, unlinked; `NIL` if all `N` are in use
    /// (the callers check capacity first).
    fn alloc(&mut self, extent: Extent) -> u32 {
        let i = if self.free_list != NIL {
            let i = self.free_list;
            self.free_list = self.next(i);
            i
        } else if self.fresh < N {
            self.fresh += 1;
            (self.fresh - 1) as u32
        } else {
            return NIL;
        };
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 17;
        self.seed ^= self.seed << 5;
        let priority = self.seed;
        let Some(n) = self.node_mut(i) else {
            return NIL;
        };
        *n = Node {
            extent,
            max_free: extent.free_len(),
            priority,
            ..EMPTY
        };
        self.len += 1;
        i
    }

    // --- treap -----------------------------------------------------------

    /// Recomputes node `i`'s `max_free` from its children; whether it
    /// changed.
    fn update(&mut self, i: u32) -> bool {
        let Some(&n) = self.node(i) else {
            return false;
        };
        let max_free = n
            .extent
            .free_len()
            .max(self.max_free(n.left))
            .max(self.max_free(n.right));
        if let Some(node) = self.node_mut(i) {
            node.max_free = max_free;
        }
        max_free != n.max_free
    }

    /// Brings `max_free` up to date from `i` towards the root, after a
    /// change in `i`'s own extent or in the subtree below it. Stops at the
    /// first node whose `max_free` comes out unchanged: every value above
    /// it is a maximum over the same numbers as before.
    fn fix_up(&mut self, mut i: u32) {
        while i != NIL {
            if !self.update(i) {
                return;
            }
            i = self.parent(i);
        }
    }

    /// Puts `new` where `old` hangs below `parent` (`NIL`: the root).
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        match self.node_mut(parent) {
            None => self.root = new,
            Some(p) if p.left == old => p.left = new,
            Some(p) => p.right = new,
        }
        self.set_parent(new, parent);
    }

    /// Rotates `x` above its parent, keeping the address order; brings
    /// both nodes' `max_free` up to date.
    fn rotate_up(&mut self, x: u32) {
        let p = self.parent(x);
        let g = self.parent(p);
        let Some(&xn) = self.node(x) else {
            return;
        };
        let Some(pn) = self.node_mut(p) else {
            return;
        };
        pn.parent = x;
        let moved = if pn.left == x {
            pn.left = xn.right;
            if let Some(x) = self.node_mut(x) {
                x.right = p;
            }
            xn.right
        } else {
            pn.right = xn.left;
            if let Some(x) = self.node_mut(x) {
                x.left = p;
            }
            xn.left
        };
        self.set_parent(moved, p);
        self.replace_child(g, p, x);
        self.update(p);
        self.update(x);
    }

    /// Inserts node `i` (taken by [`alloc`](Self::alloc)) right after
    /// `prev` in address order (`NIL`: first). No search: the slot between
    /// two neighbours in address order is always a free child link of one
    /// of them. Then `i` rises while its priority beats its parent's
    /// (`O(1)` rotations expected).
    fn link_after(&mut self, i: u32, prev: u32) {
        let next = if prev == NIL {
            self.head
        } else {
            self.next(prev)
        };
        // The address-order list.
        if let Some(n) = self.node_mut(i) {
            n.prev = prev;
            n.next = next;
        }
        match self.node_mut(prev) {
            Some(p) => p.next = i,
            None => self.head = i,
        }
        if let Some(n) = self.node_mut(next) {
            n.prev = i;
        }
        // The tree: a leaf between `prev` and `next`. If `prev` has a right
        // subtree, `next` is its leftmost node, whose left link is free.
        if self.root == NIL {
            self.root = i;
        } else if prev != NIL && self.right(prev) == NIL {
            if let Some(p) = self.node_mut(prev) {
                p.right = i;
            }
            self.set_parent(i, prev);
        } else if let Some(n) = self.node_mut(next).filter(|n| n.left == NIL) {
            n.left = i;
            self.set_parent(i, next);
        }
        let priority = self.priority(i);
        while self
            .node(self.parent(i))
            .is_some_and(|p| p.priority < priority)
        {
            self.rotate_up(i);
        }
        self.fix_up(self.parent(i));
    }

    /// A new node for `extent`, right after `prev` in address order.
    fn add_after(&mut self, prev: u32, extent: Extent) -> u32 {
        let i = self.alloc(extent);
        if i != NIL {
            self.link_after(i, prev);
        }
        i
    }

    /// Removes node `i` from the order and the tree and frees it: it
    /// rotates down below its higher-priority child until it has at most
    /// one child (`O(1)` rotations expected), which takes its place.
    fn unlink(&mut self, i: u32) {
        let Some(&n) = self.node(i) else {
            return;
        };
        match self.node_mut(n.prev) {
            Some(p) => p.next = n.next,
            None => self.head = n.next,
        }
        if let Some(next) = self.node_mut(n.next) {
            next.prev = n.prev;
        }
        loop {
            let (l, r) = (self.left(i), self.right(i));
            if l == NIL || r == NIL {
                break;
            }
            self.rotate_up(if self.priority(l) >= self.priority(r) {
                l
            } else {
                r
            });
        }
        let child = match self.left(i) {
            NIL => self.right(i),
            l => l,
        };
        let parent = self.parent(i);
        self.replace_child(parent, i, child);
        let free_list = self.free_list;
        if let Some(node) = self.node_mut(i) {
            *node = Node {
                next: free_list,
                ..EMPTY
            };
        }
        self.free_list = i;
        self.len -= 1;
        self.fix_up(parent);
    }

    /// Replaces node `i`'s extent (same place in the order) and brings
    /// `max_free` up to date.
    fn set_extent(&mut self, i: u32, extent: Extent) {
        if let Some(n) = self.node_mut(i) {
            n.extent = extent;
        }
        self.fix_up(i);
    }

    /// The node holding `addr` (`NIL`: none). `O(d)`.
    fn locate(&self, addr: u64) -> u32 {
        let mut t = self.root;
        while let Some(n) = self.node(t) {
            if addr < n.extent.start {
                t = n.left;
            } else if addr >= n.extent.end {
                t = n.right;
            } else {
                return t;
            }
        }
        NIL
    }

    /// The first node that ends at or after `addr` (holds it, touches it
    /// or lies past it); `NIL`: none. `O(d)`.
    fn first_touching(&self, addr: u64) -> u32 {
        let mut t = self.root;
        let mut found = NIL;
        while let Some(n) = self.node(t) {
            if n.extent.end >= addr {
                found = t;
                t = n.left;
            } else {
                t = n.right;
            }
        }
        found
    }

    /// The last node in address order (`NIL`: none). `O(d)`.
    fn last(&self) -> u32 {
        let mut t = self.root;
        while let Some(n) = self.node(t).filter(|n| n.right != NIL) {
            t = n.right;
        }
        t
    }

    // --- in-place changes (the common case) --------------------------------

    /// The node whose extent holds all of `[start, end)`, if one does.
    fn within(&self, start: u64, end: u64) -> Option<(u32, Extent)> {
        let x = self.locate(start);
        self.extent(x).filter(|e| end <= e.end).map(|e| (x, e))
    }

    /// Sets `[start, end)` to `allocated` if it lies inside one extent in
    /// the other state (the common case: freeing what one allocation
    /// made, marking part of one free run), in one descent; `None` if it
    /// does not, for the caller's general path.
    pub fn flip_within(
        &mut self,
        start: u64,
        end: u64,
        allocated: bool,
    ) -> Option<Result<(), Error>> {
        let (x, e) = self.within(start, end)?;
        (e.allocated != allocated).then(|| self.paint_node(x, start, end, allocated))
    }

    /// `paint` of a range inside one extent; `None` if it is not.
    fn paint_within(&mut self, start: u64, end: u64, allocated: bool) -> Option<Result<(), Error>> {
        let (x, _) = self.within(start, end)?;
        Some(self.paint_node(x, start, end, allocated))
    }

    /// Paints `[start, end)`, which lies inside node `x`'s extent:
    /// boundaries move in place (the order stays valid), neighbours are
    /// found through the address-order links, and at most two nodes are
    /// added or removed.
    fn paint_node(&mut self, x: u32, start: u64, end: u64, allocated: bool) -> Result<(), Error> {
        let Some(&xn) = self.node(x) else {
            return Ok(());
        };
        let xe = xn.extent;
        if xe.allocated == allocated {
            return Ok(());
        }
        let (l, r) = (xn.prev, xn.next);
        // Neighbours that touch and already have the new state absorb.
        let le = self
            .extent(l)
            .filter(|e| e.end == xe.start && e.allocated == allocated);
        let re = self
            .extent(r)
            .filter(|e| e.start == xe.end && e.allocated == allocated);
        let (at_start, at_end) = (start == xe.start, end == xe.end);
        let needed = match (at_start, at_end) {
            (true, true) => 0,
            (true, false) => usize::from(le.is_none()),
            (false, true) => usize::from(re.is_none()),
            (false, false) => 2,
        };
        if self.len + needed > N {
            return Err(Error::CapacityExceeded);
        }
        let changed = Extent {
            start,
            end,
            allocated,
        };
        match (at_start, at_end) {
            (true, true) => match (le, re) {
                (Some(le), Some(re)) => {
                    self.unlink(x);
                    self.unlink(r);
                    self.set_extent(l, Extent { end: re.end, ..le });
                }
                (Some(le), None) => {
                    self.unlink(x);
                    self.set_extent(l, Extent { end: xe.end, ..le });
                }
                (None, Some(re)) => {
                    self.unlink(x);
                    self.set_extent(
                        r,
                        Extent {
                            start: xe.start,
                            ..re
                        },
                    );
                }
                (None, None) => self.set_extent(x, changed),
            },
            (true, false) => {
                self.set_extent(x, Extent { start: end, ..xe });
                match le {
                    Some(le) => self.set_extent(l, Extent { end, ..le }),
                    None => {
                        self.add_after(l, changed);
                    }
                }
            }
            (false, true) => {
                self.set_extent(x, Extent { end: start, ..xe });
                match re {
                    Some(re) => self.set_extent(r, Extent { start, ..re }),
                    None => {
                        self.add_after(x, changed);
                    }
                }
            }
            (false, false) => {
                self.set_extent(x, Extent { end: start, ..xe });
                let c = self.add_after(x, changed);
                self.add_after(c, Extent { start: end, ..xe });
            }
        }
        Ok(())
    }

    // --- queries ---------------------------------------------------------

    /// Whether `[start, end)` is all registered RAM. `O(log r)`.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        if let [only] = self.runs.as_slice() {
            return only.start <= start && end <= only.end;
        }
        let i = self.runs.partition_point(|r| r.end <= start);
        self.runs
            .get(i)
            .is_some_and(|r| r.start <= start && end <= r.end)
    }

    /// Whether any byte of `[start, end)` is registered RAM. `O(log r)`.
    pub fn any_ram(&self, start: u64, end: u64) -> bool {
        let i = self.runs.partition_point(|r| r.end <= start);
        self.runs.get(i).is_some_and(|r| r.start < end)
    }

    /// Classifies `[start, end)`; `start < end` is the caller's business.
    /// `O(d + k)` for a range over `k` extents.
    pub fn range_state(&self, start: u64, end: u64) -> RangeState {
        if !self.is_ram(start, end) {
            return RangeState::NotAllRam;
        }
        let (mut free, mut allocated) = (false, false);
        let mut at = start;
        let mut t = self.locate(start);
        while at < end {
            match self.node(t) {
                Some(n) if n.extent.start <= at => {
                    if n.extent.allocated {
                        allocated = true;
                    } else {
                        free = true;
                    }
                    if free && allocated {
                        return RangeState::Mixed;
                    }
                    at = n.extent.end;
                    t = n.next;
                }
                // Cannot happen for RAM; the honest answer if it did.
                _ => return RangeState::NotAllRam,
            }
        }
        if allocated {
            RangeState::AllAllocated
        } else {
            RangeState::AllFree
        }
    }

    /// Lowest `addr` with `addr % align == 0` such that `[addr, addr + len)`
    /// is free RAM (first fit). `align` is a power of two, `len > 0`.
    pub fn first_fit(&self, len: u64, align: u64) -> Option<u64> {
        self.fit(len, align).map(|(addr, _)| addr)
    }

    /// [`first_fit`](Self::first_fit), with the node that holds the range.
    fn fit(&self, len: u64, align: u64) -> Option<(u64, u32)> {
        if align > 1 {
            return self.fit_aligned(self.root, len, align);
        }
        // Unaligned: `max_free` says which way, so one descent.
        let mut t = self.root;
        if self.max_free(t) < len {
            return None;
        }
        while let Some(n) = self.node(t) {
            if self.max_free(n.left) >= len {
                t = n.left;
            } else if n.extent.free_len() >= len {
                return Some((n.extent.start, t));
            } else {
                t = n.right;
            }
        }
        None
    }

    fn fit_aligned(&self, t: u32, len: u64, align: u64) -> Option<(u64, u32)> {
        let n = self.node(t)?;
        if n.max_free < len {
            return None;
        }
        if let Some(found) = self.fit_aligned(n.left, len, align) {
            return Some(found);
        }
        let e = n.extent;
        if !e.allocated {
            let fits = e
                .start
                .checked_add(align - 1)
                .map(|a| a & !(align - 1))
                .filter(|a| a.checked_add(len).is_some_and(|end| end <= e.end));
            if let Some(addr) = fits {
                return Some((addr, t));
            }
        }
        self.fit_aligned(n.right, len, align)
    }

    /// The largest free extent; the lowest one among equals. `O(d)`.
    pub fn largest_free(&self) -> Option<Extent> {
        let best = self.max_free(self.root);
        if best == 0 {
            return None;
        }
        let mut t = self.root;
        while let Some(n) = self.node(t) {
            if self.max_free(n.left) == best {
                t = n.left;
            } else if n.extent.free_len() == best {
                return Some(n.extent);
            } else {
                t = n.right;
            }
        }
        None
    }

    // --- changes ---------------------------------------------------------

    /// Allocates `len` bytes at the lowest free address that is a multiple
    /// of `align` (a power of two; `len > 0` is the caller's business):
    /// first fit and painting in one, the fit's node reused. `O(d)` for
    /// `align` 1.
    ///
    /// Errors: [`Error::NoSpace`], [`Error::CapacityExceeded`].
    pub fn allocate(&mut self, len: u64, align: u64) -> Result<u64, Error> {
        let (start, x) = self.fit(len, align).ok_or(Error::NoSpace)?;
        // The fit checked `start + len` against the extent's end.
        let end = start.checked_add(len).ok_or(Error::NoSpace)?;
        self.paint_node(x, start, end, true)?;
        Ok(start)
    }

    /// Declares `[start, end)` free RAM. The caller has checked that no
    /// byte of it is RAM yet. Fails with [`Error::CapacityExceeded`],
    /// changing nothing, if the extents or runs would not fit.
    pub fn register(&mut self, start: u64, end: u64) -> Result<(), Error> {
        // The new run, merged with the runs it touches.
        let i = self.runs.partition_point(|r| r.end < start);
        let j = self.runs.partition_point(|r| r.start <= end);
        let (i, j) = (i.min(j), j);
        let mut merged = Run { start, end };
        if let Some(first) = self.runs.get(i).filter(|_| i < j) {
            merged.start = merged.start.min(first.start);
        }
        if let Some(last) = self.runs.get(j.wrapping_sub(1)).filter(|_| i < j) {
            merged.end = merged.end.max(last.end);
        }
        if self.runs.len() - (j - i) + 1 > N {
            return Err(Error::CapacityExceeded);
        }
        self.paint(start, end, false)?;
        // Cannot fail: the capacity was checked above.
        let _ = splice_one(&mut self.runs, i, j, merged);
        Ok(())
    }

    /// Sets every byte of `[start, end)` (which the caller has checked is
    /// RAM, or is registering) to allocated or free, keeping the extents
    /// canonical. Fails with [`Error::CapacityExceeded`], changing nothing,
    /// if the result needs more than `N` extents.
    pub fn paint(&mut self, start: u64, end: u64, allocated: bool) -> Result<(), Error> {
        debug_assert!(start < end);
        if let Some(done) = self.paint_within(start, end, allocated) {
            return done;
        }
        // The extents that overlap or touch [start, end]: `k` of them from
        // `first`, all replaced by at most three pieces after `anchor`.
        let first = self.first_touching(start);
        let anchor = match self.node(first) {
            Some(n) => n.prev,
            None => self.last(),
        };
        let (mut k, mut last) = (0usize, NIL);
        let mut t = first;
        while let Some(n) = self.node(t).filter(|n| n.extent.start <= end) {
            k += 1;
            last = t;
            t = n.next;
        }
        let mut pieces: heapless::Vec<Extent, 3> = heapless::Vec::new();
        let (mut new_start, mut new_end) = (start, end);
        if let Some(first) = self.extent(first).filter(|_| k > 0) {
            if first.start < start {
                if first.allocated == allocated {
                    new_start = first.start;
                } else {
                    let _ = pieces.push(Extent {
                        end: first.end.min(start),
                        ..first
                    });
                }
            }
        }
        let mut tail = None;
        if let Some(last) = self.extent(last) {
            if last.end > end {
                if last.allocated == allocated {
                    new_end = last.end;
                } else {
                    tail = Some(Extent {
                        start: last.start.max(end),
                        ..last
                    });
                }
            }
        }
        let _ = pieces.push(Extent {
            start: new_start,
            end: new_end,
            allocated,
        });
        if let Some(tail) = tail {
            let _ = pieces.push(tail);
        }
        if self.len - k + pieces.len() > N {
            return Err(Error::CapacityExceeded);
        }
        let mut t = first;
        for _ in 0..k {
            let next = self.next(t);
            self.unlink(t);
            t = next;
        }
        let mut at = anchor;
        for piece in pieces {
            at = self.add_after(at, piece);
        }
        Ok(())
    }
}

/// Replaces `v[i..j]` by `item` (`i == j`: inserts it at `i`), moving the
/// tail with checked accesses: no panic path, which `heapless::Vec::insert`
/// keeps. `Err` (nothing changed) if `i > j`, `j > len`, or an insertion
/// does not fit.
pub(crate) fn splice_one<T: Copy, const N: usize>(
    v: &mut heapless::Vec<T, N>,
    i: usize,
    j: usize,
    item: T,
) -> Result<(), ()> {
    let old = v.len();
    if i > j || j > old {
        return Err(());
    }
    if i == j {
        v.push(item).map_err(|_| ())?;
        let slots = v.as_mut_slice();
        for k in (i + 1..slots.len()).rev() {
            if let Some(&prev) = slots.get(k - 1) {
                if let Some(slot) = slots.get_mut(k) {
                    *slot = prev;
                }
            }
        }
    } else {
        let removed = j - i - 1;
        let slots = v.as_mut_slice();
        for k in i + 1..old - removed {
            if let Some(&next) = slots.get(k + removed) {
                if let Some(slot) = slots.get_mut(k) {
                    *slot = next;
                }
            }
        }
        v.truncate(old - removed);
    }
    if let Some(slot) = v.get_mut(i) {
        *slot = item;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::String, vec, vec::Vec};

    fn ext(start: u64, end: u64, allocated: bool) -> Extent {
        Extent {
            start,
            end,
            allocated,
        }
    }

    fn all<const N: usize>(x: &Extents<N>) -> heapless::Vec<Extent, N> {
        x.iter().collect()
    }

    /// Every structural invariant, or the first one broken: the in-order
    /// walk, the address-order list and `head` agree; extents are sorted,
    /// non-empty, non-overlapping and canonical; parents, heap order and
    /// `max_free` are right; every node is in the tree or on the free list.
    fn check<const N: usize>(x: &Extents<N>) -> Result<(), String> {
        fn walk<const N: usize>(
            x: &Extents<N>,
            t: u32,
            parent: u32,
            order: &mut Vec<u32>,
        ) -> Result<u64, String> {
            let Some(n) = x.node(t) else { return Ok(0) };
            if n.parent != parent {
                return Err(format!("node {t}: parent {} != {parent}", n.parent));
            }
            for c in [n.left, n.right] {
                if c != NIL && x.priority(c) > n.priority {
                    return Err(format!("node {t}: child {c} has a higher priority"));
                }
            }
            let l = walk(x, n.left, t, order)?;
            order.push(t);
            let r = walk(x, n.right, t, order)?;
            let want = n.extent.free_len().max(l).max(r);
            if n.max_free != want {
                return Err(format!("node {t}: max_free {} != {want}", n.max_free));
            }
            Ok(want)
        }
        let mut order = Vec::new();
        walk(x, x.root, NIL, &mut order)?;
        if order.len() != x.len {
            return Err(format!("{} nodes in the tree, len {}", order.len(), x.len));
        }
        let mut listed = Vec::new();
        let (mut t, mut prev) = (x.head, NIL);
        while let Some(n) = x.node(t) {
            if n.prev != prev {
                return Err(format!("node {t}: prev {} != {prev}", n.prev));
            }
            listed.push(t);
            if listed.len() > N {
                return Err("the list has a cycle".into());
            }
            prev = t;
            t = n.next;
        }
        if listed != order {
            return Err(format!("list {listed:?} != in-order {order:?}"));
        }
        for pair in order.windows(2) {
            let (a, b) = (x.extent(pair[0]).unwrap(), x.extent(pair[1]).unwrap());
            if a.end > b.start || (a.end == b.start && a.allocated == b.allocated) {
                return Err(format!("{a:?} then {b:?}"));
            }
        }
        if order
            .iter()
            .any(|&i| x.extent(i).is_some_and(|e| e.start >= e.end))
        {
            return Err("an empty extent".into());
        }
        let mut free = 0;
        let mut t = x.free_list;
        while x.node(t).is_some() {
            free += 1;
            if free > N {
                return Err("the free list has a cycle".into());
            }
            t = x.next(t);
        }
        if free + x.len != x.fresh {
            return Err(format!(
                "{free} free + {} used != {} handed out",
                x.len, x.fresh
            ));
        }
        Ok(())
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        const UNIVERSE: u64 = 256;

        #[derive(Clone, Debug)]
        enum Op {
            Register(u64, u64),
            Paint(u64, u64, bool),
            Allocate(u64, u64),
            FlipWithin(u64, u64, bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            let range = (0..UNIVERSE, 1..64u64);
            prop_oneof![
                range.clone().prop_map(|(a, l)| Op::Register(a, l)),
                (range.clone(), any::<bool>()).prop_map(|((a, l), s)| Op::Paint(a, l, s)),
                (1..48u64, 0..4u32).prop_map(|(l, k)| Op::Allocate(l, 1 << k)),
                (range, any::<bool>()).prop_map(|((a, l), s)| Op::FlipWithin(a, l, s)),
            ]
        }

        /// Byte states: `None` not RAM, `Some(allocated)`.
        fn extents_of(bytes: &[Option<bool>]) -> Vec<Extent> {
            let mut out: Vec<Extent> = Vec::new();
            for (a, s) in bytes.iter().enumerate() {
                let Some(allocated) = *s else { continue };
                let a = a as u64;
                match out.last_mut() {
                    Some(e) if e.end == a && e.allocated == allocated => e.end += 1,
                    _ => out.push(ext(a, a + 1, allocated)),
                }
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 1000 }))]
            /// The tree against a byte map, every invariant after every
            /// change, with a capacity small enough to be hit.
            #[test]
            fn tree_matches_byte_map(ops in prop::collection::vec(op(), 1..80)) {
                const N: usize = 24;
                let mut x = Extents::<N>::new();
                let mut bytes = vec![None; UNIVERSE as usize + 64];
                for op in ops {
                    // Each op gives what the bytes become, or a refusal
                    // (capacity) that must change nothing.
                    let mut next = bytes.clone();
                    let refused = match op {
                        Op::Register(a, l) => {
                            let r = a as usize..(a + l) as usize;
                            if !bytes[r.clone()].iter().all(Option::is_none) {
                                continue;
                            }
                            next[r].fill(Some(false));
                            x.register(a, a + l).err()
                        }
                        Op::Paint(a, l, s) => {
                            let r = a as usize..(a + l) as usize;
                            if !bytes[r.clone()].iter().all(Option::is_some) {
                                continue;
                            }
                            next[r].fill(Some(s));
                            x.paint(a, a + l, s).err()
                        }
                        Op::Allocate(l, align) => {
                            let want = (0..=UNIVERSE + 64 - l)
                                .filter(|a| a % align == 0)
                                .find(|&a| {
                                    bytes[a as usize..(a + l) as usize]
                                        .iter()
                                        .all(|s| *s == Some(false))
                                });
                            prop_assert_eq!(x.first_fit(l, align), want);
                            if let Some(a) = want {
                                next[a as usize..(a + l) as usize].fill(Some(true));
                            }
                            match x.allocate(l, align) {
                                Ok(a) => {
                                    prop_assert_eq!(Some(a), want);
                                    None
                                }
                                Err(Error::NoSpace) => {
                                    prop_assert_eq!(want, None);
                                    None
                                }
                                Err(e) => Some(e),
                            }
                        }
                        Op::FlipWithin(a, l, s) => {
                            let inside = x
                                .iter()
                                .any(|e| e.allocated != s && e.start <= a && a + l <= e.end);
                            if inside {
                                next[a as usize..(a + l) as usize].fill(Some(s));
                            }
                            match x.flip_within(a, a + l, s) {
                                None => {
                                    prop_assert!(!inside);
                                    None
                                }
                                Some(r) => {
                                    prop_assert!(inside);
                                    r.err()
                                }
                            }
                        }
                    };
                    match refused {
                        None => bytes = next,
                        Some(e) => prop_assert_eq!(e, Error::CapacityExceeded),
                    }
                    if let Err(broken) = check(&x) {
                        return Err(TestCaseError::fail(broken));
                    }
                    let want = extents_of(&bytes);
                    prop_assert_eq!(x.iter().collect::<Vec<_>>(), want.clone());
                    prop_assert_eq!(x.len(), want.len());
                    let largest = want
                        .iter()
                        .filter(|e| !e.allocated)
                        .fold(None::<Extent>, |best, e| match best {
                            Some(b) if b.end - b.start >= e.end - e.start => Some(b),
                            _ => Some(*e),
                        });
                    prop_assert_eq!(x.largest_free(), largest);
                }
            }
        }
    }

    #[test]
    fn adjacent_registrations_merge() {
        let mut x = Extents::<4>::new();
        x.register(0x1000, 0x2000).unwrap();
        x.register(0x3000, 0x4000).unwrap();
        x.register(0x2000, 0x3000).unwrap();
        assert_eq!(all(&x), [ext(0x1000, 0x4000, false)]);
        assert_eq!(
            x.runs(),
            [Run {
                start: 0x1000,
                end: 0x4000
            }]
        );
    }

    #[test]
    fn allocation_in_the_middle_splits_and_free_rejoins() {
        let mut x = Extents::<4>::new();
        x.register(0, 100).unwrap();
        x.paint(40, 60, true).unwrap();
        assert_eq!(
            all(&x),
            [ext(0, 40, false), ext(40, 60, true), ext(60, 100, false)]
        );
        assert_eq!(x.range_state(30, 50), RangeState::Mixed);
        assert_eq!(x.range_state(40, 60), RangeState::AllAllocated);
        assert_eq!(x.range_state(60, 100), RangeState::AllFree);
        assert_eq!(x.range_state(60, 101), RangeState::NotAllRam);
        x.paint(40, 60, false).unwrap();
        assert_eq!(all(&x), [ext(0, 100, false)]);
    }

    #[test]
    fn capacity_is_checked_before_anything_changes() {
        let mut x = Extents::<2>::new();
        x.register(0, 100).unwrap();
        assert_eq!(x.paint(40, 60, true), Err(Error::CapacityExceeded));
        assert_eq!(all(&x), [ext(0, 100, false)]);
        x.paint(0, 10, true).unwrap();
        assert_eq!(all(&x), [ext(0, 10, true), ext(10, 100, false)]);
    }

    #[test]
    fn first_fit_and_largest_free_over_many_extents() {
        let mut x = Extents::<512>::new();
        x.register(0, 1 << 20).unwrap();
        // Allocate every other 4 KiB page: 128 free holes of 4 KiB.
        for k in 0..128u64 {
            x.paint(k * 0x2000, k * 0x2000 + 0x1000, true).unwrap();
        }
        assert_eq!(x.first_fit(0x1000, 1), Some(0x1000));
        // Every hole is at an odd page: none is 8 KiB aligned.
        assert_eq!(x.first_fit(0x1000, 0x2000), None);
        assert_eq!(x.first_fit(0x2000, 1), None);
        // All holes are equal: the lowest is the largest.
        assert_eq!(x.largest_free(), Some(ext(0x1000, 0x2000, false)));
        x.paint(0x1000, 0x2000, true).unwrap();
        assert_eq!(x.first_fit(0x1000, 1), Some(0x3000));
        assert_eq!(x.len(), all(&x).len());
    }
}
