// SPDX-License-Identifier: BSD-2-Clause
//! The decisions of an Ethernet switch between virtual machines: the
//! library of a Microkit `net` PD with one port per VM's virtio-net device.
//!
//! The switch maps no guest's RAM. The PD glue reads a sender's transmit
//! frames out of its guest RAM (through that VM's VMM's copy service) into
//! the switch's own memory, asks this crate what to do with each, and
//! writes each frame into the posted receive buffers of the ports it goes
//! to (through the receivers' VMMs' copy services). Everything but the
//! copies is decided here:
//!
//! - [`Config`]: each port's MAC address and the ACL (which port pairs
//!   may exchange frames), from the system description; a parser for the
//!   build's deny list (`"0-2,1-3"`).
//! - [`Switch::decide`]: one frame from port `src` is delivered to one
//!   port, flooded to a [`PortSet`] (broadcast and multicast), or dropped
//!   for a [`Reason`]; each port's [`Counters`] count what happened.
//! - [`Plan`]: a burst of frames from one port grouped per destination, so
//!   that the glue writes each destination's frames in one copy call.
//!
//! ```
//! use net_switch::{Config, Decision, Mac, Reason, Switch};
//! let macs = [Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), Mac([2, 0, 0, 0, 0, 3])];
//! let mut config = Config::new(macs)?;
//! config.deny_list("0-2")?;
//! let mut switch = Switch::new(config);
//!
//! // Port 0 sends to port 1's MAC from its own.
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&macs[1].0);
//! frame[6..12].copy_from_slice(&macs[0].0);
//! assert_eq!(switch.decide(0, &frame), Decision::Deliver(1));
//! // To port 2: the ACL denies the pair.
//! frame[..6].copy_from_slice(&macs[2].0);
//! assert_eq!(switch.decide(0, &frame), Decision::Drop(Reason::Denied));
//! // Port 1 claims port 0's address: spoofed.
//! assert_eq!(switch.decide(1, &frame), Decision::Drop(Reason::Spoofed));
//! assert_eq!(switch.counters(0).unwrap().rx, 1);
//! assert_eq!(switch.counters(1).unwrap().tx, 1);
//! # Ok::<(), net_switch::Error>(())
//! ```
//!
//! `#![no_std]`, no allocation, no panics: every frame, however short,
//! long or hostile, gets a [`Decision`], and every count saturates.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod pairs;
mod plan;
mod route;
mod switch;

pub use config::Config;
pub use pairs::Pairs;
pub use plan::{Plan, MAX_BURST};
pub use route::{Deliveries, PortRouter};
pub use switch::{Counters, Decision, PortReport, Reason, Switch};

use core::fmt;

/// The most ports a switch can have: a [`PortSet`] is one 64-bit word.
pub const MAX_PORTS: usize = 64;

/// The ports' MTU: virtio-net's, which the VMs' devices report, checked
/// (68 to 65535) where it is made; the frame lengths the switch takes are
/// the devices' ([`Mtu::takes`]): at least [`MIN_FRAME`] (destination,
/// source and EtherType, no payload), at most [`Mtu::max_frame`]
/// ([`Config::max_frame`]), [`MAX_FRAME`] at [`Mtu::DEFAULT`]. Lengths
/// here never include the virtio-net header, which is the glue's business.
pub use virtio::net::{Mtu, MAX_FRAME, MIN_FRAME, MIN_MTU};

/// An Ethernet MAC address, in transmission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Whether this is a group address (multicast or broadcast): the
    /// I/G bit, bit 0 of the first byte.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether this is the all-zero address, which names no station.
    pub const fn is_zero(&self) -> bool {
        let [a, b, c, d, e, f] = self.0;
        a | b | c | d | e | f == 0
    }

    /// Whether the U/L bit (bit 1 of the first byte) says locally
    /// administered, as a VM's made-up address should be (`02:...`).
    pub const fn is_locally_administered(&self) -> bool {
        self.0[0] & 2 != 0
    }

    /// The destination address of an Ethernet frame (its bytes 0..6), if
    /// it is that long.
    pub fn destination(frame: &[u8]) -> Option<Mac> {
        match frame {
            [a, b, c, d, e, f, ..] => Some(Mac([*a, *b, *c, *d, *e, *f])),
            _ => None,
        }
    }

    /// The source address of an Ethernet frame (its bytes 6..12), if it
    /// is that long.
    pub fn source(frame: &[u8]) -> Option<Mac> {
        Mac::destination(frame.get(6..)?)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A set of ports, numbered `0..MAX_PORTS`: one bit each.
///
/// ```
/// use net_switch::PortSet;
/// let mut set = PortSet::EMPTY;
/// set.insert(3);
/// set.insert(1);
/// assert!(set.contains(1) && !set.contains(2));
/// assert_eq!(set.iter().collect::<Vec<_>>(), [1, 3]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortSet(pub u64);

impl PortSet {
    /// No port.
    pub const EMPTY: PortSet = PortSet(0);

    /// Ports `0..n` (all of `0..MAX_PORTS` if `n` is larger).
    pub const fn first(n: usize) -> PortSet {
        if n >= MAX_PORTS {
            PortSet(u64::MAX)
        } else {
            PortSet((1 << n) - 1)
        }
    }

    /// Whether `port` is in the set (never, if it is `MAX_PORTS` or more).
    pub const fn contains(&self, port: usize) -> bool {
        port < MAX_PORTS && self.0 & (1 << port) != 0
    }

    /// Adds `port`; a port of `MAX_PORTS` or more is ignored.
    pub fn insert(&mut self, port: usize) {
        if port < MAX_PORTS {
            self.0 |= 1 << port;
        }
    }

    /// Removes `port`.
    pub fn remove(&mut self, port: usize) {
        if port < MAX_PORTS {
            self.0 &= !(1 << port);
        }
    }

    /// How many ports are in the set.
    pub const fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set has no port.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The ports in the set, lowest first; `O(1)` a port.
    pub fn iter(&self) -> Ports {
        Ports(self.0)
    }
}

impl IntoIterator for PortSet {
    type Item = usize;
    type IntoIter = Ports;
    fn into_iter(self) -> Ports {
        self.iter()
    }
}

/// The ports of a [`PortSet`] (or the frames of a [`Plan`] destination),
/// lowest first.
#[derive(Clone, Debug)]
pub struct Ports(u64);

impl Iterator for Ports {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let port = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(port)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Ports {}

/// Everything this crate refuses, from the system description, the build's
/// deny list or the glue. An `Err` means nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A port's MAC is a group (multicast or broadcast) address.
    MulticastMac {
        /// The port.
        port: usize,
    },
    /// A port's MAC is `00:00:00:00:00:00`.
    ZeroMac {
        /// The port.
        port: usize,
    },
    /// Two ports have the same MAC.
    DuplicateMac {
        /// The later port.
        port: usize,
        /// The earlier port with the same MAC.
        first: usize,
    },
    /// A port number that is not one of the switch's ports.
    NoSuchPort {
        /// The number given.
        port: usize,
    },
    /// A deny pair of a port with itself (`2-2`): the switch never sends a
    /// frame back to its port anyway.
    SamePort {
        /// The port.
        port: usize,
    },
    /// The deny list is not a comma-separated list of `a-b` pairs of
    /// decimal port numbers.
    DenyListSyntax {
        /// Byte offset of the item that is not `a-b`.
        offset: usize,
    },
    /// A [`Pairs`] layout whose windows would not fit the address space.
    WindowTooLarge,
    /// A burst of more than [`MAX_BURST`] frames.
    BurstTooLong {
        /// The number of frames given.
        frames: usize,
    },
    /// The glue reported no buffer for a port that has no delivery left to
    /// take back (more reports than frames decided for it).
    NoDelivery {
        /// The port.
        port: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::MulticastMac { port } => {
                write!(f, "port {port}'s MAC is a multicast address")
            }
            Error::ZeroMac { port } => write!(f, "port {port}'s MAC is all zeros"),
            Error::DuplicateMac { port, first } => {
                write!(f, "port {port}'s MAC is port {first}'s too")
            }
            Error::NoSuchPort { port } => write!(f, "there is no port {port}"),
            Error::SamePort { port } => write!(f, "deny pair {port}-{port} names one port"),
            Error::DenyListSyntax { offset } => {
                write!(f, "deny list: no `a-b` pair at byte {offset}")
            }
            Error::WindowTooLarge => write!(f, "a port's window overflows the address space"),
            Error::BurstTooLong { frames } => {
                write!(f, "a burst of {frames} frames (at most {MAX_BURST})")
            }
            Error::NoDelivery { port } => {
                write!(f, "no delivery to port {port} to count as dropped")
            }
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::vec::Vec;

    #[test]
    fn mac_bits() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac([2, 0, 0, 0, 0, 1]).is_multicast());
        assert!(Mac([2, 0, 0, 0, 0, 1]).is_locally_administered());
        assert!(!Mac([0, 0x1b, 0x21, 0, 0, 1]).is_locally_administered());
        assert!(Mac([0; 6]).is_zero());
        assert!(!Mac([0, 0, 0, 0, 0, 1]).is_zero());
        assert_eq!(
            format!("{}", Mac([2, 0xab, 0, 0, 0x10, 0xff])),
            "02:ab:00:00:10:ff"
        );
    }

    #[test]
    fn mac_fields_of_short_frames() {
        let frame: Vec<u8> = (0..14).collect();
        assert_eq!(Mac::destination(&frame), Some(Mac([0, 1, 2, 3, 4, 5])));
        assert_eq!(Mac::source(&frame), Some(Mac([6, 7, 8, 9, 10, 11])));
        assert_eq!(Mac::destination(&frame[..5]), None);
        assert_eq!(Mac::source(&frame[..11]), None);
        assert_eq!(Mac::source(&frame[..12]), Some(Mac([6, 7, 8, 9, 10, 11])));
    }

    #[test]
    fn port_sets() {
        assert_eq!(PortSet::first(0), PortSet::EMPTY);
        assert_eq!(PortSet::first(3), PortSet(0b111));
        assert_eq!(PortSet::first(64), PortSet(u64::MAX));
        assert_eq!(PortSet::first(1000), PortSet(u64::MAX));
        let mut set = PortSet::EMPTY;
        set.insert(63);
        set.insert(0);
        set.insert(64); // ignored
        assert_eq!(set.len(), 2);
        assert!(!set.contains(64) && !set.contains(usize::MAX));
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 63]);
        assert_eq!(set.iter().len(), 2);
        set.remove(0);
        set.remove(99);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), [63]);
        set.remove(63);
        assert!(set.is_empty());
    }

    #[test]
    fn errors_display() {
        let all = [
            Error::MulticastMac { port: 1 },
            Error::ZeroMac { port: 1 },
            Error::DuplicateMac { port: 2, first: 0 },
            Error::NoSuchPort { port: 9 },
            Error::SamePort { port: 2 },
            Error::DenyListSyntax { offset: 4 },
            Error::BurstTooLong { frames: 65 },
            Error::NoDelivery { port: 1 },
            Error::WindowTooLarge,
        ];
        let lines: Vec<_> = all.iter().map(|e| format!("{e}")).collect();
        assert_eq!(lines[2], "port 2's MAC is port 0's too");
        assert_eq!(lines[6], "a burst of 65 frames (at most 64)");
        for (i, line) in lines.iter().enumerate() {
            assert!(!line.is_empty());
            assert!(!lines[..i].contains(line));
        }
    }
}
