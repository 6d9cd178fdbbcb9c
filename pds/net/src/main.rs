// SPDX-License-Identifier: BSD-2-Clause
//! The `net` PD (the N-VM Linux system): an Ethernet switch between the
//! VMs' virtio-net devices, one port per VM. It never maps guest RAM:
//! frames move through each VM's VMM's copy service, into and out of
//! memory that this PD shares with that VMM and, for a pair region, with
//! the one other VMM at the pair's other end.
//!
//! Glue only: the queues are `virtio::net::NetService`, the decisions
//! (MACs, ACL, anti-spoofing, flooding, counters, per-destination
//! batching, routing into pair areas) `net_switch`.
//!
//! On VMM n's signal: [`NetService::transmit_routed`] gathers VM n's
//! transmit chains (up to 64 frames) into the areas the switch routes them
//! to, and each destination gets its frames in one
//! [`NetService::receive_placed`]; frames a destination has no posted
//! buffer for are dropped and counted ([`Switch::no_buffer`]): a receiver without
//! buffers costs the sender a dropped frame, never a stall. VMMs whose
//! guest wants an interrupt are signalled once per burst.
//!
//! **Copies of a frame: 2.** Each pair of VMs `{a, b}` has a region of
//! its own (`net_switch::Pairs`), mapped here and into VMM a and VMM b
//! only, holding an area for frames from a to b and one for frames from
//! b to a; each VMM's window for this PD is its staging region and then
//! its pair regions. (1) VMM s copies a frame (with its 12-byte
//! virtio-net header) out of VM s's transmit buffer into the area for
//! `s -> d` (`Client::readv_at`, asked by `NetService::transmit_routed`);
//! (2) VMM d copies it from there into VM d's receive buffer
//! (`Client::writev_at`, asked by `NetService::receive_placed`, which
//! writes the receive header over the transmit one first). This PD copies
//! no frame. Which area: with one reachable peer (two VMs) every frame
//! goes to that pair's area and is decided there on the whole frame;
//! with several, the frames' first 26 bytes are read first (one more call
//! per 39 frames) and each frame is gathered only into the areas of the
//! ports the switch sends it to (`net_switch::PortRouter`), a broadcast
//! into each. A VMM sees only frames its VM sent or was sent.
//!
//! **Copy calls for a 64-frame burst** (Linux: header and frame in one
//! buffer, so one segment per frame; a call carries at most 39): transmit
//! 1 (ring snapshot) + 2 (gather) + 1 (used ring) = 4, plus 2 (peeks) with
//! several reachable peers; each destination 1 (snapshot) + 2 (scatter) +
//! 1 (used ring) = 4: 8 calls for 64 unicast frames between two VMs.
//!
//! Channels (guest_ram_sdf.linux, through `setvar_id`): VM n's port, a
//! copy client of VMM n, on channel n; VMM n's power-off signal on
//! `vm<n>_power_channel` (4 + n), on which this PD logs every port's
//! counters. Each port's MAC is `common::net_mac(n)`. The ACL's deny list
//! (`NET_DENY=0-2` on make's command line) is a prefilled read-only region
//! (`acl_vaddr`, its length `acl_len`), parsed by
//! `net_switch::Config::deny_list`.
#![allow(
    unsafe_code,
    reason = "maps the per-VM buffers, device pages and the ACL region system.xml gives it"
)]
#![no_std]
#![no_main]

use core::ptr::NonNull;

use common::Ppc;
use guest_ram::client::Client;
use guest_ram::SharedBuffer;
use net_switch::{Config, Mac, Pairs, PortRouter, PortSet, Switch};
use sel4_microkit::{protection_domain, var, Channel, ChannelSet, Handler, Infallible};
use virtio::net::{Burst, Mtu, NetService, BURST_BYTES, HDR_LEN, MAX_AREAS};
use virtio::virtq::InPlace;

/// The most VMs (guest_ram_sdf.linux's MAX_VMS): the switch's ports.
const PORTS: usize = 4;
/// Each window's staging region, where the copy client stages ring
/// snapshots, used rings and peeks (guest_ram_sdf.linux's
/// NET_BUFFER_SIZE).
const STAGING: usize = 0x2_0000;
/// One direction's area in a pair region (guest_ram_sdf.linux's
/// NET_AREA_SIZE): 512 KiB, a whole burst at MTU 1500
/// ([`BURST_BYTES`], 97,664 bytes) and 8 frames at [`Mtu::JUMBO`], the
/// default `NET_MTU` (64 KiB each with their headers); at least one frame
/// at any MTU.
const AREA: usize = 0x8_0000;
const _: () = assert!(AREA >= BURST_BYTES && AREA >= HDR_LEN + common::NET_MTU.max_frame());
const _: () = assert!(AREA >= 8 * (HDR_LEN + Mtu::JUMBO.max_frame()));

/// One VM's port.
struct Port {
    channel: Channel,
    power: Channel,
    client: Client<Ppc>,
    service: NetService,
    /// The port's window: the staging region, then its pair regions
    /// ([`Pairs`]), as VMM n maps them too.
    buffer: SharedBuffer,
}

struct Net {
    ports: [Option<Port>; PORTS],
    switch: Switch<PORTS>,
    /// Where each pair of ports' areas lie in their windows.
    pairs: Pairs,
    /// Bursts forwarded, for the log.
    bursts: u64,
}

/// What the system description says of VM n's port (setvar): its
/// window's staging region (`buffer`), its device page, its channels and
/// where its last pair region is mapped.
struct PortVars {
    buffer: usize,
    buffer_size: usize,
    device: usize,
    device_size: usize,
    channel: usize,
    power: usize,
    last_pair: usize,
}

impl PortVars {
    /// Whether the description gives VM n a port at all.
    fn given(&self, n: usize) -> bool {
        if self.buffer == 0 || self.device == 0 {
            return false;
        }
        if self.channel != n {
            log::error!(
                "net: VM {n}'s port is on channel {}, not {n}; left out",
                self.channel
            );
            return false;
        }
        true
    }
}

/// VM `n`'s port, if its window is laid out as `pairs` says: the staging
/// region, then a pair region of `pair_size` bytes per peer, the last one
/// at `last_pair`.
fn port(n: usize, v: &PortVars, pairs: &Pairs, pair_size: usize) -> Option<Port> {
    let window = pairs.window_len(n)?;
    let peers = pairs.peers(n).len();
    let end = v.buffer.checked_add(window)?;
    let laid_out = v.buffer_size == STAGING
        && pair_size == pairs.pair_len()
        && (peers == 0 || v.last_pair.checked_add(pair_size) == Some(end));
    if !laid_out {
        log::error!(
            "net: VM {n}'s window is not {STAGING:#x} bytes of staging and {peers} pair regions of {:#x}; left out",
            pairs.pair_len()
        );
        return None;
    }
    let (buffer_vaddr, device_vaddr) = (
        NonNull::new(v.buffer as *mut u8)?,
        NonNull::new(v.device as *mut u8)?,
    );
    // SAFETY: system.xml maps VM n's staging region and then its pair
    // regions back to back here (their sizes and the last one's address
    // checked above), and its device page, for the PD's whole life.
    let (buffer, page) = unsafe {
        (
            SharedBuffer::new(buffer_vaddr, window),
            SharedBuffer::new(device_vaddr, v.device_size),
        )
    };
    let client = Client::with_staging(Ppc(Channel::new(n)), buffer, 0, STAGING).ok()?;
    Some(Port {
        channel: Channel::new(n),
        power: Channel::new(v.power),
        client,
        service: NetService::with_mtu(page, common::NET_MTU),
        buffer,
    })
}

/// The deny list the build wrote into the ACL region (`NET_DENY`).
fn deny_list() -> &'static str {
    let len = *var!(acl_len: usize = 0);
    let Some(vaddr) = NonNull::new(*var!(acl_vaddr: usize = 0) as *mut u8) else {
        return "";
    };
    // SAFETY: system.xml maps the ACL region here read-only for good,
    // prefilled with `acl_len` bytes; nothing writes it.
    let bytes = unsafe { core::slice::from_raw_parts(vaddr.as_ptr(), len) };
    core::str::from_utf8(bytes).unwrap_or("?")
}

#[protection_domain]
fn init() -> Net {
    common::init_logging(log::LevelFilter::Info);
    let vars = [
        PortVars {
            buffer: *var!(vm0_buffer_vaddr: usize = 0),
            buffer_size: *var!(vm0_buffer_size: usize = 0),
            device: *var!(vm0_device_vaddr: usize = 0),
            device_size: *var!(vm0_device_size: usize = 0),
            channel: *var!(vm0_channel: usize = 0),
            power: *var!(vm0_power_channel: usize = 4),
            last_pair: *var!(vm0_last_pair_vaddr: usize = 0),
        },
        PortVars {
            buffer: *var!(vm1_buffer_vaddr: usize = 0),
            buffer_size: *var!(vm1_buffer_size: usize = 0),
            device: *var!(vm1_device_vaddr: usize = 0),
            device_size: *var!(vm1_device_size: usize = 0),
            channel: *var!(vm1_channel: usize = 1),
            power: *var!(vm1_power_channel: usize = 5),
            last_pair: *var!(vm1_last_pair_vaddr: usize = 0),
        },
        PortVars {
            buffer: *var!(vm2_buffer_vaddr: usize = 0),
            buffer_size: *var!(vm2_buffer_size: usize = 0),
            device: *var!(vm2_device_vaddr: usize = 0),
            device_size: *var!(vm2_device_size: usize = 0),
            channel: *var!(vm2_channel: usize = 2),
            power: *var!(vm2_power_channel: usize = 6),
            last_pair: *var!(vm2_last_pair_vaddr: usize = 0),
        },
        PortVars {
            buffer: *var!(vm3_buffer_vaddr: usize = 0),
            buffer_size: *var!(vm3_buffer_size: usize = 0),
            device: *var!(vm3_device_vaddr: usize = 0),
            device_size: *var!(vm3_device_size: usize = 0),
            channel: *var!(vm3_channel: usize = 3),
            power: *var!(vm3_power_channel: usize = 7),
            last_pair: *var!(vm3_last_pair_vaddr: usize = 0),
        },
    ];
    let mut present = PortSet::EMPTY;
    for (n, v) in vars.iter().enumerate() {
        if v.given(n) {
            present.insert(n);
        }
    }
    let pairs = Pairs::new(present, STAGING, AREA).expect("windows fit the address space");
    let pair_size = *var!(pair_size: usize = 0);
    let ports: [Option<Port>; PORTS] = core::array::from_fn(|n| {
        vars.get(n)
            .filter(|v| v.given(n))
            .and_then(|v| port(n, v, &pairs, pair_size))
    });
    let macs = core::array::from_fn(|n| Mac(common::net_mac(n)));
    let mut config = Config::new(macs).expect("distinct unicast MACs");
    config.set_mtu(common::NET_MTU);
    // A VM the system does not have: no frame goes to or comes from it.
    for a in 0..PORTS {
        for b in a + 1..PORTS {
            if ports[a].is_none() || ports[b].is_none() {
                let _ = config.deny(a, b);
            }
        }
    }
    let list = deny_list();
    match config.deny_list(list) {
        Ok(()) => {}
        Err(e) => log::error!(
            "net: deny list {:?} refused ({e}): denying nothing more",
            list.trim_ascii()
        ),
    }
    log::info!(
        "net: {} port(s), MACs 02:00:00:00:00:01.., MTU {}, deny list {:?}",
        ports.iter().flatten().count(),
        common::NET_MTU.get(),
        list.trim_ascii()
    );
    Net {
        ports,
        switch: Switch::new(config),
        pairs,
        bursts: 0,
    }
}

impl Net {
    /// VM `s`'s VMM signalled: forward every frame its guest transmitted,
    /// burst by burst, marking in `signal` the ports to signal. Each
    /// burst's frames are gathered by VMM s straight into the areas of the
    /// pair regions they go to (copy 1), and each destination's VMM
    /// copies them from there into its guest's receive buffers (copy 2).
    fn transmit(&mut self, s: usize, signal: &mut [bool; PORTS]) {
        let Some(mut sender) = self.ports.get_mut(s).and_then(Option::take) else {
            return;
        };
        loop {
            let mut router = PortRouter::new(&mut self.switch, &self.pairs, s);
            let mut areas: heapless::Vec<Burst<'_>, MAX_AREAS> = heapless::Vec::new();
            for (_, d) in router.areas() {
                let Some(at) = self.pairs.area(s, s, d) else {
                    break;
                };
                // SAFETY: the area for frames from s to d, inside VM s's
                // window (`Pairs::area`, the window's length checked in
                // `port`). Only this PD, VMM s and VMM d map it: VMM s
                // writes it only during this PD's gathers on its behalf,
                // VMM d reads it only during this PD's scatters, and
                // nothing else in this PD holds a reference into it.
                let area = unsafe {
                    core::slice::from_raw_parts_mut(sender.buffer.vaddr().as_ptr().add(at), AREA)
                };
                if areas.push(Burst::new(area)).is_err() {
                    break;
                }
            }
            let mut dma = InPlace::new(&mut sender.client, STAGING);
            let done = sender
                .service
                .transmit_routed(&mut dma, &mut router, &mut areas);
            signal[s] |= done.signal;
            if areas.iter().any(|area| !area.is_empty()) {
                self.bursts += 1;
            }
            let deliveries = router.deliveries(&areas);
            drop(areas);
            for (d, spans) in &deliveries {
                self.deliver(s, *d, spans, signal);
            }
            if !done.more {
                break;
            }
        }
        self.ports[s] = Some(sender);
    }

    /// Has VMM d copy the frames at `spans` of the area for frames from
    /// `s` to `d` into VM d's posted receive buffers; counts those that
    /// found none.
    fn deliver(
        &mut self,
        s: usize,
        d: usize,
        spans: &[(usize, usize)],
        signal: &mut [bool; PORTS],
    ) {
        if spans.is_empty() {
            return;
        }
        let at = self.pairs.area(d, s, d);
        let delivered = match (self.ports.get_mut(d).and_then(Option::as_mut), at) {
            (Some(port), Some(at)) => {
                // SAFETY: the same area as in `transmit`, through VM d's
                // window (where VMM d maps it); the sender's view of it is
                // no longer used. VMM d reads it only during the scatter
                // below.
                let area = unsafe {
                    core::slice::from_raw_parts_mut(port.buffer.vaddr().as_ptr().add(at), AREA)
                };
                let mut dma = InPlace::new(&mut port.client, STAGING);
                let done = port.service.receive_placed(&mut dma, area, spans);
                signal[d] |= done.signal;
                done.delivered
            }
            _ => 0,
        };
        for _ in delivered..spans.len() {
            let _ = self.switch.no_buffer(d);
        }
    }

    /// Logs every port's counters.
    fn report(&self, why: &str) {
        log::info!("net: {why}: {} bursts forwarded", self.bursts);
        for (n, port) in self.ports.iter().enumerate() {
            if let (Some(port), Some(report)) = (port, self.switch.report(n)) {
                let s = port.service.stats();
                log::info!(
                    "net: {report}; virtio: {} frames out, {} in, {} copy calls",
                    s.tx_frames,
                    s.rx_frames,
                    s.calls
                );
            }
        }
    }
}

impl Handler for Net {
    type Error = Infallible;

    fn notified(&mut self, set: ChannelSet) -> Result<(), Self::Error> {
        let mut signal = [false; PORTS];
        for s in 0..PORTS {
            let channel = self.ports[s].as_ref().map(|p| p.channel);
            if channel.is_some_and(|c| set.contains(c)) {
                self.transmit(s, &mut signal);
            }
        }
        for (n, port) in self.ports.iter().enumerate() {
            if let (Some(port), true) = (port, signal[n]) {
                port.channel.notify();
            }
        }
        for n in 0..PORTS {
            let power = self.ports[n].as_ref().map(|p| p.power);
            if power.is_some_and(|c| set.contains(c)) {
                let mut why = *b"vm0 powered off";
                why[2] = b'0'.wrapping_add(n as u8);
                self.report(core::str::from_utf8(&why).unwrap_or("a VM powered off"));
            }
        }
        Ok(())
    }
}
