// SPDX-License-Identifier: BSD-2-Clause
//! Proptest: random configurations, deny lists, frames, bursts and
//! no-buffer reports against a plain-list re-implementation of the rules
//! (a list of MACs, a list of denied pairs, a list of counters, one list of
//! frame indices per destination). Decisions, errors, counters and plans
//! must agree.

use net_switch::{Config, Counters, Decision, Error, Mac, Mtu, Plan, PortSet, Reason, Switch};
use proptest::prelude::*;

const PORTS: usize = 5;

/// The rules, written again as plainly as possible.
struct Model {
    macs: Vec<[u8; 6]>,
    /// The longest frame: the MTU and 14.
    max_frame: usize,
    denied: Vec<(usize, usize)>,
    counters: Vec<Counters>,
}

impl Model {
    fn validate(macs: &[[u8; 6]]) -> Result<(), Error> {
        for (port, mac) in macs.iter().enumerate() {
            if mac[0] & 1 == 1 {
                return Err(Error::MulticastMac { port });
            }
            if *mac == [0; 6] {
                return Err(Error::ZeroMac { port });
            }
            for (first, other) in macs.iter().enumerate().take(port) {
                if other == mac {
                    return Err(Error::DuplicateMac { port, first });
                }
            }
        }
        Ok(())
    }

    fn deny_pairs(&mut self, pairs: &[(usize, usize)]) -> Result<(), Error> {
        for &(a, b) in pairs {
            if a >= self.macs.len() {
                return Err(Error::NoSuchPort { port: a });
            }
            if b >= self.macs.len() {
                return Err(Error::NoSuchPort { port: b });
            }
            if a == b {
                return Err(Error::SamePort { port: a });
            }
        }
        self.denied.extend_from_slice(pairs);
        Ok(())
    }

    fn allowed(&self, a: usize, b: usize) -> bool {
        a != b && !self.denied.contains(&(a, b)) && !self.denied.contains(&(b, a))
    }

    fn decide(&mut self, src: usize, frame: &[u8]) -> Decision {
        if src >= self.macs.len() {
            return Decision::Drop(Reason::NoSuchPort);
        }
        let decision = if frame.len() < 14 || frame.len() > self.max_frame {
            Decision::Drop(Reason::Malformed)
        } else if frame[6..12] != self.macs[src] {
            Decision::Drop(Reason::Spoofed)
        } else if frame[0] & 1 == 1 {
            let to: Vec<usize> = (0..self.macs.len())
                .filter(|&p| self.allowed(src, p))
                .collect();
            if to.is_empty() {
                Decision::Drop(Reason::Denied)
            } else {
                let mut set = PortSet::EMPTY;
                for p in to {
                    set.insert(p);
                }
                Decision::Flood(set)
            }
        } else {
            match self.macs.iter().position(|m| m[..] == frame[..6]) {
                None => Decision::Drop(Reason::UnknownDestination),
                Some(p) if self.allowed(src, p) => Decision::Deliver(p),
                Some(_) => Decision::Drop(Reason::Denied),
            }
        };
        let c = &mut self.counters[src];
        match decision {
            Decision::Drop(Reason::Malformed) => c.malformed += 1,
            Decision::Drop(Reason::Spoofed) => c.spoofed += 1,
            Decision::Drop(Reason::Denied) => c.denied += 1,
            Decision::Drop(Reason::UnknownDestination) => c.unknown += 1,
            Decision::Drop(Reason::NoSuchPort) => {}
            Decision::Deliver(_) | Decision::Flood(_) => c.rx += 1,
        }
        for p in 0..self.macs.len() {
            if decision.ports().contains(p) {
                self.counters[p].tx += 1;
            }
        }
        decision
    }

    fn no_buffer(&mut self, port: usize) -> Result<(), Error> {
        let c = self
            .counters
            .get_mut(port)
            .ok_or(Error::NoSuchPort { port })?;
        if c.tx == 0 {
            return Err(Error::NoDelivery { port });
        }
        c.tx -= 1;
        c.dropped_no_buffer += 1;
        Ok(())
    }
}

/// A frame from the choice of its addresses and length.
#[derive(Clone, Debug)]
struct FrameSpec {
    /// 0..PORTS+1: that port's MAC (PORTS: a stranger's); then broadcast,
    /// then a multicast address.
    dst: usize,
    /// 0..PORTS+1 as for `dst`; the sender's own most of the time.
    src_mac: Option<usize>,
    len: usize,
    fill: u8,
}

fn mac_of(macs: &[[u8; 6]], which: usize) -> [u8; 6] {
    match which {
        w if w < macs.len() => macs[w],
        w if w == macs.len() => [2, 0xee, 0, 0, 0, 1],
        w if w == macs.len() + 1 => [0xff; 6],
        _ => [0x33, 0x33, 0, 0, 0, 1],
    }
}

impl FrameSpec {
    fn bytes(&self, macs: &[[u8; 6]], src: usize) -> Vec<u8> {
        let mut f = vec![self.fill; self.len.max(12)];
        f[..6].copy_from_slice(&mac_of(macs, self.dst));
        let own = macs.get(src).copied().unwrap_or([2, 0xdd, 0, 0, 0, 0]);
        let source = self.src_mac.map_or(own, |m| mac_of(macs, m));
        f[6..12].copy_from_slice(&source);
        f.truncate(self.len);
        f
    }
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let len = prop_oneof![
        Just(0usize),
        Just(13),
        Just(14),
        Just(1514),
        Just(1515),
        Just(9014),
        Just(9015),
        14usize..200,
        0usize..1600,
        8900usize..9100,
    ];
    (
        0..PORTS + 3,
        prop::option::weighted(0.15, 0..PORTS + 3),
        len,
        any::<u8>(),
    )
        .prop_map(|(dst, src_mac, len, fill)| FrameSpec {
            dst,
            src_mac,
            len,
            fill,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Frame(usize, FrameSpec),
    NoBuffer(usize),
    Burst(usize, Vec<FrameSpec>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PORTS + 1, frame_spec()).prop_map(|(s, f)| Op::Frame(s, f)),
        2 => (0..PORTS + 1).prop_map(Op::NoBuffer),
        1 => (0..PORTS + 1, prop::collection::vec(frame_spec(), 0..70))
            .prop_map(|(s, fs)| Op::Burst(s, fs)),
    ]
}

fn macs() -> impl Strategy<Value = [[u8; 6]; PORTS]> {
    // Mostly distinct unicast addresses; sometimes a bad or repeated one.
    let mac = prop_oneof![
        8 => (0u8..8).prop_map(|i| [2, 0, 0, 0, 0, i]),
        1 => Just([0u8; 6]),
        1 => Just([0xffu8; 6]),
        1 => Just([1u8, 0, 0x5e, 0, 0, 1]),
        1 => Just([0u8, 0x1b, 0x21, 0, 0, 1]),
    ];
    prop::array::uniform5(mac)
}

/// Mostly a pair the ACL takes, sometimes a port that does not exist or
/// a port paired with itself.
fn deny_pair() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        12 => (0..PORTS, 0..PORTS).prop_filter("two ports", |(a, b)| a != b),
        1 => (0..PORTS + 2, 0..PORTS + 2),
    ]
}

fn check_counters(switch: &Switch<PORTS>, model: &Model) {
    for p in 0..PORTS {
        assert_eq!(switch.counters(p), Some(&model.counters[p]), "port {p}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn switch_matches_model(
        macs in macs(),
        deny in prop::collection::vec(deny_pair(), 0..5),
        ops in prop::collection::vec(op(), 0..60),
        mtu in prop_oneof![Just(1500u16), Just(9000), 0u16..200],
    ) {
        // A bad configuration is refused with the model's error; the run
        // then goes on with distinct addresses.
        let got = Config::new(macs.map(Mac));
        let want = Model::validate(&macs);
        prop_assert_eq!(got.as_ref().err().copied(), want.err());
        let macs = if want.is_ok() {
            macs
        } else {
            core::array::from_fn(|i| [2, 0, 0, 0, 1, i as u8])
        };
        let mut config = Config::new(macs.map(Mac)).unwrap();
        // Any MTU from 68 is one; below, none, and the default is kept.
        let taken = Mtu::new(mtu);
        prop_assert_eq!(taken.is_some(), mtu >= 68);
        if let Some(mtu) = taken {
            config.set_mtu(mtu);
        }
        let mut model = Model {
            macs: macs.to_vec(),
            max_frame: 14 + usize::from(config.mtu().get()),
            denied: Vec::new(),
            counters: vec![Counters::default(); PORTS],
        };
        let list: Vec<String> = deny.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let before = config.clone();
        let result = config.deny_list(&list.join(","));
        prop_assert_eq!(result, model.deny_pairs(&deny));
        if result.is_err() {
            prop_assert_eq!(&config, &before);
        }
        for a in 0..PORTS + 1 {
            for b in 0..PORTS + 1 {
                let want = a < PORTS && b < PORTS && model.allowed(a, b);
                prop_assert_eq!(config.allows(a, b), want, "{}-{}", a, b);
            }
        }

        let mut switch = Switch::new(config);
        for op in ops {
            match op {
                Op::Frame(src, spec) => {
                    let frame = spec.bytes(&macs, src);
                    prop_assert_eq!(switch.decide(src, &frame), model.decide(src, &frame));
                }
                Op::NoBuffer(port) => {
                    prop_assert_eq!(switch.no_buffer(port), model.no_buffer(port));
                }
                Op::Burst(src, specs) => {
                    let frames: Vec<Vec<u8>> = specs.iter().map(|s| s.bytes(&macs, src)).collect();
                    let slices: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                    let got = switch.decide_burst(src, &slices);
                    if frames.len() > net_switch::MAX_BURST {
                        prop_assert_eq!(got, Err(Error::BurstTooLong { frames: frames.len() }));
                        continue;
                    }
                    let plan = got.unwrap();
                    // The model's plan: per destination, its frames in order.
                    let mut lists = vec![Vec::new(); PORTS];
                    let mut bytes = [0usize; PORTS];
                    let mut by_hand = Plan::<PORTS>::new();
                    for (i, frame) in frames.iter().enumerate() {
                        let decision = model.decide(src, frame);
                        prop_assert_eq!(by_hand.push(frame.len(), &decision), Ok(i));
                        for p in 0..PORTS {
                            if decision.ports().contains(p) {
                                lists[p].push(i);
                                bytes[p] += frame.len();
                            }
                        }
                    }
                    prop_assert_eq!(&plan, &by_hand);
                    prop_assert_eq!(plan.len(), frames.len());
                    for p in 0..PORTS {
                        prop_assert_eq!(plan.frames(p).collect::<Vec<_>>(), lists[p].clone());
                        prop_assert_eq!(plan.bytes(p), bytes[p]);
                        prop_assert_eq!(plan.destinations().contains(p), !lists[p].is_empty());
                    }
                    let calls = lists.iter().filter(|l| !l.is_empty()).count();
                    prop_assert_eq!(plan.write_calls(), calls);
                }
            }
            check_counters(&switch, &model);
        }
    }
}
