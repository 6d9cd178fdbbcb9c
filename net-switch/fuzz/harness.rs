// SPDX-License-Identifier: BSD-2-Clause
//! The switch fuzz harness, shared by `cargo fuzz run switch` and the
//! corpus replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: 8 bytes choosing the 8 ports' MACs (from a small pool, so that
//! duplicates, zero and group addresses happen), a deny list (a length
//! byte, then either pairs or raw characters for the parser), then
//! 6-byte operations `[kind, src, dst, source, len_lo, len_hi]`: a frame
//! from port `src` (possibly not a port) to a port's MAC, a stranger's,
//! broadcast or multicast, from its own MAC or another, of any length up
//! to 2 KiB, decided whole or on its first 14 bytes (`decide_head`); a
//! no-buffer report; or a burst of up to 70 such frames.
//!
//! After every step it checks what the switch promises: never a delivery
//! back to the source, across a denied pair, of a spoofed or malformed
//! frame, or to a MAC other than the port's; floods only of group
//! addresses; and the counters add up against the harness's own tally
//! (every frame taken from a port counted once, every delivery counted
//! at its port as sent or as dropped for want of a buffer). A burst's
//! plan must list, per destination, exactly the frames that frame-by-frame
//! decisions send there, in order.

use net_switch::{
    Config, Decision, Error, Mac, Mtu, PortSet, Reason, Switch, MAX_BURST, MIN_FRAME, MIN_MTU,
};

const PORTS: usize = 8;

fn pool(choice: u8) -> Mac {
    match choice % 16 {
        12 => Mac([0; 6]),
        13 => Mac::BROADCAST,
        14 => Mac([0x33, 0x33, 0, 0, 0, 0x16]),
        15 => Mac([0x00, 0x1b, 0x21, 0, 0, 1]),
        i => Mac([2, 0, 0, 0, 0, i]),
    }
}

/// The harness's own tally, per port.
#[derive(Clone, Copy, Default)]
struct Tally {
    /// Frames taken from the port.
    offered: u64,
    /// Deliveries decided to the port.
    deliveries: u64,
    /// No-buffer reports accepted for the port.
    no_buffer: u64,
}

pub fn run(data: &[u8]) {
    let Some((choices, rest)) = data.split_first_chunk::<PORTS>() else {
        return;
    };
    let macs = choices.map(pool);
    let config = match Config::new(macs) {
        Ok(config) => config,
        Err(error) => {
            // The error names a port whose MAC really is bad.
            match error {
                Error::MulticastMac { port } => assert!(macs[port].is_multicast()),
                Error::ZeroMac { port } => assert!(macs[port].is_zero()),
                Error::DuplicateMac { port, first } => {
                    assert!(first < port && macs[first] == macs[port]);
                }
                other => panic!("Config::new: {other}"),
            }
            Config::new(core::array::from_fn(|i| Mac([2, 0, 0, 0, 1, i as u8]))).unwrap()
        }
    };
    let macs = *config.macs();
    let (config, rest) = deny(config, rest);
    let mut switch = Switch::new(config);
    let mut tally = [Tally::default(); PORTS];

    for op in rest.chunks_exact(6) {
        let src = usize::from(op[1] % (PORTS as u8 + 2));
        match op[0] % 4 {
            0 => {
                let frame = frame(&macs, src, op);
                let decision = switch.decide(src, &frame);
                check(&switch, &mut tally, src, &frame, decision);
            }
            1 => {
                // Decided on its first bytes only, as the net PD does when
                // it peeks: the same promises hold for the whole frame.
                let frame = frame(&macs, src, op);
                let head = &frame[..frame.len().min(14)];
                let decision = switch.decide_head(src, frame.len(), head);
                check(&switch, &mut tally, src, &frame, decision);
            }
            2 => {
                let port = src;
                let result = switch.no_buffer(port);
                match tally.get_mut(port) {
                    None => assert_eq!(result, Err(Error::NoSuchPort { port })),
                    Some(t) if t.deliveries > t.no_buffer => {
                        assert_eq!(result, Ok(()));
                        t.no_buffer += 1;
                    }
                    Some(_) => assert_eq!(result, Err(Error::NoDelivery { port })),
                }
            }
            _ => burst(&mut switch, &mut tally, &macs, src, op),
        }
        for (port, t) in tally.iter().enumerate() {
            let c = switch.counters(port).unwrap();
            assert_eq!(c.received(), t.offered, "port {port}");
            assert_eq!(c.tx + c.dropped_no_buffer, t.deliveries, "port {port}");
            assert_eq!(c.dropped_no_buffer, t.no_buffer, "port {port}");
        }
    }
    for port in 0..PORTS {
        let line = switch.report(port).unwrap().to_string();
        assert!(line.starts_with(&format!("port {port} ")));
    }
}

/// Applies the input's deny list; checks the ACL it leaves.
fn deny(mut config: Config<PORTS>, data: &[u8]) -> (Config<PORTS>, &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return (config, data);
    };
    let len = usize::from(head % 16).min(rest.len());
    let (bytes, rest) = rest.split_at(len);
    let list: String = if head & 0x80 != 0 {
        // Pairs, mostly of real ports.
        let pairs: Vec<String> = bytes
            .iter()
            .map(|b| format!("{}-{}", (b >> 4) % 9, (b & 15) % 9))
            .collect();
        pairs.join(",")
    } else {
        bytes
            .iter()
            .map(|b| b"0123456789-, 7-"[usize::from(b % 15)] as char)
            .collect()
    };
    // Bit 6: an MTU of 1800 (frames to 1814 bytes, inside the 2,048 the
    // frames here reach); bit 5: one too small, refused.
    if head & 0x40 != 0 {
        config.set_mtu(Mtu::new(1800).unwrap());
        assert_eq!(config.max_frame(), 1814);
    }
    if head & 0x20 != 0 {
        assert_eq!(Mtu::new(MIN_MTU - 1), None);
    }
    let before = config.clone();
    match config.deny_list(&list) {
        Ok(()) => {
            for item in list.split(',').filter(|s| !s.trim().is_empty()) {
                let (a, b) = item.split_once('-').unwrap();
                let (a, b): (usize, usize) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
                assert!(!config.allows(a, b) && !config.allows(b, a), "{list:?}");
            }
        }
        Err(_) => assert_eq!(config, before, "{list:?}"),
    }
    for a in 0..PORTS {
        assert!(!config.allows(a, a));
        for b in 0..PORTS {
            assert_eq!(config.allows(a, b), config.allows(b, a));
            // Denying only ever takes pairs out.
            assert!(!config.allows(a, b) || before.allows(a, b));
        }
    }
    (config, rest)
}

/// A frame from port `src` as `op` describes it.
fn frame(macs: &[Mac; PORTS], src: usize, op: &[u8]) -> Vec<u8> {
    let pick = |b: u8, own: Mac| match b % 12 {
        i @ 0..8 => macs[usize::from(i)],
        8 => Mac::BROADCAST,
        9 => Mac([1, 0, 0x5e, 0, 0, 1]),
        10 => Mac([2, 0xee, 0, 0, 0, 1]),
        _ => own,
    };
    let own = macs.get(src).copied().unwrap_or(Mac([2, 0xdd, 0, 0, 0, 0]));
    let dst = pick(op[2], own);
    // The sender's own address most of the time.
    let source = if op[3] & 0xc0 == 0 {
        pick(op[3], own)
    } else {
        own
    };
    let len = usize::from(u16::from_le_bytes([op[4], op[5]]) % 2048);
    let len = if op[5] & 0x80 == 0 {
        len.clamp(MIN_FRAME - 2, 200)
    } else {
        len
    };
    let mut f = vec![op[4]; len.max(12)];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&source.0);
    f.truncate(len);
    f
}

/// Checks one decision against the rules, and tallies it.
fn check(
    switch: &Switch<PORTS>,
    tally: &mut [Tally; PORTS],
    src: usize,
    frame: &[u8],
    decision: Decision,
) {
    let config = switch.config();
    let Some(own) = config.mac(src) else {
        assert_eq!(decision, Decision::Drop(Reason::NoSuchPort));
        return;
    };
    tally[src].offered += 1;
    let well_formed = (MIN_FRAME..=config.max_frame()).contains(&frame.len());
    assert_eq!(decision == Decision::Drop(Reason::Malformed), !well_formed);
    if !well_formed {
        return;
    }
    let dst = Mac::destination(frame).unwrap();
    let honest = Mac::source(frame) == Some(own);
    assert_eq!(decision == Decision::Drop(Reason::Spoofed), !honest);
    match decision {
        Decision::Deliver(port) => {
            assert_ne!(port, src, "delivered back to its source");
            assert!(config.allows(src, port), "delivered across a denied pair");
            assert_eq!(config.mac(port), Some(dst));
        }
        Decision::Flood(set) => {
            assert!(dst.is_multicast());
            assert!(!set.is_empty() && !set.contains(src));
            assert_eq!(set, config.allowed_from(src));
            assert_eq!(set.0 & !PortSet::first(PORTS).0, 0);
        }
        Decision::Drop(Reason::Denied) => {
            if dst.is_multicast() {
                assert!(config.allowed_from(src).is_empty());
            } else {
                let port = config.port_of(dst).unwrap();
                assert!(!config.allows(src, port));
            }
        }
        Decision::Drop(Reason::UnknownDestination) => {
            assert!(!dst.is_multicast() && config.port_of(dst).is_none());
        }
        Decision::Drop(Reason::Malformed | Reason::Spoofed) => {}
        Decision::Drop(Reason::NoSuchPort) => panic!("port {src} exists"),
    }
    if let Decision::Deliver(_) | Decision::Flood(_) = decision {
        assert!(honest && well_formed);
    }
    for port in decision.ports() {
        tally[port].deliveries += 1;
    }
}

/// A burst of frames from `src`: its plan against frame-by-frame
/// decisions on a copy of the switch.
fn burst(
    switch: &mut Switch<PORTS>,
    tally: &mut [Tally; PORTS],
    macs: &[Mac; PORTS],
    src: usize,
    op: &[u8],
) {
    let n = usize::from(op[2] % 70);
    let mut state = u64::from_le_bytes([op[0], op[1], op[2], op[3], op[4], op[5], 1, 0]);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            frame(macs, src, &state.to_le_bytes()[..6])
        })
        .collect();
    let slices: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut one_by_one = switch.clone();
    let result = switch.decide_burst(src, &slices);
    if n > MAX_BURST {
        assert_eq!(result, Err(Error::BurstTooLong { frames: n }));
        for port in 0..PORTS {
            assert_eq!(switch.counters(port), one_by_one.counters(port));
        }
        return;
    }
    let plan = result.unwrap();
    assert_eq!(plan.len(), n);
    let mut lists = vec![Vec::new(); PORTS];
    for (i, frame) in frames.iter().enumerate() {
        let decision = one_by_one.decide(src, frame);
        check(&one_by_one, tally, src, frame, decision);
        for port in decision.ports() {
            lists[port].push(i);
        }
    }
    for (port, list) in lists.iter().enumerate() {
        let planned: Vec<usize> = plan.frames(port).collect();
        assert_eq!(&planned, list, "port {port}");
        assert!(planned.windows(2).all(|w| w[0] < w[1]), "out of order");
        assert!(port != src || planned.is_empty());
        let bytes: usize = list.iter().map(|&i| frames[i].len()).sum();
        assert_eq!(plan.bytes(port), bytes);
        assert_eq!(switch.counters(port), one_by_one.counters(port));
    }
    assert!(plan.write_calls() < PORTS);
}
