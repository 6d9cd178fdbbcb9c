// SPDX-License-Identifier: BSD-2-Clause
//! The `net` PD (the N-VM Linux system): an Ethernet switch between the
//! VMs' virtio-net devices, one port per VM. It never maps guest RAM:
//! frames move through each VM's VMM's copy service, into and out of a
//! buffer that this PD shares with that VMM alone.
//!
//! Glue only: the queues are `virtio::net::NetService`, the decisions
//! (MACs, ACL, anti-spoofing, flooding, counters, per-destination
//! batching) `net_switch::Switch`.
//!
//! On VMM n's signal: [`NetService::transmit`] gathers VM n's transmit
//! chains into a [`Burst`] (up to 64 frames), [`Switch::decide_burst`]
//! decides them all, and each destination gets its frames in one
//! [`NetService::receive`]; frames a destination has no posted buffer for
//! are dropped and counted ([`Switch::no_buffer`]): a receiver without
//! buffers costs the sender a dropped frame, never a stall. VMMs whose
//! guest wants an interrupt are signalled once per burst.
//!
//! **Copies of a frame: 3.** (1) VMM s copies the frame (with its 12-byte
//! virtio-net header) from VM s's transmit buffer into this PD's buffer
//! for VM s, at the burst's place in it (`Client::readv_at`: the burst
//! *is* that part of the shared buffer, no bounce); (2)
//! `NetService::receive_staged` copies it, behind a fresh header, into
//! the same place of this PD's buffer for VM d; (3) VMM d copies it from
//! there into VM d's receive buffer (`Client::writev_at`). The switch
//! holds a frame once in memory only VM s's VMM sees, and writes it once
//! into memory only VM d's VMM sees. Two copies would need a buffer mapped
//! into both VMMs, chosen before the switch knows the destination: VM s's
//! VMM would then see frames for VMs other than d. Not done.
//!
//! **Copy calls for a 64-frame burst** (Linux: header and frame in one
//! buffer, so one segment per frame; a call carries at most 39): transmit
//! 1 (ring snapshot) + 2 (gather) + 1 (used ring) = 4; each destination 1
//! (snapshot) + 2 (scatter of 64 frames) + 1 (used ring) = 4: 8 calls for
//! 64 unicast frames to one VM, 4 + 4 × (VMs - 1) for 64 broadcasts.
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
use guest_ram::client::{Client, ClientError};
use guest_ram::{GpaRange, SharedBuffer};
use net_switch::{Config, Mac, Switch};
use sel4_microkit::{protection_domain, var, Channel, ChannelSet, Handler, Infallible};
use virtio::net::{Burst, NetService, BURST_BYTES, MAX_BURST};
use virtio::virtq::GuestDma;

/// The most VMs (guest_ram_sdf.linux's MAX_VMS): the switch's ports.
const PORTS: usize = 4;
/// The part of each VM's buffer the copy client stages in (ring snapshots,
/// used rings, receive batches: at most 97,664 bytes).
const STAGING: usize = 0x2_0000;
/// Where the transmit burst lives in each VM's buffer, after the staging
/// area: frames are gathered there by the VMM, in place.
const BURST_AT: usize = STAGING;

/// One VM's port.
struct Port {
    channel: Channel,
    power: Channel,
    client: Client<Ppc>,
    service: NetService,
    buffer: SharedBuffer,
}

/// A copy client whose gathers into, and scatters from, its own shared
/// buffer go in place (`readv_at`/`writev_at`: one copy, by the VMM);
/// anything else goes through the staging area as `Client` does.
struct InPlace<'a> {
    client: &'a mut Client<Ppc>,
    buffer: SharedBuffer,
}

impl InPlace<'_> {
    /// `bytes`' offset in the shared buffer, if it lies wholly inside it.
    fn offset_of(&self, bytes: &[u8]) -> Option<u64> {
        let base = self.buffer.vaddr().as_ptr() as usize;
        let at = (bytes.as_ptr() as usize).checked_sub(base)?;
        (at.checked_add(bytes.len())? <= self.buffer.len()).then_some(at as u64)
    }
}

impl GuestDma for InPlace<'_> {
    type Error = ClientError;
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), ClientError> {
        self.client.read(gpa, dst)
    }
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), ClientError> {
        match self.offset_of(dst) {
            Some(at) if at >= STAGING as u64 => {
                let n = self.client.readv_at(segments, at)?;
                if n == dst.len() {
                    Ok(())
                } else {
                    Err(ClientError::TooLarge)
                }
            }
            _ => self.client.readv(segments, dst),
        }
    }
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), ClientError> {
        self.client.write(gpa, src)
    }
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), ClientError> {
        match self.offset_of(src) {
            Some(at) if at >= STAGING as u64 => {
                let n = self.client.writev_at(segments, at)?;
                if n == src.len() {
                    Ok(())
                } else {
                    Err(ClientError::TooLarge)
                }
            }
            _ => self.client.writev(segments, src),
        }
    }
    fn staging(&self) -> &SharedBuffer {
        self.client.staging()
    }
    fn gather(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.client.readv_in_place(segments)
    }
    fn scatter(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.client.writev_in_place(segments)
    }
    fn gather_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.client.readv_at(segments, offset)
    }
    fn scatter_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.client.writev_at(segments, offset)
    }
}

struct Net {
    ports: [Option<Port>; PORTS],
    switch: Switch<PORTS>,
    /// Bursts forwarded, for the log.
    bursts: u64,
}

/// VM `n`'s port, if the system description gives it one.
fn port(
    n: usize,
    [buffer, device]: [usize; 2],
    sizes: [usize; 2],
    [channel, power]: [usize; 2],
) -> Option<Port> {
    let (buffer_vaddr, device_vaddr) = (
        NonNull::new(buffer as *mut u8)?,
        NonNull::new(device as *mut u8)?,
    );
    if channel != n {
        log::error!("net: VM {n}'s port is on channel {channel}, not {n}; left out");
        return None;
    }
    if sizes[0] < BURST_AT + BURST_BYTES {
        log::error!(
            "net: VM {n}'s buffer is {} bytes, fewer than {}; left out",
            sizes[0],
            BURST_AT + BURST_BYTES
        );
        return None;
    }
    // SAFETY: system.xml maps VM n's buffer and device page here for the
    // PD's whole life, at these addresses and sizes (setvar).
    let (buffer, page) = unsafe {
        (
            SharedBuffer::new(buffer_vaddr, sizes[0]),
            SharedBuffer::new(device_vaddr, sizes[1]),
        )
    };
    let client = Client::with_staging(Ppc(Channel::new(n)), buffer, 0, STAGING).ok()?;
    Some(Port {
        channel: Channel::new(n),
        power: Channel::new(power),
        client,
        service: NetService::new(page),
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
    let ports = [
        port(
            0,
            [
                *var!(vm0_buffer_vaddr: usize = 0),
                *var!(vm0_device_vaddr: usize = 0),
            ],
            [
                *var!(vm0_buffer_size: usize = 0),
                *var!(vm0_device_size: usize = 0),
            ],
            [
                *var!(vm0_channel: usize = 0),
                *var!(vm0_power_channel: usize = 4),
            ],
        ),
        port(
            1,
            [
                *var!(vm1_buffer_vaddr: usize = 0),
                *var!(vm1_device_vaddr: usize = 0),
            ],
            [
                *var!(vm1_buffer_size: usize = 0),
                *var!(vm1_device_size: usize = 0),
            ],
            [
                *var!(vm1_channel: usize = 1),
                *var!(vm1_power_channel: usize = 5),
            ],
        ),
        port(
            2,
            [
                *var!(vm2_buffer_vaddr: usize = 0),
                *var!(vm2_device_vaddr: usize = 0),
            ],
            [
                *var!(vm2_buffer_size: usize = 0),
                *var!(vm2_device_size: usize = 0),
            ],
            [
                *var!(vm2_channel: usize = 2),
                *var!(vm2_power_channel: usize = 6),
            ],
        ),
        port(
            3,
            [
                *var!(vm3_buffer_vaddr: usize = 0),
                *var!(vm3_device_vaddr: usize = 0),
            ],
            [
                *var!(vm3_buffer_size: usize = 0),
                *var!(vm3_device_size: usize = 0),
            ],
            [
                *var!(vm3_channel: usize = 3),
                *var!(vm3_power_channel: usize = 7),
            ],
        ),
    ];
    let macs = core::array::from_fn(|n| Mac(common::net_mac(n)));
    let mut config = Config::new(macs).expect("distinct unicast MACs");
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
        "net: {} port(s), MACs 02:00:00:00:00:01.., deny list {:?}",
        ports.iter().flatten().count(),
        list.trim_ascii()
    );
    Net {
        ports,
        switch: Switch::new(config),
        bursts: 0,
    }
}

impl Net {
    /// VM `s`'s VMM signalled: forward every frame its guest transmitted,
    /// burst by burst, marking in `signal` the ports to signal.
    fn transmit(&mut self, s: usize, signal: &mut [bool; PORTS]) {
        let Some(mut sender) = self.ports.get_mut(s).and_then(Option::take) else {
            return;
        };
        loop {
            // SAFETY: the burst area is inside VM s's buffer (checked in
            // `port`), which only this PD and VMM s map; VMM s writes it
            // only during this PD's copy calls on its behalf (the gather
            // below), and nothing else holds a reference into it.
            let area = unsafe {
                core::slice::from_raw_parts_mut(
                    sender.buffer.vaddr().as_ptr().add(BURST_AT),
                    BURST_BYTES,
                )
            };
            let mut burst = Burst::new(area);
            let mut dma = InPlace {
                client: &mut sender.client,
                buffer: sender.buffer,
            };
            let done = sender.service.transmit(&mut dma, &mut burst);
            signal[s] |= done.signal;
            if !burst.is_empty() {
                self.bursts += 1;
                self.forward(s, &burst, signal);
            }
            if !done.more {
                break;
            }
        }
        self.ports[s] = Some(sender);
    }

    /// Decides a burst from port `s` and writes each destination's frames
    /// in one receive.
    fn forward(&mut self, s: usize, burst: &Burst<'_>, signal: &mut [bool; PORTS]) {
        let frames = burst.slices();
        let Ok(plan) = self.switch.decide_burst(s, &frames) else {
            return;
        };
        for d in plan.destinations() {
            let mut list: [&[u8]; MAX_BURST] = [&[]; MAX_BURST];
            let mut n = 0;
            for i in plan.frames(d) {
                if let (Some(slot), Some(frame)) = (list.get_mut(n), frames.get(i)) {
                    *slot = frame;
                    n += 1;
                }
            }
            let list = list.get(..n).unwrap_or(&[]);
            let delivered = match self.ports.get_mut(d).and_then(Option::as_mut) {
                Some(port) => {
                    // SAFETY: the burst area of VM d's buffer, which only
                    // this PD and VMM d map; d is not the sender (a frame
                    // never goes back), so nothing else uses it now, and
                    // VMM d only reads it, during the scatter below.
                    let staging = unsafe {
                        core::slice::from_raw_parts_mut(
                            port.buffer.vaddr().as_ptr().add(BURST_AT),
                            BURST_BYTES,
                        )
                    };
                    let mut dma = InPlace {
                        client: &mut port.client,
                        buffer: port.buffer,
                    };
                    let done = port.service.receive_staged(&mut dma, list, staging);
                    signal[d] |= done.signal;
                    done.delivered
                }
                None => 0,
            };
            for _ in delivered..list.len() {
                let _ = self.switch.no_buffer(d);
            }
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
