// SPDX-License-Identifier: BSD-2-Clause
//! The switch as the router of one port's transmit: which [`Pairs`] area
//! each frame is gathered into.
//!
//! A sender with exactly one port it may reach (two VMs, or an ACL that
//! leaves one) has one area: its frames are gathered there without
//! looking at them first, and decided afterwards on the whole frame
//! ([`Switch::decide_burst`]); the ones dropped are never received. Such a
//! frame (spoofed, say) sits in memory that the one possible receiver's
//! VMM maps, but it is never written into that VM's RAM. A sender with
//! several reachable ports has its frames' first bytes read first
//! ([`virtio::net::PEEK_LEN`]: one more copy call per 39 frames), each
//! decided on them ([`Switch::decide_head`]), and each gathered only into
//! the areas of the ports it goes to: no VMM ever maps a frame that was
//! neither sent by its VM nor decided for it.

use virtio::net::{Burst, Router, HDR_LEN, MAX_AREAS, MAX_BURST};

use crate::{Pairs, Switch};

/// What one burst delivers: each destination port with the spans
/// ([`Burst::spans`]) of the frames it gets, in its area.
pub type Deliveries = heapless::Vec<(usize, heapless::Vec<(usize, usize), MAX_BURST>), MAX_AREAS>;

/// [`Router`] for port `src`'s transmit: area `i` is the area for frames
/// to `src`'s `i`-th peer ([`Pairs::peers`]), at most [`MAX_AREAS`].
pub struct PortRouter<'a, const PORTS: usize> {
    switch: &'a mut Switch<PORTS>,
    src: usize,
    /// Each area's port.
    peers: [usize; MAX_AREAS],
    areas: usize,
    /// The one area a frame can go to, if only one port is reachable.
    only: Option<usize>,
}

impl<'a, const PORTS: usize> PortRouter<'a, PORTS> {
    /// The router of `src`'s frames to its peers in `pairs` (the first
    /// [`MAX_AREAS`] of them), by `switch`'s decisions.
    pub fn new(switch: &'a mut Switch<PORTS>, pairs: &Pairs, src: usize) -> Self {
        let mut peers = [usize::MAX; MAX_AREAS];
        let mut areas = 0;
        for (slot, port) in peers.iter_mut().zip(pairs.peers(src)) {
            *slot = port;
            areas += 1;
        }
        let allowed = switch.config().allowed_from(src);
        let mut reachable = peers
            .iter()
            .take(areas)
            .enumerate()
            .filter(|(_, p)| allowed.contains(**p));
        let only = match (reachable.next(), reachable.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        };
        PortRouter {
            switch,
            src,
            peers,
            areas,
            only,
        }
    }

    /// The port area `i` is for.
    pub fn port(&self, area: usize) -> Option<usize> {
        self.peers.get(area).copied().filter(|_| area < self.areas)
    }

    /// The areas, each with its port.
    pub fn areas(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.peers.iter().copied().take(self.areas).enumerate()
    }

    /// Whether frames were decided as they were peeked at (every frame in
    /// an area goes to its port), or must still be decided on the whole
    /// frame ([`Switch::decide_burst`] on the one area).
    pub fn decided(&self) -> bool {
        self.only.is_none()
    }

    /// The switch, to decide the one area's burst and count drops.
    pub fn switch(&mut self) -> &mut Switch<PORTS> {
        self.switch
    }

    /// After a transmit into `areas` (area `i` for [`port`](Self::port)
    /// `i`, as [`areas`](Self::areas) lists them): what each destination
    /// gets. Frames peeked at were decided as they were gathered, so every
    /// frame in an area goes to its port; with one reachable port the
    /// one area's burst is decided here, on the whole frames
    /// ([`Switch::decide_burst`]: counted, spoofed and denied frames
    /// dropped). Ports that get nothing are left out. O(frames).
    pub fn deliveries(&mut self, areas: &[Burst<'_>]) -> Deliveries {
        let mut out = Deliveries::new();
        for (i, area) in areas.iter().enumerate() {
            let Some(d) = self.port(i).filter(|_| !area.is_empty()) else {
                continue;
            };
            let mut spans = heapless::Vec::new();
            if self.decided() {
                for span in area.spans() {
                    let _ = spans.push(*span);
                }
            } else if let Ok(plan) = self.switch.decide_burst(self.src, &area.slices()) {
                for span in plan.frames(d).filter_map(|f| area.spans().get(f)) {
                    let _ = spans.push(*span);
                }
            }
            if !spans.is_empty() {
                // At most one entry per area, and at most MAX_AREAS areas.
                let _ = out.push((d, spans));
            }
        }
        out
    }
}

impl<const PORTS: usize> Router for PortRouter<'_, PORTS> {
    fn must_peek(&self) -> bool {
        self.only.is_none()
    }

    fn route(&mut self, len: usize, head: Option<&[u8]>) -> u8 {
        let Some(head) = head else {
            return self
                .only
                .map_or(0, |i| 1u8.checked_shl(i as u32).unwrap_or(0));
        };
        let ports = self
            .switch
            .decide_head(self.src, len, head.get(HDR_LEN..).unwrap_or(&[]))
            .ports();
        let mut bits = 0u8;
        for (i, port) in self.areas() {
            if ports.contains(port) {
                bits |= 1u8.checked_shl(i as u32).unwrap_or(0);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::{Config, Mac, PortSet};

    fn mac(p: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, p + 1])
    }

    fn head(dst: Mac, src: Mac) -> [u8; HDR_LEN + 14] {
        let mut h = [0u8; HDR_LEN + 14];
        h[HDR_LEN..HDR_LEN + 6].copy_from_slice(&dst.0);
        h[HDR_LEN + 6..HDR_LEN + 12].copy_from_slice(&src.0);
        h
    }

    #[test]
    fn one_reachable_peer_needs_no_peek() {
        let mut config = Config::new([0, 1, 2].map(mac)).unwrap();
        config.deny(0, 2).unwrap();
        let pairs = Pairs::new(PortSet(0b111), 0, 1).unwrap();
        let mut switch = Switch::new(config);
        let mut router = PortRouter::new(&mut switch, &pairs, 0);
        assert!(!router.must_peek() && !router.decided());
        assert_eq!(
            router.areas().collect::<std::vec::Vec<_>>(),
            [(0, 1), (1, 2)]
        );
        assert_eq!(router.route(60, None), 0b01);
        assert_eq!(router.port(1), Some(2));
        assert_eq!(router.port(2), None);
    }

    #[test]
    fn several_peers_are_decided_on_the_peek() {
        let config = Config::new([0, 1, 2].map(mac)).unwrap();
        let pairs = Pairs::new(PortSet(0b111), 0, 1).unwrap();
        let mut switch = Switch::new(config);
        let mut router = PortRouter::new(&mut switch, &pairs, 1);
        assert!(router.must_peek() && router.decided());
        assert_eq!(router.route(60, None), 0);
        assert_eq!(router.route(60, Some(&head(mac(2), mac(1)))), 0b10);
        assert_eq!(router.route(60, Some(&head(mac(0), mac(1)))), 0b01);
        assert_eq!(router.route(60, Some(&head(Mac::BROADCAST, mac(1)))), 0b11);
        // Spoofed, too short, cut off: nowhere.
        assert_eq!(router.route(60, Some(&head(mac(0), mac(2)))), 0);
        assert_eq!(router.route(13, Some(&head(mac(0), mac(1)))), 0);
        assert_eq!(router.route(60, Some(&[0; 20])), 0);
        let c = *switch.counters(1).unwrap();
        assert_eq!((c.rx, c.spoofed, c.malformed), (3, 1, 2));
    }
}
