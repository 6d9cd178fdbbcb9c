// SPDX-License-Identifier: BSD-2-Clause
//! The switch's configuration: each port's MAC and the ACL.

use crate::{Error, Mac, Mtu, PortSet, MAX_PORTS};

/// `PORTS` ports (at most [`MAX_PORTS`], checked when the program is
/// built), each with its VM's MAC address, and which port pairs may
/// exchange frames.
///
/// Every port has the same MTU ([`Mtu::DEFAULT`] until
/// [`set_mtu`](Self::set_mtu)): the longest frame the switch forwards is
/// [`max_frame`](Self::max_frame) bytes. Each VM's virtio-net device tells
/// its guest that MTU (`VIRTIO_NET_F_MTU`), so a guest never has a reason
/// to send longer frames, and one that does gets them dropped as
/// malformed.
///
/// The ACL starts all-to-all; [`deny`](Self::deny) and
/// [`deny_list`](Self::deny_list) take pairs out, both ways at once. A
/// port never sends to itself: [`allowed_from`](Self::allowed_from) never
/// contains its own port. The ACL is a [`PortSet`] per port, so a lookup
/// is `O(1)`; finding a port by MAC is `O(PORTS)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<const PORTS: usize> {
    macs: [Mac; PORTS],
    allowed: [PortSet; PORTS],
    mtu: Mtu,
}

impl<const PORTS: usize> Config<PORTS> {
    /// Refuses, when the program is built, a switch of no port or of more
    /// than [`MAX_PORTS`].
    const PORTS_FIT: () = assert!(PORTS >= 1 && PORTS <= MAX_PORTS);

    /// A configuration with port `i`'s VM at `macs[i]` and every pair of
    /// ports allowed. Each MAC must be a unicast address other than zero
    /// (it should be locally administered, `02:...`, as made-up addresses
    /// are, but that is not checked), and no two may be equal: a frame's
    /// source address is how the switch knows its port is not lying.
    /// `O(PORTS²)`.
    pub fn new(macs: [Mac; PORTS]) -> Result<Self, Error> {
        let () = Self::PORTS_FIT;
        for (port, mac) in macs.iter().enumerate() {
            if mac.is_multicast() {
                return Err(Error::MulticastMac { port });
            }
            if mac.is_zero() {
                return Err(Error::ZeroMac { port });
            }
            if let Some(first) = macs.iter().take(port).position(|m| m == mac) {
                return Err(Error::DuplicateMac { port, first });
            }
        }
        let all = PortSet::first(PORTS);
        let mut allowed = [all; PORTS];
        for (port, set) in allowed.iter_mut().enumerate() {
            set.remove(port);
        }
        Ok(Config {
            macs,
            allowed,
            mtu: Mtu::DEFAULT,
        })
    }

    /// Sets every port's MTU: frames up to `mtu` + 14 bytes pass.
    pub fn set_mtu(&mut self, mtu: Mtu) {
        self.mtu = mtu;
    }

    /// The ports' MTU.
    pub fn mtu(&self) -> Mtu {
        self.mtu
    }

    /// The longest frame the switch forwards: [`mtu`](Self::mtu) + 14
    /// bytes.
    pub fn max_frame(&self) -> usize {
        self.mtu.max_frame()
    }

    /// Port `port`'s MAC.
    pub fn mac(&self, port: usize) -> Option<Mac> {
        self.macs.get(port).copied()
    }

    /// Every port's MAC, by port.
    pub fn macs(&self) -> &[Mac; PORTS] {
        &self.macs
    }

    /// The port whose VM has `mac`, if any. `O(PORTS)`.
    pub fn port_of(&self, mac: Mac) -> Option<usize> {
        self.macs.iter().position(|m| *m == mac)
    }

    /// The ports that frames from `src` may go to: never `src` itself;
    /// empty for a port that does not exist.
    pub fn allowed_from(&self, src: usize) -> PortSet {
        self.allowed.get(src).copied().unwrap_or(PortSet::EMPTY)
    }

    /// Whether frames may go from `a` to `b` (and so from `b` to `a`).
    pub fn allows(&self, a: usize, b: usize) -> bool {
        self.allowed_from(a).contains(b)
    }

    /// Takes the pair `a`, `b` out of the ACL, both ways: no frame goes
    /// from either to the other, broadcasts included.
    pub fn deny(&mut self, a: usize, b: usize) -> Result<(), Error> {
        self.check_pair(a, b)?;
        if let Some(set) = self.allowed.get_mut(a) {
            set.remove(b);
        }
        if let Some(set) = self.allowed.get_mut(b) {
            set.remove(a);
        }
        Ok(())
    }

    fn check_pair(&self, a: usize, b: usize) -> Result<(), Error> {
        for port in [a, b] {
            if port >= PORTS {
                return Err(Error::NoSuchPort { port });
            }
        }
        if a == b {
            return Err(Error::SamePort { port: a });
        }
        Ok(())
    }

    /// Denies every pair of a deny list as the build writes it: pairs
    /// `a-b` of decimal port numbers separated by commas, for example
    /// `"0-2,1-3"`. ASCII spaces around numbers are allowed, and the empty
    /// string (or only spaces) denies nothing. The whole list is checked
    /// before any pair is denied, so an `Err` denies none:
    /// [`Error::DenyListSyntax`] for an item that is not `a-b` (an empty
    /// item, a missing or second dash, a number that is not decimal),
    /// [`Error::NoSuchPort`] and [`Error::SamePort`] for a pair
    /// [`deny`](Self::deny) refuses. `O(length of the list)`.
    ///
    /// ```
    /// use net_switch::{Config, Error, Mac};
    /// let mut config = Config::new([0, 1, 2, 3].map(|i| Mac([2, 0, 0, 0, 0, i])))?;
    /// config.deny_list("0-2, 1-3")?;
    /// assert!(!config.allows(2, 0) && !config.allows(3, 1) && config.allows(0, 1));
    /// assert_eq!(config.deny_list("0-1,,2-3"), Err(Error::DenyListSyntax { offset: 4 }));
    /// assert_eq!(config.deny_list("0-4"), Err(Error::NoSuchPort { port: 4 }));
    /// assert!(config.allows(0, 1)); // an Err denied nothing
    /// # Ok::<(), Error>(())
    /// ```
    pub fn deny_list(&mut self, list: &str) -> Result<(), Error> {
        for pair in pairs(list) {
            let (a, b) = pair?;
            self.check_pair(a, b)?;
        }
        for (a, b) in pairs(list).flatten() {
            self.deny(a, b)?;
        }
        Ok(())
    }
}

/// The pairs of a deny list, each with its error. It works on bytes (a
/// port number is ASCII digits, a separator ASCII): `str`'s Unicode-aware
/// splitting and trimming keep panic paths the optimiser cannot remove.
fn pairs(list: &str) -> impl Iterator<Item = Result<(usize, usize), Error>> + '_ {
    let list = list.as_bytes();
    let empty = list.trim_ascii().is_empty();
    let mut offset = 0usize;
    list.split(|b| *b == b',')
        .filter(move |_| !empty)
        .map(move |item| {
            let at = offset;
            offset = offset.saturating_add(item.len()).saturating_add(1);
            let syntax = Error::DenyListSyntax { offset: at };
            let dash = item.iter().position(|b| *b == b'-').ok_or(syntax)?;
            let a = item.get(..dash).and_then(port_number).ok_or(syntax)?;
            let b = item
                .get(dash.saturating_add(1)..)
                .and_then(port_number)
                .ok_or(syntax)?;
            Ok((a, b))
        })
}

/// A decimal port number with optional ASCII spaces around it. Ports are
/// below [`MAX_PORTS`], so a longer number is not one (and cannot
/// overflow).
fn port_number(s: &[u8]) -> Option<usize> {
    let s = s.trim_ascii();
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0usize, |n, b| {
        n.checked_mul(10)?
            .checked_add(usize::from(b.wrapping_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macs<const N: usize>() -> [Mac; N] {
        core::array::from_fn(|i| Mac([2, 0, 0, 0, 0, i as u8 + 1]))
    }

    #[test]
    fn macs_are_checked() {
        let mut m = macs::<3>();
        assert!(Config::new(m).is_ok());
        m[1] = Mac::BROADCAST;
        assert_eq!(Config::new(m), Err(Error::MulticastMac { port: 1 }));
        m[1] = Mac([0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(Config::new(m), Err(Error::MulticastMac { port: 1 }));
        m[1] = Mac([0; 6]);
        assert_eq!(Config::new(m), Err(Error::ZeroMac { port: 1 }));
        m = macs();
        m[2] = m[0];
        assert_eq!(
            Config::new(m),
            Err(Error::DuplicateMac { port: 2, first: 0 })
        );
        // Universally administered unicast is taken.
        m = macs();
        m[0] = Mac([0, 0x1b, 0x21, 1, 2, 3]);
        assert!(Config::new(m).is_ok());
    }

    #[test]
    fn lookups() {
        let config = Config::new(macs::<3>()).unwrap();
        assert_eq!(config.mac(2), Some(Mac([2, 0, 0, 0, 0, 3])));
        assert_eq!(config.mac(3), None);
        assert_eq!(config.port_of(Mac([2, 0, 0, 0, 0, 2])), Some(1));
        assert_eq!(config.port_of(Mac([2, 0, 0, 0, 0, 9])), None);
        assert_eq!(config.macs(), &macs::<3>());
    }

    #[test]
    fn all_to_all_but_never_back() {
        let config = Config::new(macs::<4>()).unwrap();
        for a in 0..4 {
            for b in 0..4 {
                assert_eq!(config.allows(a, b), a != b);
            }
            assert_eq!(config.allowed_from(a).len(), 3);
        }
        assert!(config.allowed_from(4).is_empty());
        assert!(!config.allows(0, 4) && !config.allows(4, 0));
        let one = Config::new(macs::<1>()).unwrap();
        assert!(one.allowed_from(0).is_empty());
        let max = Config::new(macs::<64>()).unwrap();
        assert_eq!(max.allowed_from(63).len(), 63);
        assert!(max.allows(63, 0));
    }

    #[test]
    fn deny_is_symmetric() {
        let mut config = Config::new(macs::<4>()).unwrap();
        config.deny(2, 0).unwrap();
        assert!(!config.allows(0, 2) && !config.allows(2, 0));
        assert!(config.allows(0, 1) && config.allows(1, 2));
        // Denying again is no change.
        config.deny(0, 2).unwrap();
        assert!(!config.allows(0, 2));
        let before = config.clone();
        assert_eq!(config.deny(0, 4), Err(Error::NoSuchPort { port: 4 }));
        assert_eq!(config.deny(7, 0), Err(Error::NoSuchPort { port: 7 }));
        assert_eq!(config.deny(1, 1), Err(Error::SamePort { port: 1 }));
        assert_eq!(config, before);
    }

    #[test]
    fn deny_lists() {
        let fresh = Config::new(macs::<4>()).unwrap();
        let mut config = fresh.clone();
        config.deny_list("").unwrap();
        config.deny_list("   ").unwrap();
        assert_eq!(config, fresh);
        config.deny_list("0-2,1-3").unwrap();
        let mut by_hand = fresh.clone();
        by_hand.deny(0, 2).unwrap();
        by_hand.deny(1, 3).unwrap();
        assert_eq!(config, by_hand);
        let mut spaced = fresh.clone();
        spaced.deny_list(" 0 - 2 ,1-3 ").unwrap();
        assert_eq!(spaced, by_hand);
        let mut padded = fresh.clone();
        padded.deny_list("00-002").unwrap();
        assert!(!padded.allows(0, 2));
    }

    #[test]
    fn bad_deny_lists_deny_nothing() {
        let fresh = Config::new(macs::<4>()).unwrap();
        let cases = [
            (",", Error::DenyListSyntax { offset: 0 }),
            ("0-1,", Error::DenyListSyntax { offset: 4 }),
            ("0-1,,2-3", Error::DenyListSyntax { offset: 4 }),
            ("0", Error::DenyListSyntax { offset: 0 }),
            ("0-", Error::DenyListSyntax { offset: 0 }),
            ("-1", Error::DenyListSyntax { offset: 0 }),
            ("0-1-2", Error::DenyListSyntax { offset: 0 }),
            ("0-1;1-2", Error::DenyListSyntax { offset: 0 }),
            ("0-1,a-2", Error::DenyListSyntax { offset: 4 }),
            ("0-+1", Error::DenyListSyntax { offset: 0 }),
            ("0--1", Error::DenyListSyntax { offset: 0 }),
            ("0-1 2", Error::DenyListSyntax { offset: 0 }),
            ("0-٣", Error::DenyListSyntax { offset: 0 }),
            (
                "0-999999999999999999999999",
                Error::DenyListSyntax { offset: 0 },
            ),
            ("0-1,2-4", Error::NoSuchPort { port: 4 }),
            ("0-1,99999-0", Error::NoSuchPort { port: 99999 }),
            ("0-1,2-2", Error::SamePort { port: 2 }),
        ];
        for (list, error) in cases {
            let mut config = fresh.clone();
            assert_eq!(config.deny_list(list), Err(error), "{list:?}");
            assert_eq!(config, fresh, "{list:?} changed the ACL");
        }
    }

    #[test]
    fn port_numbers() {
        assert_eq!(port_number(b"0"), Some(0));
        assert_eq!(port_number(b" 63 "), Some(63));
        assert_eq!(port_number(b"\t7\n"), Some(7));
        assert_eq!(port_number(b"99999"), Some(99999));
        assert_eq!(port_number(b"100000"), None);
        assert_eq!(port_number(b""), None);
        assert_eq!(port_number(b"1 2"), None);
        assert_eq!(port_number(b"0x1"), None);
    }
}
