// SPDX-License-Identifier: BSD-2-Clause
//! The per-frame decision and the per-port counters.

use core::fmt;

use crate::{Config, Error, Mac, PortSet};

/// What to do with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it into this port's next posted receive buffer.
    Deliver(usize),
    /// Write it to every port of the set: a broadcast or multicast frame,
    /// to each port the ACL allows from its source. Never empty, never
    /// the source port.
    Flood(PortSet),
    /// Nobody gets it.
    Drop(Reason),
}

impl Decision {
    /// The ports the frame goes to: none for a drop.
    pub fn ports(&self) -> PortSet {
        match *self {
            Decision::Deliver(port) => {
                let mut set = PortSet::EMPTY;
                set.insert(port);
                set
            }
            Decision::Flood(set) => set,
            Decision::Drop(_) => PortSet::EMPTY,
        }
    }
}

/// Why a frame is dropped, in the order the checks are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The source port is not one of the switch's: a glue bug, counted
    /// nowhere.
    NoSuchPort,
    /// Shorter than [`MIN_FRAME`](crate::MIN_FRAME) or longer than [`Config::max_frame`] bytes
    /// (lengths without the virtio-net header).
    Malformed,
    /// Its source address is not its port's MAC. A VM cannot take
    /// another's traffic by claiming its address, and a VM port never
    /// learns addresses. (A future uplink port, with many stations behind
    /// it, would learn the source addresses it sees instead, and take
    /// frames to any of them; the VM ports' addresses stay fixed.)
    Spoofed,
    /// Unicast to a MAC that is no port's.
    UnknownDestination,
    /// The ACL forbids every port it would go to: a unicast to a denied
    /// port or to the sender's own MAC, or a broadcast from a port that
    /// may send to nobody.
    Denied,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::NoSuchPort => "no such port",
            Reason::Malformed => "malformed",
            Reason::Spoofed => "spoofed source",
            Reason::UnknownDestination => "unknown destination",
            Reason::Denied => "denied",
        })
    }
}

/// What happened to one port's frames. Every count saturates at
/// `u64::MAX`.
///
/// For each port, every frame [`Switch::decide`] took from it is counted
/// once, in exactly one of `rx`, `malformed`, `spoofed`, `denied` and
/// `unknown`. Every delivery decided to it (one per
/// [`Decision::Deliver`], one per port of a [`Decision::Flood`]) is
/// counted in `tx` until the glue reports it found no buffer
/// ([`Switch::no_buffer`]), which moves it to `dropped_no_buffer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames from the port that went to at least one port.
    pub rx: u64,
    /// Frames delivered to the port.
    pub tx: u64,
    /// Frames for the port that found no posted receive buffer.
    pub dropped_no_buffer: u64,
    /// Frames from the port that the ACL stopped.
    pub denied: u64,
    /// Frames from the port with another source address.
    pub spoofed: u64,
    /// Frames from the port of a bad length.
    pub malformed: u64,
    /// Unicast frames from the port to no port's address.
    pub unknown: u64,
}

impl Counters {
    /// Every frame taken from the port, whatever became of it.
    pub fn received(&self) -> u64 {
        [self.denied, self.spoofed, self.malformed, self.unknown]
            .iter()
            .fold(self.rx, |sum, n| sum.saturating_add(*n))
    }
}

impl fmt::Display for Counters {
    /// One line: `rx 5 tx 4 no-buffer 1 denied 0 spoofed 0 malformed 0
    /// unknown 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx {} tx {} no-buffer {} denied {} spoofed {} malformed {} unknown {}",
            self.rx,
            self.tx,
            self.dropped_no_buffer,
            self.denied,
            self.spoofed,
            self.malformed,
            self.unknown
        )
    }
}

/// One port's line for a debug log: `port 1 02:00:00:00:00:02: rx ...`
/// (see [`Switch::report`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortReport {
    /// The port.
    pub port: usize,
    /// Its MAC.
    pub mac: Mac,
    /// Its counters.
    pub counters: Counters,
}

impl fmt::Display for PortReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} {}: {}", self.port, self.mac, self.counters)
    }
}

/// A switch of `PORTS` ports: its [`Config`] and every port's
/// [`Counters`]. [`decide`](Self::decide) is `O(PORTS)` for a unicast
/// frame (finding the destination's MAC) and `O(PORTS)` for a flood
/// (counting it at each port); nothing else depends on the frame's length.
#[derive(Clone, Debug)]
pub struct Switch<const PORTS: usize> {
    config: Config<PORTS>,
    counters: [Counters; PORTS],
}

impl<const PORTS: usize> Switch<PORTS> {
    /// A switch with `config` and every counter zero.
    pub fn new(config: Config<PORTS>) -> Self {
        Switch {
            config,
            counters: [Counters::default(); PORTS],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config<PORTS> {
        &self.config
    }

    /// Port `port`'s counters.
    pub fn counters(&self, port: usize) -> Option<&Counters> {
        self.counters.get(port)
    }

    /// Port `port`'s counters with its number and MAC, to print.
    pub fn report(&self, port: usize) -> Option<PortReport> {
        Some(PortReport {
            port,
            mac: self.config.mac(port)?,
            counters: *self.counters.get(port)?,
        })
    }

    /// Decides where `frame`, an Ethernet II frame (destination MAC in
    /// bytes 0..6, source in 6..12; no virtio-net header) that port `src`
    /// sent, goes, and counts it. The checks, in order:
    ///
    /// 1. `src` is a port ([`Reason::NoSuchPort`] otherwise; not counted);
    /// 2. `MIN_FRAME <= frame.len() <=` [`Config::max_frame`]
    ///    ([`Reason::Malformed`]);
    /// 3. the source address is `src`'s MAC ([`Reason::Spoofed`]);
    /// 4. a group destination (broadcast, multicast) floods to every port
    ///    the ACL allows from `src`, or is [`Reason::Denied`] if that is
    ///    none;
    /// 5. a unicast destination must be a port's MAC
    ///    ([`Reason::UnknownDestination`]) other than `src`'s, with the
    ///    pair allowed ([`Reason::Denied`]).
    pub fn decide(&mut self, src: usize, frame: &[u8]) -> Decision {
        self.decide_head(src, frame.len(), frame)
    }

    /// [`decide`](Self::decide) on a frame of `len` bytes of which only the
    /// start, `head`, has been read (the glue peeks at the addresses before
    /// it places the frame): the same checks, the addresses from `head`
    /// (a `head` shorter than 12 bytes is [`Reason::Malformed`]).
    pub fn decide_head(&mut self, src: usize, len: usize, head: &[u8]) -> Decision {
        let decision = self.decision(src, len, head);
        let Some(from) = self.counters.get_mut(src) else {
            return decision;
        };
        let count = match decision {
            Decision::Deliver(_) | Decision::Flood(_) => &mut from.rx,
            Decision::Drop(Reason::Malformed) => &mut from.malformed,
            Decision::Drop(Reason::Spoofed) => &mut from.spoofed,
            Decision::Drop(Reason::Denied) => &mut from.denied,
            Decision::Drop(Reason::UnknownDestination) => &mut from.unknown,
            Decision::Drop(Reason::NoSuchPort) => return decision,
        };
        *count = count.saturating_add(1);
        for port in decision.ports() {
            if let Some(to) = self.counters.get_mut(port) {
                to.tx = to.tx.saturating_add(1);
            }
        }
        decision
    }

    /// The decision alone, counting nothing.
    fn decision(&self, src: usize, len: usize, head: &[u8]) -> Decision {
        let Some(own) = self.config.mac(src) else {
            return Decision::Drop(Reason::NoSuchPort);
        };
        if !self.config.mtu().takes(len) {
            return Decision::Drop(Reason::Malformed);
        }
        let (Some(dst), Some(source)) = (Mac::destination(head), Mac::source(head)) else {
            return Decision::Drop(Reason::Malformed);
        };
        if source != own {
            return Decision::Drop(Reason::Spoofed);
        }
        let allowed = self.config.allowed_from(src);
        if dst.is_multicast() {
            return if allowed.is_empty() {
                Decision::Drop(Reason::Denied)
            } else {
                Decision::Flood(allowed)
            };
        }
        match self.config.port_of(dst) {
            None => Decision::Drop(Reason::UnknownDestination),
            Some(port) if allowed.contains(port) => Decision::Deliver(port),
            Some(_) => Decision::Drop(Reason::Denied),
        }
    }

    /// The glue found no posted receive buffer on `port` for a frame
    /// decided for it: one delivery moves from its `tx` to its
    /// `dropped_no_buffer`. [`Error::NoSuchPort`] for a port that does not
    /// exist, [`Error::NoDelivery`] if `tx` is already zero (more reports
    /// than deliveries); either leaves the counters as they were.
    pub fn no_buffer(&mut self, port: usize) -> Result<(), Error> {
        let to = self
            .counters
            .get_mut(port)
            .ok_or(Error::NoSuchPort { port })?;
        to.tx = to.tx.checked_sub(1).ok_or(Error::NoDelivery { port })?;
        to.dropped_no_buffer = to.dropped_no_buffer.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    fn mac(i: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, i + 1])
    }

    fn switch<const N: usize>() -> Switch<N> {
        Switch::new(Config::new(core::array::from_fn(|i| mac(i as u8))).unwrap())
    }

    fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(12)];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f.truncate(len);
        f
    }

    #[test]
    fn unicast_to_a_port() {
        let mut sw = switch::<3>();
        assert_eq!(
            sw.decide(0, &frame(mac(2), mac(0), 60)),
            Decision::Deliver(2)
        );
        assert_eq!(
            sw.decide(2, &frame(mac(0), mac(2), 14)),
            Decision::Deliver(0)
        );
        assert_eq!(
            sw.decide(1, &frame(mac(0), mac(1), 1514)),
            Decision::Deliver(0)
        );
        assert_eq!(sw.counters(0).unwrap().rx, 1);
        assert_eq!(sw.counters(0).unwrap().tx, 2);
        assert_eq!(sw.counters(2).unwrap().tx, 1);
    }

    #[test]
    fn lengths_at_a_jumbo_mtu() {
        let mut config = switch::<2>().config().clone();
        assert_eq!(config.mtu(), crate::Mtu::DEFAULT);
        config.set_mtu(crate::Mtu::JUMBO);
        assert_eq!(config.max_frame(), 65524);
        let mut sw = Switch::new(config);
        for len in [1515, 9014, 65524] {
            assert_eq!(
                sw.decide(0, &frame(mac(1), mac(0), len)),
                Decision::Deliver(1),
                "{len}"
            );
        }
        for len in [13, 65525, 70000] {
            assert_eq!(
                sw.decide(0, &frame(mac(1), mac(0), len)),
                Decision::Drop(Reason::Malformed),
                "{len}"
            );
        }
        let c = sw.counters(0).unwrap();
        assert_eq!((c.malformed, c.rx), (3, 3));
    }

    #[test]
    fn lengths() {
        let mut sw = switch::<2>();
        for len in [0, 1, 6, 11, 12, 13, 1515, 9000] {
            assert_eq!(
                sw.decide(0, &frame(mac(1), mac(0), len)),
                Decision::Drop(Reason::Malformed),
                "{len}"
            );
        }
        for len in [14, 15, 64, 1500, 1514] {
            assert_eq!(
                sw.decide(0, &frame(mac(1), mac(0), len)),
                Decision::Deliver(1)
            );
        }
        let c = sw.counters(0).unwrap();
        assert_eq!((c.malformed, c.rx), (8, 5));
        // A malformed frame is malformed before it is spoofed.
        assert_eq!(
            sw.decide(0, &frame(mac(1), mac(1), 13)),
            Decision::Drop(Reason::Malformed)
        );
    }

    #[test]
    fn spoofing() {
        let mut sw = switch::<3>();
        // Claiming another port's address, a stranger's, a group address.
        for source in [mac(1), mac(9), Mac::BROADCAST, Mac([0; 6])] {
            assert_eq!(
                sw.decide(0, &frame(mac(2), source, 60)),
                Decision::Drop(Reason::Spoofed)
            );
            assert_eq!(
                sw.decide(0, &frame(Mac::BROADCAST, source, 60)),
                Decision::Drop(Reason::Spoofed)
            );
        }
        // Nothing is learnt: port 1's address still reaches port 1 only.
        assert_eq!(
            sw.decide(2, &frame(mac(1), mac(2), 60)),
            Decision::Deliver(1)
        );
        assert_eq!(sw.counters(0).unwrap().spoofed, 8);
        assert_eq!(sw.counters(1).unwrap().tx, 1);
    }

    #[test]
    fn floods() {
        let mut sw = switch::<4>();
        let all_but_1 = PortSet(0b1101);
        assert_eq!(
            sw.decide(1, &frame(Mac::BROADCAST, mac(1), 60)),
            Decision::Flood(all_but_1)
        );
        // IPv6 and IPv4 multicast flood the same way.
        let v6 = Mac([0x33, 0x33, 0, 0, 0, 1]);
        let v4 = Mac([1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(
            sw.decide(1, &frame(v6, mac(1), 60)),
            Decision::Flood(all_but_1)
        );
        assert_eq!(
            sw.decide(1, &frame(v4, mac(1), 60)),
            Decision::Flood(all_but_1)
        );
        assert_eq!(sw.counters(1).unwrap().rx, 3);
        for port in [0, 2, 3] {
            assert_eq!(sw.counters(port).unwrap().tx, 3);
        }
        assert_eq!(sw.counters(1).unwrap().tx, 0);
    }

    #[test]
    fn acl() {
        let mut config = Config::new([mac(0), mac(1), mac(2)]).unwrap();
        config.deny_list("0-2").unwrap();
        let mut sw = Switch::new(config);
        assert_eq!(
            sw.decide(0, &frame(mac(2), mac(0), 60)),
            Decision::Drop(Reason::Denied)
        );
        assert_eq!(
            sw.decide(2, &frame(mac(0), mac(2), 60)),
            Decision::Drop(Reason::Denied)
        );
        assert_eq!(
            sw.decide(0, &frame(Mac::BROADCAST, mac(0), 60)),
            Decision::Flood(PortSet(0b010))
        );
        assert_eq!(sw.counters(0).unwrap().denied, 1);
        assert_eq!(sw.counters(2).unwrap().denied, 1);
        // A port the ACL cuts off entirely: its broadcasts are denied.
        let mut config = Config::new([mac(0), mac(1), mac(2)]).unwrap();
        config.deny_list("0-1,0-2").unwrap();
        let mut sw = Switch::new(config);
        assert_eq!(
            sw.decide(0, &frame(Mac::BROADCAST, mac(0), 60)),
            Decision::Drop(Reason::Denied)
        );
        assert_eq!(
            sw.decide(1, &frame(Mac::BROADCAST, mac(1), 60)),
            Decision::Flood(PortSet(0b100))
        );
    }

    #[test]
    fn never_back_to_the_source() {
        let mut sw = switch::<2>();
        assert_eq!(
            sw.decide(0, &frame(mac(0), mac(0), 60)),
            Decision::Drop(Reason::Denied)
        );
        let mut one = switch::<1>();
        assert_eq!(
            one.decide(0, &frame(Mac::BROADCAST, mac(0), 60)),
            Decision::Drop(Reason::Denied)
        );
        assert_eq!(one.counters(0).unwrap().tx, 0);
    }

    #[test]
    fn unknown_destinations() {
        let mut sw = switch::<2>();
        for dst in [mac(5), Mac([0; 6]), Mac([0, 0x1b, 0x21, 1, 2, 3])] {
            assert_eq!(
                sw.decide(0, &frame(dst, mac(0), 60)),
                Decision::Drop(Reason::UnknownDestination)
            );
        }
        assert_eq!(sw.counters(0).unwrap().unknown, 3);
    }

    #[test]
    fn no_such_port() {
        let mut sw = switch::<2>();
        let f = frame(mac(1), mac(0), 60);
        assert_eq!(sw.decide(2, &f), Decision::Drop(Reason::NoSuchPort));
        assert_eq!(
            sw.decide(usize::MAX, &[]),
            Decision::Drop(Reason::NoSuchPort)
        );
        for port in 0..2 {
            assert_eq!(sw.counters(port), Some(&Counters::default()));
        }
        assert_eq!(sw.counters(2), None);
        assert_eq!(sw.report(2), None);
    }

    #[test]
    fn no_buffer_moves_a_delivery() {
        let mut sw = switch::<3>();
        assert_eq!(sw.no_buffer(1), Err(Error::NoDelivery { port: 1 }));
        assert_eq!(sw.no_buffer(3), Err(Error::NoSuchPort { port: 3 }));
        sw.decide(0, &frame(Mac::BROADCAST, mac(0), 60));
        sw.no_buffer(1).unwrap();
        let c = sw.counters(1).unwrap();
        assert_eq!((c.tx, c.dropped_no_buffer), (0, 1));
        assert_eq!(sw.no_buffer(1), Err(Error::NoDelivery { port: 1 }));
        assert_eq!(sw.counters(2).unwrap().tx, 1);
    }

    #[test]
    fn counters_add_up_and_print() {
        let mut sw = switch::<3>();
        let frames = [
            frame(mac(1), mac(0), 60),
            frame(Mac::BROADCAST, mac(0), 60),
            frame(mac(1), mac(2), 60),
            frame(mac(0), mac(0), 60),
            frame(mac(7), mac(0), 60),
            frame(mac(1), mac(0), 3),
        ];
        for f in &frames {
            sw.decide(0, f);
        }
        let c = *sw.counters(0).unwrap();
        assert_eq!(c.received(), frames.len() as u64);
        assert_eq!(
            format!("{c}"),
            "rx 2 tx 0 no-buffer 0 denied 1 spoofed 1 malformed 1 unknown 1"
        );
        sw.no_buffer(1).unwrap();
        assert_eq!(
            format!("{}", sw.report(1).unwrap()),
            "port 1 02:00:00:00:00:02: rx 0 tx 1 no-buffer 1 denied 0 spoofed 0 malformed 0 unknown 0"
        );
        assert_eq!(
            format!("{}", Reason::UnknownDestination),
            "unknown destination"
        );
    }

    #[test]
    fn counts_saturate() {
        let mut sw = switch::<2>();
        sw.counters[0].rx = u64::MAX;
        sw.counters[1].tx = u64::MAX;
        sw.counters[0].unknown = u64::MAX;
        assert_eq!(
            sw.decide(0, &frame(mac(1), mac(0), 60)),
            Decision::Deliver(1)
        );
        assert_eq!(sw.counters(0).unwrap().rx, u64::MAX);
        assert_eq!(sw.counters(1).unwrap().tx, u64::MAX);
        assert_eq!(sw.counters(0).unwrap().received(), u64::MAX);
    }
}
