// SPDX-License-Identifier: BSD-2-Clause
//! A burst of frames from one port, grouped per destination.

use crate::{Decision, Error, PortSet, Ports, Switch};

/// The most frames in one burst: a destination's frames are one 64-bit
/// word, bit `i` for frame `i`.
pub const MAX_BURST: usize = 64;

/// Deliveries of a burst of up to [`MAX_BURST`] frames from one port,
/// grouped per destination port, each destination's frames in burst
/// order. [`push`](Self::push) is `O(1)` for a unicast decision and
/// `O(PORTS)` for a flood; [`frames`](Self::frames) yields a frame in
/// `O(1)`. Size: two words per port.
///
/// The glue reads a burst of transmit frames out of the sender's guest RAM
/// in one copy call, decides each, and then writes, for each destination
/// port, all the frames that go there in one copy call into that port's
/// posted receive buffers. A [`Plan`] is that grouping: per destination,
/// the indices of its frames in the order they were sent, so the order of
/// frames between any two ports is kept.
///
/// # What a burst costs
///
/// Frame by frame, a burst of 64 frames costs 64 read calls and one write
/// call per delivery: 128 calls if every frame is unicast, and with 4
/// ports and all of them broadcasts, 64 + 64 × 3 = 256. Planned, it costs
/// one read call and one write call per destination port that gets
/// anything: 2 calls for 64 unicast frames to one port, and at most
/// `1 + (PORTS - 1)` however the frames are addressed (4 for the 4-port
/// broadcast burst), because a frame never goes back to its sender.
///
/// One limit applies on top: a copy call carries at most
/// `guest_ram::protocol::MAX_SEGMENTS` (39) scattered segments, and each
/// frame in guest RAM is at least one segment (its buffer). So a burst of
/// 64 frames in 64 separate transmit buffers takes 2 read calls, and a
/// destination that gets more than 39 frames in separate receive buffers
/// 2 write calls: still at most `2 + 2 × (PORTS - 1)` for 64 frames.
///
/// ```
/// use net_switch::{Decision, Plan, PortSet, Reason};
/// let mut plan = Plan::<3>::new();
/// plan.push(60, &Decision::Deliver(1))?;
/// plan.push(60, &Decision::Drop(Reason::Spoofed))?;
/// plan.push(42, &Decision::Flood(PortSet(0b110)))?;
/// plan.push(100, &Decision::Deliver(1))?;
/// assert_eq!(plan.destinations(), PortSet(0b110));
/// assert_eq!(plan.frames(1).collect::<Vec<_>>(), [0, 2, 3]);
/// assert_eq!(plan.frames(2).collect::<Vec<_>>(), [2]);
/// assert_eq!(plan.bytes(1), 202);
/// assert_eq!(plan.write_calls(), 2);
/// # Ok::<(), net_switch::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<const PORTS: usize> {
    /// Per destination: bit `i` set if frame `i` goes there.
    frames: [u64; PORTS],
    /// Per destination: the bytes of its frames.
    bytes: [usize; PORTS],
    /// Frames pushed, delivered or not.
    len: usize,
}

impl<const PORTS: usize> Default for Plan<PORTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const PORTS: usize> Plan<PORTS> {
    /// An empty plan.
    pub const fn new() -> Self {
        Plan {
            frames: [0; PORTS],
            bytes: [0; PORTS],
            len: 0,
        }
    }

    /// Adds the burst's next frame, `len` bytes long, with its decision;
    /// returns its index in the burst. A dropped frame takes an index and
    /// goes nowhere. Ports the plan does not have are left out (a
    /// [`Switch`] of the same `PORTS` never names one).
    /// [`Error::BurstTooLong`] if the plan already has [`MAX_BURST`]
    /// frames.
    pub fn push(&mut self, len: usize, decision: &Decision) -> Result<usize, Error> {
        let index = self.len;
        if index >= MAX_BURST {
            return Err(Error::BurstTooLong {
                frames: index.saturating_add(1),
            });
        }
        for port in decision.ports() {
            if let (Some(frames), Some(bytes)) =
                (self.frames.get_mut(port), self.bytes.get_mut(port))
            {
                *frames |= 1 << index;
                *bytes = bytes.saturating_add(len);
            }
        }
        self.len = index + 1;
        Ok(index)
    }

    /// How many frames were pushed, delivered or not.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame was pushed.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ports that get at least one frame.
    pub fn destinations(&self) -> PortSet {
        let mut set = PortSet::EMPTY;
        for (port, frames) in self.frames.iter().enumerate() {
            if *frames != 0 {
                set.insert(port);
            }
        }
        set
    }

    /// The indices of the frames for `port`, in burst order (none for a
    /// port the plan does not have).
    pub fn frames(&self, port: usize) -> Ports {
        PortSet(self.frames.get(port).copied().unwrap_or(0)).iter()
    }

    /// How many frames go to `port`.
    pub fn count(&self, port: usize) -> usize {
        self.frames(port).len()
    }

    /// The bytes of the frames for `port` (saturating).
    pub fn bytes(&self, port: usize) -> usize {
        self.bytes.get(port).copied().unwrap_or(0)
    }

    /// Copy calls to write the burst out, one per destination port (see
    /// the module documentation for the segment limit).
    pub fn write_calls(&self) -> usize {
        self.destinations().len()
    }
}

impl<const PORTS: usize> Switch<PORTS> {
    /// Decides every frame of a burst from `src` (as
    /// [`decide`](Self::decide), counting each) and plans the deliveries.
    /// [`Error::BurstTooLong`] for more than [`MAX_BURST`] frames, before
    /// any is decided or counted.
    pub fn decide_burst(&mut self, src: usize, frames: &[&[u8]]) -> Result<Plan<PORTS>, Error> {
        if frames.len() > MAX_BURST {
            return Err(Error::BurstTooLong {
                frames: frames.len(),
            });
        }
        let mut plan = Plan::new();
        for frame in frames {
            let decision = self.decide(src, frame);
            plan.push(frame.len(), &decision)?;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::{Config, Mac, Reason};
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn groups_in_order() {
        let mut plan = Plan::<4>::new();
        assert!(plan.is_empty());
        let decisions = [
            Decision::Deliver(2),
            Decision::Flood(PortSet(0b1110)),
            Decision::Drop(Reason::Denied),
            Decision::Deliver(1),
            Decision::Deliver(2),
        ];
        for (i, d) in decisions.iter().enumerate() {
            assert_eq!(plan.push(100 + i, d), Ok(i));
        }
        assert_eq!(plan.len(), 5);
        assert_eq!(plan.destinations(), PortSet(0b1110));
        assert_eq!(plan.frames(1).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(plan.frames(2).collect::<Vec<_>>(), [0, 1, 4]);
        assert_eq!(plan.frames(3).collect::<Vec<_>>(), [1]);
        assert_eq!(plan.frames(0).count(), 0);
        assert_eq!(plan.frames(4).count(), 0);
        assert_eq!(plan.count(2), 3);
        assert_eq!(plan.bytes(2), 100 + 101 + 104);
        assert_eq!(plan.bytes(9), 0);
        assert_eq!(plan.write_calls(), 3);
    }

    #[test]
    fn full_burst() {
        let mut plan = Plan::<2>::default();
        for i in 0..MAX_BURST {
            assert_eq!(plan.push(60, &Decision::Deliver(1)), Ok(i));
        }
        assert_eq!(
            plan.push(60, &Decision::Deliver(1)),
            Err(Error::BurstTooLong { frames: 65 })
        );
        assert_eq!(plan.count(1), 64);
        assert_eq!(plan.frames(1).last(), Some(63));
        assert_eq!(plan.bytes(1), 64 * 60);
    }

    #[test]
    fn foreign_ports_are_left_out() {
        let mut plan = Plan::<2>::new();
        plan.push(60, &Decision::Deliver(5)).unwrap();
        plan.push(60, &Decision::Flood(PortSet(u64::MAX))).unwrap();
        assert_eq!(plan.destinations(), PortSet(0b11));
        assert_eq!(plan.frames(0).collect::<Vec<_>>(), [1]);
        let mut big = Plan::<1>::new();
        big.push(usize::MAX, &Decision::Deliver(0)).unwrap();
        big.push(usize::MAX, &Decision::Deliver(0)).unwrap();
        assert_eq!(big.bytes(0), usize::MAX);
    }

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f
    }

    #[test]
    fn a_burst_through_the_switch() {
        let macs: [Mac; 4] = core::array::from_fn(|i| Mac([2, 0, 0, 0, 0, i as u8]));
        let mut config = Config::new(macs).unwrap();
        config.deny(0, 3).unwrap();
        let mut sw = Switch::new(config);
        let frames = [
            frame(macs[1], macs[0]),
            frame(Mac::BROADCAST, macs[0]),
            frame(macs[3], macs[0]),
            frame(macs[2], macs[1]),
            frame(macs[2], macs[0]),
        ];
        let slices: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let plan = sw.decide_burst(0, &slices).unwrap();
        assert_eq!(plan.len(), 5);
        assert_eq!(plan.frames(1).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(plan.frames(2).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(plan.destinations(), PortSet(0b110));
        let c = *sw.counters(0).unwrap();
        assert_eq!((c.rx, c.denied, c.spoofed), (3, 1, 1));
        // Too long: nothing decided, nothing counted.
        let long = vec![slices[0]; MAX_BURST + 1];
        assert_eq!(
            sw.decide_burst(0, &long),
            Err(Error::BurstTooLong { frames: 65 })
        );
        assert_eq!(sw.counters(0).unwrap(), &c);
        let all = vec![slices[0]; MAX_BURST];
        let plan = sw.decide_burst(0, &all).unwrap();
        assert_eq!(plan.count(1), MAX_BURST);
        assert_eq!(plan.write_calls(), 1);
    }
}
