// SPDX-License-Identifier: BSD-2-Clause
//! Where frames wait between their two copies: one memory region per pair
//! of ports, in both ports' windows.
//!
//! A frame from port `s` to port `d` is copied twice: out of VM `s`'s
//! transmit buffer into the area for `s -> d` (by VM `s`'s VMM, at the
//! `net` PD's request), and from there into VM `d`'s receive buffer (by VM
//! `d`'s VMM). Both VMMs must reach that area, and no third VMM may: so
//! each pair of ports `{a, b}` has a region of its own, mapped into the
//! `net` PD and into VMM `a` and VMM `b` only, holding the `a -> b` area
//! and then the `b -> a` area. A VMM sees the frames its own VM sent and
//! those sent to it, and no others.
//!
//! Each VMM serves the `net` PD one window (its copy client's shared
//! buffer): the staging region the copy client uses for ring traffic,
//! then the pair region of each other port present, in increasing port
//! order. [`Pairs`] computes where an area lies in a window; the system
//! description generator (`guest_ram_sdf.linux`) lays the windows out by
//! the same rule.
//!
//! ```
//! use net_switch::{Pairs, PortSet};
//! let pairs = Pairs::new(PortSet(0b0111), 0x2_0000, 0x1_8000)?;
//! // Port 1's window: staging, then the pairs {0, 1} and {1, 2}.
//! assert_eq!(pairs.window_len(1), Some(0x2_0000 + 2 * 0x3_0000));
//! // Frames from 1 to 2: the first half of {1, 2}, in both windows.
//! assert_eq!(pairs.area(1, 1, 2), Some(0x2_0000 + 0x3_0000));
//! assert_eq!(pairs.area(2, 1, 2), Some(0x2_0000 + 0x3_0000));
//! // From 2 to 1: its second half.
//! assert_eq!(pairs.area(1, 2, 1), Some(0x2_0000 + 0x3_0000 + 0x1_8000));
//! // Port 0's window holds nothing of the pair {1, 2}.
//! assert_eq!(pairs.area(0, 1, 2), None);
//! # Ok::<(), net_switch::Error>(())
//! ```

use crate::{Error, PortSet, Ports, MAX_PORTS};

/// The layout of every port's window: which ports are present, the
/// staging region's length and one direction's area length (a pair
/// region is two areas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pairs {
    present: PortSet,
    staging: usize,
    area: usize,
}

impl Pairs {
    /// The layout for the `present` ports, each window starting with
    /// `staging` bytes, each area `area` bytes. [`Error::WindowTooLarge`]
    /// if a window's length would overflow `usize`.
    pub fn new(present: PortSet, staging: usize, area: usize) -> Result<Self, Error> {
        let pairs = Pairs {
            present,
            staging,
            area,
        };
        let peers = present.len().saturating_sub(1);
        area.checked_mul(2)
            .and_then(|pair| pair.checked_mul(peers))
            .and_then(|all| all.checked_add(staging))
            .ok_or(Error::WindowTooLarge)?;
        Ok(pairs)
    }

    /// Bytes of one pair region: both areas.
    pub fn pair_len(&self) -> usize {
        self.area.saturating_mul(2)
    }

    /// Bytes of one area.
    pub fn area_len(&self) -> usize {
        self.area
    }

    /// The other ports present, in window order.
    pub fn peers(&self, port: usize) -> Ports {
        let mut set = self.present;
        set.remove(port);
        set.iter()
    }

    /// Bytes of `port`'s window: its staging region and a pair region per
    /// peer. `None` for a port that is not present.
    pub fn window_len(&self, port: usize) -> Option<usize> {
        if port >= MAX_PORTS || !self.present.contains(port) {
            return None;
        }
        // Saturates never: checked for the largest window in `new`.
        Some(
            self.staging
                .saturating_add(self.pair_len().saturating_mul(self.peers(port).len())),
        )
    }

    /// The offset in `window`'s window of the area for frames from `src`
    /// to `dst`: `None` unless `window` is one of them and both are
    /// present and distinct.
    pub fn area(&self, window: usize, src: usize, dst: usize) -> Option<usize> {
        if src == dst || (window != src && window != dst) {
            return None;
        }
        self.window_len(src)?;
        self.window_len(dst)?;
        let peer = if window == src { dst } else { src };
        let rank = self.peers(window).position(|p| p == peer)?;
        let half = if src < dst { 0 } else { self.area };
        Some(
            self.staging
                .saturating_add(self.pair_len().saturating_mul(rank))
                .saturating_add(half),
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn two_ports_share_one_region() {
        let pairs = Pairs::new(PortSet(0b11), 100, 10).unwrap();
        assert_eq!(pairs.window_len(0), Some(120));
        assert_eq!(pairs.window_len(1), Some(120));
        assert_eq!(pairs.window_len(2), None);
        assert_eq!(pairs.area(0, 0, 1), Some(100));
        assert_eq!(pairs.area(1, 0, 1), Some(100));
        assert_eq!(pairs.area(0, 1, 0), Some(110));
        assert_eq!(pairs.area(1, 1, 0), Some(110));
        assert_eq!(pairs.area(0, 0, 0), None);
        assert_eq!(pairs.area(0, 0, 2), None);
        assert_eq!(pairs.area(usize::MAX, 0, 1), None);
    }

    #[test]
    fn absent_ports_take_no_room() {
        // Ports 0, 2 and 3 (1 is absent).
        let pairs = Pairs::new(PortSet(0b1101), 8, 1).unwrap();
        assert_eq!(pairs.peers(2).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(pairs.area(2, 3, 2), Some(8 + 2 + 1));
        assert_eq!(pairs.area(3, 3, 2), Some(8 + 2 + 1));
        assert_eq!(pairs.area(0, 1, 0), None);
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(
            Pairs::new(PortSet(0b111), usize::MAX, 1),
            Err(Error::WindowTooLarge)
        );
        assert_eq!(
            Pairs::new(PortSet(0b11), 0, usize::MAX),
            Err(Error::WindowTooLarge)
        );
    }

    proptest! {
        /// Against a model: every area lies inside both of its ports'
        /// windows, areas of one window never overlap, and an area is the
        /// same half of the same pair region in both windows.
        #[test]
        fn areas_tile_the_windows(present in 0u64..16, staging in 0usize..64, area in 1usize..16) {
            let pairs = Pairs::new(PortSet(present), staging, area).unwrap();
            let ports: Vec<usize> = (0..4).filter(|p| present >> p & 1 == 1).collect();
            for &w in &ports {
                let len = pairs.window_len(w).unwrap();
                let mut spans = Vec::new();
                for &s in &ports {
                    for &d in &ports {
                        let at = pairs.area(w, s, d);
                        if s == d || (w != s && w != d) {
                            prop_assert_eq!(at, None);
                            continue;
                        }
                        let at = at.unwrap();
                        prop_assert!(at >= staging && at + area <= len);
                        // The pair's region: the same index among the
                        // peers of each end, the same half.
                        let (lo, hi) = (s.min(d), s.max(d));
                        prop_assert_eq!((at - staging) % (2 * area), if s == lo { 0 } else { area });
                        let _ = hi;
                        spans.push((at, at + area));
                    }
                }
                spans.sort();
                for pair in spans.windows(2) {
                    prop_assert!(pair[0].1 <= pair[1].0);
                }
            }
        }
    }
}
