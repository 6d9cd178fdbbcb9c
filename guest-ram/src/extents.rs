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
//! with no free extent long enough.
//!
//! The registered RAM runs (free and allocated together) are kept apart in
//! a short sorted list that only registration changes. "Is this range
//! RAM?", asked by every copy, is a binary search there and does not
//! depend on how many allocations exist.
//!
//! Complexity, with `n` the number of extents (at most `N`), `d` the
//! tree's depth (`O(log n)` expected) and `r` the number of RAM runs:
//! - "is `[a, b)` RAM": `O(log r)`;
//! - the state of a range covering `k` extents: `O(k·d)`;
//! - changing a range inside one extent (every allocate and free, most
//!   marks): `O(d)`, boundaries moved in place and at most two nodes
//!   inserted or removed; a range covering `k` extents: `O(d + k)`
//!   (split, replace, merge);
//! - largest free extent: `O(d)`;
//! - first fit of `len` bytes: `O(d)` when `align` is 1, or when the first
//!   free extent of at least `len` bytes can hold an aligned range; each
//!   free extent of at least `len` but less than `len + align - 1` bytes
//!   that cannot adds `O(d)`.

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
    left: u32,
    right: u32,
    priority: u32,
    /// Longest free extent in this subtree (0: none).
    max_free: u64,
}

/// Deepest path [`Extents::path_to`] records: a treap of random
/// priorities is about `2.5 ln n` deep, 23 for 8,192 extents; deeper
/// paths fall back to recursion.
const PATH: usize = 40;
/// In a [`Path`] entry, the step from this node went left.
const WENT_LEFT: u32 = 1 << 31;

/// A root-to-node path: node indices, each with [`WENT_LEFT`] if the next
/// step went left.
struct Path {
    steps: [u32; PATH],
    len: usize,
}

impl Path {
    /// The node and direction of step `k`.
    fn get(&self, k: usize) -> Option<(u32, bool)> {
        self.steps
            .get(k)
            .map(|s| (s & !WENT_LEFT, s & WENT_LEFT != 0))
    }
}

const EMPTY: Node = Node {
    extent: Extent {
        start: 0,
        end: 0,
        allocated: false,
    },
    left: NIL,
    right: NIL,
    priority: 0,
    max_free: 0,
};

/// The canonical extents and RAM runs; see the module docs.
#[derive(Clone, Debug)]
pub struct Extents<const N: usize> {
    nodes: [Node; N],
    root: u32,
    /// Head of the list of free nodes, linked through `left`.
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

    /// The extents in address order. `O(d)` per step.
    pub fn iter(&self) -> impl Iterator<Item = Extent> + '_ {
        let mut at = 0u64;
        let mut done = false;
        core::iter::from_fn(move || {
            if done {
                return None;
            }
            let e = self.first_reaching_past(at)?;
            done = e.end == u64::MAX;
            at = e.end;
            Some(e)
        })
    }

    // --- arena -----------------------------------------------------------

    fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize)
    }

    fn max_free(&self, i: u32) -> u64 {
        self.node(i).map_or(0, |n| n.max_free)
    }

    fn left(&self, i: u32) -> u32 {
        self.node(i).map_or(NIL, |n| n.left)
    }

    fn set_children(&mut self, i: u32, left: u32, right: u32) {
        let max_free = self
            .max_free(left)
            .max(self.max_free(right))
            .max(self.node(i).map_or(0, |n| n.extent.free_len()));
        if let Some(n) = self.nodes.get_mut(i as usize) {
            n.left = left;
            n.right = right;
            n.max_free = max_free;
        }
    }

    fn alloc(&mut self, extent: Extent) -> u32 {
        let i = if self.free_list != NIL {
            let i = self.free_list;
            self.free_list = self.left(i);
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
        if let Some(n) = self.nodes.get_mut(i as usize) {
            *n = Node {
                extent,
                left: NIL,
                right: NIL,
                priority: self.seed,
                max_free: extent.free_len(),
            };
        }
        self.len += 1;
        i
    }

    /// Returns every node of subtree `t` to the free list.
    fn release(&mut self, t: u32) {
        let Some(&n) = self.node(t) else {
            return;
        };
        self.release(n.left);
        self.release(n.right);
        if let Some(node) = self.nodes.get_mut(t as usize) {
            node.left = self.free_list;
        }
        self.free_list = t;
        self.len -= 1;
    }

    fn count(&self, t: u32) -> usize {
        self.node(t)
            .map_or(0, |n| 1 + self.count(n.left) + self.count(n.right))
    }

    // --- treap -----------------------------------------------------------

    /// Splits subtree `t` into the extents that satisfy `before` (a prefix
    /// in address order) and the rest.
    fn split(&mut self, t: u32, before: &impl Fn(&Extent) -> bool) -> (u32, u32) {
        let Some(&n) = self.node(t) else {
            return (NIL, NIL);
        };
        if before(&n.extent) {
            let (a, b) = self.split(n.right, before);
            self.set_children(t, n.left, a);
            (t, b)
        } else {
            let (a, b) = self.split(n.left, before);
            self.set_children(t, b, n.right);
            (a, t)
        }
    }

    /// Joins two subtrees, every extent of `a` before every extent of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        match (self.node(a).copied(), self.node(b).copied()) {
            (None, _) => b,
            (_, None) => a,
            (Some(x), Some(y)) => {
                if x.priority >= y.priority {
                    let right = self.merge(x.right, b);
                    self.set_children(a, x.left, right);
                    a
                } else {
                    let left = self.merge(a, y.left);
                    self.set_children(b, left, y.right);
                    b
                }
            }
        }
    }

    fn leftmost(&self, mut t: u32) -> Option<Extent> {
        let mut found = None;
        while let Some(n) = self.node(t) {
            found = Some(n.extent);
            t = n.left;
        }
        found
    }

    fn rightmost(&self, mut t: u32) -> Option<Extent> {
        let mut found = None;
        while let Some(n) = self.node(t) {
            found = Some(n.extent);
            t = n.right;
        }
        found
    }

    /// The first extent that ends after `addr` (it contains `addr`, or
    /// lies past it).
    fn first_reaching_past(&self, addr: u64) -> Option<Extent> {
        let mut t = self.root;
        let mut found = None;
        while let Some(n) = self.node(t) {
            if n.extent.end > addr {
                found = Some(n.extent);
                t = n.left;
            } else {
                t = n.right;
            }
        }
        found
    }

    // --- in-place changes (the common case) --------------------------------

    fn extent(&self, i: u32) -> Option<Extent> {
        self.node(i).map(|n| n.extent)
    }

    fn priority(&self, i: u32) -> u32 {
        self.node(i).map_or(0, |n| n.priority)
    }

    /// Replaces node `i`'s extent (same place in the order) and, if its
    /// free length changed, recomputes `max_free` up to the root. An
    /// allocated extent's free length is 0 before and after: no walk.
    fn set_extent(&mut self, i: u32, extent: Extent) {
        let Some(n) = self.nodes.get_mut(i as usize) else {
            return;
        };
        let changed = n.extent.free_len() != extent.free_len();
        n.extent = extent;
        if changed {
            self.refresh(self.root, extent.start);
        }
    }

    /// Recomputes `max_free` along the path from `t` to the extent that
    /// starts at `key`.
    fn refresh(&mut self, t: u32, key: u64) {
        let Some(&n) = self.node(t) else {
            return;
        };
        if key < n.extent.start {
            self.refresh(n.left, key);
        } else if key > n.extent.start {
            self.refresh(n.right, key);
        }
        self.set_children(t, n.left, n.right);
    }

    fn rotate_right(&mut self, t: u32) -> u32 {
        let l = self.left(t);
        let (Some(&tn), Some(&ln)) = (self.node(t), self.node(l)) else {
            return t;
        };
        self.set_children(t, ln.right, tn.right);
        self.set_children(l, ln.left, t);
        l
    }

    fn rotate_left(&mut self, t: u32) -> u32 {
        let r = self.node(t).map_or(NIL, |n| n.right);
        let (Some(&tn), Some(&rn)) = (self.node(t), self.node(r)) else {
            return t;
        };
        self.set_children(t, tn.left, rn.left);
        self.set_children(r, t, rn.right);
        r
    }

    /// Inserts node `i` (whose extent starts at `key`, a start no extent
    /// has) into subtree `t`; returns the new subtree root. Recursive: the
    /// fallback of [`add`](Self::add) for a path deeper than its stack.
    fn insert(&mut self, t: u32, i: u32, key: u64) -> u32 {
        let Some(&n) = self.node(t) else {
            return i;
        };
        if key < n.extent.start {
            let l = self.insert(n.left, i, key);
            self.set_children(t, l, n.right);
            if self.priority(l) > n.priority {
                return self.rotate_right(t);
            }
        } else {
            let r = self.insert(n.right, i, key);
            self.set_children(t, n.left, r);
            if self.priority(r) > n.priority {
                return self.rotate_left(t);
            }
        }
        t
    }

    /// Removes the extent that starts at `key` from subtree `t`; returns
    /// the new subtree root. Recursive: the fallback of
    /// [`remove_at`](Self::remove_at).
    fn remove(&mut self, t: u32, key: u64) -> u32 {
        let Some(&n) = self.node(t) else {
            return NIL;
        };
        if key == n.extent.start {
            if let Some(node) = self.nodes.get_mut(t as usize) {
                node.left = self.free_list;
            }
            self.free_list = t;
            self.len -= 1;
            return self.merge(n.left, n.right);
        }
        if key < n.extent.start {
            let l = self.remove(n.left, key);
            self.set_children(t, l, n.right);
        } else {
            let r = self.remove(n.right, key);
            self.set_children(t, n.left, r);
        }
        t
    }

    /// The path from the root towards `key`: the nodes visited and whether
    /// each step went left, stopping at the node that starts at `key` (if
    /// any, included). `None` if the tree is deeper than the stack (with
    /// random priorities, as unlikely as a treap of 2^32 nodes; the
    /// callers then fall back to recursion).
    fn path_to(&self, key: u64, path: &mut Path) -> bool {
        path.len = 0;
        let mut t = self.root;
        while let Some(n) = self.node(t) {
            let left = key < n.extent.start;
            let Some(slot) = path.steps.get_mut(path.len) else {
                return false;
            };
            *slot = if left { t | WENT_LEFT } else { t };
            path.len += 1;
            if key == n.extent.start {
                return true;
            }
            t = if left { n.left } else { n.right };
        }
        true
    }

    /// Hangs subtree `child` where the path's node `k` (or, past the end,
    /// the root) had the subtree the path continued into, and brings
    /// `max_free` up to date above it. Stops as soon as a node's
    /// `max_free` comes out unchanged: nothing above it can change.
    fn reattach(&mut self, path: &Path, mut k: usize, child: u32) {
        let mut child = child;
        loop {
            let Some(k_up) = k.checked_sub(1) else {
                self.root = child;
                return;
            };
            k = k_up;
            let Some((p, left)) = path.get(k) else {
                return;
            };
            let Some(&pn) = self.node(p) else {
                return;
            };
            let before = pn.max_free;
            let (l, r) = if left {
                (child, pn.right)
            } else {
                (pn.left, child)
            };
            let relinked = if left {
                pn.left != child
            } else {
                pn.right != child
            };
            self.set_children(p, l, r);
            if !relinked && self.max_free(p) == before {
                return;
            }
            child = p;
            if !relinked {
                // Only max_free changed here: the links above are right.
                continue;
            }
            // The link changed (a new subtree root below p): p itself stays
            // the root of its subtree, so only max_free above can change.
        }
    }

    fn add(&mut self, extent: Extent) {
        let i = self.alloc(extent);
        let mut path = Path {
            steps: [0; PATH],
            len: 0,
        };
        if !self.path_to(extent.start, &mut path) {
            self.root = self.insert(self.root, i, extent.start);
            return;
        }
        // Hang `i` below the path's last node, then rotate it up while its
        // priority beats its parent's.
        let mut k = path.len;
        let mut sub = i;
        while let Some(k_up) = k.checked_sub(1) {
            let Some((p, left)) = path.get(k_up) else {
                break;
            };
            let Some(&pn) = self.node(p) else {
                break;
            };
            if self.priority(sub) <= pn.priority {
                break;
            }
            // `sub` rises above `p`.
            if left {
                if let Some(n) = self.nodes.get_mut(p as usize) {
                    n.left = sub;
                }
                sub = self.rotate_right(p);
            } else {
                if let Some(n) = self.nodes.get_mut(p as usize) {
                    n.right = sub;
                }
                sub = self.rotate_left(p);
            }
            k = k_up;
        }
        self.reattach(&path, k, sub);
    }

    /// Removes the extent that starts at `key`.
    fn remove_at(&mut self, key: u64) {
        let mut path = Path {
            steps: [0; PATH],
            len: 0,
        };
        let found = self.path_to(key, &mut path)
            && path
                .len
                .checked_sub(1)
                .and_then(|k| path.get(k))
                .and_then(|(t, _)| self.extent(t))
                .is_some_and(|e| e.start == key);
        if !found {
            self.root = self.remove(self.root, key);
            return;
        }
        let k = path.len - 1;
        let Some((t, _)) = path.get(k) else {
            return;
        };
        let Some(&n) = self.node(t) else {
            return;
        };
        if let Some(node) = self.nodes.get_mut(t as usize) {
            node.left = self.free_list;
        }
        self.free_list = t;
        self.len -= 1;
        let joined = self.merge(n.left, n.right);
        self.reattach(&path, k, joined);
    }

    /// The node holding `addr`, with its neighbours in address order.
    fn locate(&self, addr: u64) -> Option<(u32, u32, u32)> {
        let (mut before, mut after) = (NIL, NIL);
        let mut t = self.root;
        while let Some(n) = self.node(t) {
            if addr < n.extent.start {
                after = t;
                t = n.left;
            } else if addr >= n.extent.end {
                before = t;
                t = n.right;
            } else {
                let mut l = n.left;
                while let Some(ln) = self.node(l) {
                    before = l;
                    l = ln.right;
                }
                let mut r = n.right;
                while let Some(rn) = self.node(r) {
                    after = r;
                    r = rn.left;
                }
                return Some((t, before, after));
            }
        }
        None
    }

    /// Frees `[start, end)` if it lies inside one allocated extent (the
    /// common case: freeing what one allocation made), in one descent;
    /// `None` if it does not, for the caller's general path.
    pub fn free_within(&mut self, start: u64, end: u64) -> Option<Result<(), Error>> {
        let x = self.first_reaching_past(start)?;
        if !(x.allocated && x.start <= start && end <= x.end) {
            return None;
        }
        self.paint_within(start, end, false)
    }

    /// `paint` of a range inside one extent: boundaries move in place (the
    /// order stays valid) and at most two nodes are inserted or removed.
    /// `None` if the range is not inside one extent.
    fn paint_within(&mut self, start: u64, end: u64, allocated: bool) -> Option<Result<(), Error>> {
        let (x, l, r) = self.locate(start)?;
        let xe = self.extent(x)?;
        if end > xe.end {
            return None;
        }
        if xe.allocated == allocated {
            return Some(Ok(()));
        }
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
            return Some(Err(Error::CapacityExceeded));
        }
        let changed = Extent {
            start,
            end,
            allocated,
        };
        match (at_start, at_end) {
            (true, true) => match (le, re) {
                (Some(le), Some(re)) => {
                    self.remove_at(xe.start);
                    self.remove_at(re.start);
                    self.set_extent(l, Extent { end: re.end, ..le });
                }
                (Some(le), None) => {
                    self.remove_at(xe.start);
                    self.set_extent(l, Extent { end: xe.end, ..le });
                }
                (None, Some(re)) => {
                    self.remove_at(xe.start);
                    self.set_extent(
                        r,
                        Extent {
                            start: xe.start,
                            ..re
                        },
                    );
                }
                (None, None) => {
                    self.set_extent(x, changed);
                }
            },
            (true, false) => {
                self.set_extent(x, Extent { start: end, ..xe });
                match le {
                    Some(le) => {
                        self.set_extent(l, Extent { end, ..le });
                    }
                    None => self.add(changed),
                }
            }
            (false, true) => {
                self.set_extent(x, Extent { end: start, ..xe });
                match re {
                    Some(re) => {
                        self.set_extent(r, Extent { start, ..re });
                    }
                    None => self.add(changed),
                }
            }
            (false, false) => {
                self.set_extent(x, Extent { end: start, ..xe });
                self.add(changed);
                self.add(Extent { start: end, ..xe });
            }
        }
        Some(Ok(()))
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
    pub fn range_state(&self, start: u64, end: u64) -> RangeState {
        if !self.is_ram(start, end) {
            return RangeState::NotAllRam;
        }
        let (mut free, mut allocated) = (false, false);
        let mut at = start;
        while at < end {
            match self.first_reaching_past(at) {
                Some(e) if e.start <= at => {
                    if e.allocated {
                        allocated = true;
                    } else {
                        free = true;
                    }
                    if free && allocated {
                        return RangeState::Mixed;
                    }
                    at = e.end;
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
        self.first_fit_in(self.root, len, align)
    }

    fn first_fit_in(&self, t: u32, len: u64, align: u64) -> Option<u64> {
        let n = self.node(t)?;
        if n.max_free < len {
            return None;
        }
        if let Some(addr) = self.first_fit_in(n.left, len, align) {
            return Some(addr);
        }
        let e = n.extent;
        if !e.allocated {
            let fits = e
                .start
                .checked_add(align - 1)
                .map(|a| a & !(align - 1))
                .filter(|a| a.checked_add(len).is_some_and(|end| end <= e.end));
            if fits.is_some() {
                return fits;
            }
        }
        self.first_fit_in(n.right, len, align)
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
        // The extents that overlap or touch [start, end]: `middle`.
        let (left, rest) = self.split(self.root, &|e| e.end < start);
        let (middle, right) = self.split(rest, &|e| e.start <= end);
        let mut pieces: heapless::Vec<Extent, 3> = heapless::Vec::new();
        let (mut new_start, mut new_end) = (start, end);
        if let Some(first) = self.leftmost(middle) {
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
        if let Some(last) = self.rightmost(middle) {
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
        let replaced = self.count(middle);
        if self.len - replaced + pieces.len() > N {
            let joined = self.merge(left, middle);
            self.root = self.merge(joined, right);
            return Err(Error::CapacityExceeded);
        }
        self.release(middle);
        let mut tree = left;
        for piece in pieces {
            let node = self.alloc(piece);
            tree = self.merge(tree, node);
        }
        self.root = self.merge(tree, right);
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
    use super::*;

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
