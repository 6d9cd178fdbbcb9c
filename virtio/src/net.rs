// SPDX-License-Identifier: BSD-2-Clause
//! virtio-net (virtio 1.2, §5.1): one receive queue and one transmit
//! queue, for a `net` PD that switches Ethernet frames between VMs and
//! maps no guest's RAM.
//!
//! - [`NetConfig`] is the [`DeviceType`] the VMM's [`NetFrontend`]
//!   emulates: device id 1, two queues ([`RECEIVEQ`] = 0, [`TRANSMITQ`] =
//!   1), the port's MAC address (from the system description) in the
//!   configuration space.
//! - [`NetService`] is the `net` PD's half, one per VM port: on a signal
//!   it [`transmit`](NetService::transmit)s the guest's frames into a
//!   [`Burst`] in the PD's own memory, and it
//!   [`receive`](NetService::receive)s a batch of frames into the receive
//!   buffers the guest posted. [`Net`] is the same without the shared page
//!   (the queues given as [`Layout`]s).
//!
//! **Features offered: `VIRTIO_F_VERSION_1`, `VIRTIO_NET_F_MAC`,
//! `VIRTIO_NET_F_MTU` and `VIRTIO_RING_F_EVENT_IDX` only.**
//! - `VIRTIO_NET_F_MAC` (5): the guest takes the MAC the system
//!   description gave its port, the one the switch checks every frame's
//!   source address against.
//! - `VIRTIO_NET_F_MTU` (3): the configuration space's `mtu` is the
//!   network's MTU ([`NetConfig::with_mtu`]; [`Mtu::DEFAULT`], 1500, unless
//!   the system description says otherwise), and the device takes frames
//!   up to `mtu` + 14 bytes each way ([`Net::with_mtu`]), longer ones
//!   dropped as malformed (§5.1.6.2: a driver that negotiated it never
//!   sends longer ones; the spec asks the device never to deliver longer
//!   ones). Linux sets its interface's MTU to it and cannot raise it
//!   further, so a guest never sends frames that would vanish. Between VMs
//!   a large MTU (the `guest_ram_sdf` system's 65,510: a frame and its
//!   header make exactly 64 KiB) is what makes the copies pay: the calls,
//!   exits and interrupts of a frame stay the same while it carries 43
//!   times the data, and nothing about the frame changes meaning, unlike
//!   the offloads below. A guest whose driver does not negotiate it keeps
//!   1500 and posts buffers for that: longer frames sent to it are
//!   dropped ([`Stats::rx_too_short`]), as on any Ethernet segment with
//!   mixed MTUs; TCP's MSS option keeps its connections within it.
//! - `VIRTIO_NET_F_STATUS` (16) is not offered: the link between a VM and
//!   the switch never goes down, and a driver without it assumes the link
//!   is up. The configuration space is `mac[6]` at 0, `status` (u16) at
//!   6, which reads 0, `max_virtqueue_pairs` at 8 (1; without
//!   `VIRTIO_NET_F_MQ` no driver reads it, but `mtu` lies after it) and
//!   `mtu` at 10; nothing lies beyond.
//! - No offloads. `VIRTIO_NET_F_CSUM`/`GUEST_CSUM` would let frames cross
//!   the switch with partial checksums, which is right only if every
//!   receiver negotiated `GUEST_CSUM` (or the switch completed checksums):
//!   not shown, so not offered, and every guest sends whole checksums.
//!   No TSO/UFO (`HOST_TSO4`, ...), so no frame is longer than the MTU
//!   and 14 bytes. No `VIRTIO_NET_F_MRG_RXBUF`, so each frame takes one
//!   receive chain, and a receive chain must hold the 12-byte header and
//!   the frame: [`RX_BUFFER_LEN`] (1526) bytes for any frame at the
//!   default MTU, as the spec asks (§5.1.6.3.1; Linux posts 1530); above
//!   1500 Linux posts chains of a header and page-sized buffers that hold
//!   the MTU ("big packets", 18 buffers at 65,510). No control queue
//!   (`VIRTIO_NET_F_CTRL_VQ`): the switch filters by MAC itself.
//!
//! **The header** ([`NetHdr`], `virtio_net_hdr_v1`, 12 bytes) comes first
//! in every chain. On transmit it is read with the frame and checked: a
//! guest that sets any `flags` bit (`NEEDS_CSUM` asks for the checksum
//! offload it was not offered; the others are receive-only) or a
//! `gso_type` other than `GSO_NONE` gets the frame dropped and counted
//! ([`Stats::tx_offload`]); the other fields mean nothing without those
//! features and are ignored. On receive the device writes a zero header
//! with `num_buffers` = 1.
//!
//! **What a guest gets wrong is dropped and counted, never trusted:** a
//! transmit chain with device-writable buffers, shorter than the header,
//! or whose frame is shorter than 14 or longer than 1514 bytes
//! ([`Stats::tx_malformed`]), or whose buffers the copy service refuses
//! ([`Stats::tx_refused`]), is used with length 0 and its frame goes
//! nowhere. A receive chain with device-readable buffers or none writable
//! is used with length 0 and takes no frame ([`Stats::rx_bad_chains`]).
//! **A receive chain too short for the frame it is next in line for drops
//! that frame** ([`Stats::rx_too_short`]) and is used with length 0, so
//! the driver gets it back; the next frame takes the next chain. What
//! breaks a ring (a descriptor loop, an index jump, a ring outside the
//! window) stops that queue and reports `DEVICE_NEEDS_RESET`, as the
//! other devices do.
//!
//! **A receiver without buffers never stalls a sender:** transmit uses
//! every chain it takes at once (the frames are already in the `net` PD's
//! memory), and [`receive`](Net::receive) writes what the posted chains
//! take and reports the rest not delivered ([`Received::consumed`]), for
//! the switch to count as dropped for lack of a buffer.
//!
//! **Calls to the copy service for a 64-frame burst.** Transmit: 1 (the
//! ring snapshot: [`Snapshot::take`]) + the gather of every chain's header
//! and frame into the [`Burst`] + 1 (the used ring:
//! [`DeviceQueue::publish`]). The gather is one [`GuestDma::readv`]; the
//! copy client splits it at 39 guest buffers
//! (`guest_ram::protocol::MAX_SEGMENTS`) and at its staging area's size.
//! Linux puts the header in front of a linear frame in one buffer, so 64
//! frames are 64 buffers: 2 gather calls (with a staging area of at least
//! the 97,664 bytes the burst can be), 4 calls in all; frames in two
//! buffers each (header apart), 4 gather calls, 6 in all. Receive, the
//! same: 1 + the scatter (one [`GuestDma::writev`]: each frame into one
//! 1530-byte Linux buffer, 64 buffers, 2 calls) + 1 = 4 calls. One frame
//! alone: 3 calls each way. Nothing available: 1 call; no frames to
//! receive: none. One more after a publication whose snapshot found the
//! driver's `VIRTQ_AVAIL_F_NO_INTERRUPT` set: the flag read again before
//! the interrupt is skipped ([`DeviceQueue::wants_interrupt_now`]).
//!
//! **Notifications:** the receive queue asks for none
//! (`VIRTQ_USED_F_NO_NOTIFY` in every publication): the device never
//! waits for receive buffers, it drops a frame that finds none. A batch the copy service refuses (one buffer outside the
//! device's window) is retried chain by chain, the refused ones dropped.
//!
//! Memory: a [`Net`] holds its two queues' indices and counters only. A
//! receive of frames that are not yet in a copy client's shared buffer
//! ([`Net::receive`]) lays each batch's headers and frames out in a
//! staging area the caller gives (up to [`RX_STAGING`], 97,664, bytes
//! for a whole burst in one scatter); the `net` PD's frames are already
//! in place ([`Net::receive_placed`]) and need none. A transmit or
//! receive call keeps a ring snapshot
//! (4.6 KiB), a walked chain (4 KiB), a batch of guest buffers (8 KiB with
//! its bookkeeping) and the used elements (2 KiB) on the stack, and
//! [`DeviceQueue::publish`] 6.5 KiB more: about 26 KiB at the deepest.

use core::fmt;

use guest_ram::{GpaRange, SharedBuffer};
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::device::{should_log, BackendPage, Frontend};
use crate::mmio::DeviceType;
use crate::queue::{self, Layout, QueueError, MAX_CHAIN};
use crate::virtq::{used_elem, Batch, DeviceQueue, Events, GuestDma, Snapshot, Used};

/// The receive queue's index (`receiveq1`).
pub const RECEIVEQ: usize = 0;
/// The transmit queue's index (`transmitq1`).
pub const TRANSMITQ: usize = 1;
/// Bytes of the configuration space: `mac`, `status`,
/// `max_virtqueue_pairs` and `mtu`.
pub const CONFIG_LEN: u64 = 12;
/// Bytes of `struct virtio_net_hdr_v1`.
pub const HDR_LEN: usize = 12;
/// The shortest frame: destination, source and EtherType.
pub const MIN_FRAME: usize = 14;
/// The longest frame at [`Mtu::DEFAULT`]: 14 bytes of header, 1500 of
/// payload, no FCS. At another MTU: [`Mtu::max_frame`].
pub const MAX_FRAME: usize = Mtu::DEFAULT.max_frame();
/// The smallest MTU a device takes (§5.1.4.1: `mtu` is 68 to 65535).
pub const MIN_MTU: u16 = 68;

/// An MTU a virtio-net device may report: [`MIN_MTU`] to 65535 bytes
/// (§5.1.4.1), checked once, by [`new`](Self::new), so that what takes an
/// `Mtu` (a device, the `net_switch` switch, a PD's build-time constant)
/// needs no check and has no error of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtu(u16);

impl Mtu {
    /// Ethernet's 1500 bytes: a device's MTU when it is given none.
    pub const DEFAULT: Mtu = Mtu(1500);

    /// 65,510 bytes: the largest MTU whose frame, with its Ethernet and
    /// virtio-net headers, is 64 KiB. The VM network's MTU in the
    /// `guest_ram_sdf` system unless make's `NET_MTU` says otherwise.
    pub const JUMBO: Mtu = Mtu(65510);

    /// `bytes` as an MTU; `None` below [`MIN_MTU`].
    pub const fn new(bytes: u16) -> Option<Mtu> {
        if bytes < MIN_MTU {
            return None;
        }
        Some(Mtu(bytes))
    }

    /// The MTU in bytes.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The longest frame at this MTU: the MTU and the 14-byte Ethernet
    /// header (no FCS, no virtio-net header).
    pub const fn max_frame(self) -> usize {
        MIN_FRAME + self.0 as usize
    }

    /// Whether a frame of `len` bytes (without the virtio-net header) is
    /// one a device or switch at this MTU takes: [`MIN_FRAME`] to
    /// [`max_frame`](Self::max_frame) bytes.
    pub const fn takes(self, len: usize) -> bool {
        MIN_FRAME <= len && len <= self.max_frame()
    }
}

const _: () = assert!(HDR_LEN + Mtu::JUMBO.max_frame() == 64 << 10);

/// The shortest receive chain that takes any frame at [`Mtu::DEFAULT`]:
/// header and [`MAX_FRAME`] bytes.
pub const RX_BUFFER_LEN: usize = HDR_LEN + MAX_FRAME;
/// The most frames a [`Burst`] holds: one transmit call's worth.
pub const MAX_BURST: usize = 64;
/// Bytes a [`Burst`] needs to hold [`MAX_BURST`] frames of any length at
/// [`Mtu::DEFAULT`], headers included. (At a larger MTU a burst takes the
/// frames that fit, and a transmit leaves the rest for the next call.)
pub const BURST_BYTES: usize = MAX_BURST * RX_BUFFER_LEN;
/// Bytes of a receive staging area ([`Net::receive`]) that takes a
/// batch of up to [`MAX_BURST`] full-length frames with their headers in
/// one scatter.
pub const RX_STAGING: usize = BURST_BYTES;
/// Bytes of a transmitted chain a [`Router`] decides on when it peeks:
/// the header and the Ethernet destination, source and type.
pub const PEEK_LEN: usize = HDR_LEN + MIN_FRAME;
/// The most [`Burst`]s one [`transmit_routed`](NetService::transmit_routed)
/// places frames in (a [`Router`]'s area bits).
pub const MAX_AREAS: usize = 8;

/// Where a port's transmitted frames go, for
/// [`transmit_routed`](NetService::transmit_routed): each frame is
/// gathered straight into the [`Burst`] (area) of each destination it is
/// routed to, so a switch whose areas are memory that the receiver's copy
/// service also reaches moves a frame with two copies in all.
pub trait Router {
    /// Whether each frame's first [`PEEK_LEN`] bytes must be read (one
    /// more call per 39 chains) before it is placed: more than one area is
    /// possible. Without a peek every frame goes to the areas
    /// [`route`](Self::route) gives for `None`, and the caller decides on
    /// the whole frames there.
    fn must_peek(&self) -> bool;
    /// The areas (bit `i` for area `i`, below [`MAX_AREAS`]) that a frame
    /// of `len` bytes goes to; `head` is the chain's first [`PEEK_LEN`]
    /// bytes (header, destination, source, type) if it was peeked at. No
    /// bit: the frame is dropped (the router counts why).
    fn route(&mut self, len: usize, head: Option<&[u8]>) -> u8;
}

/// The [`Router`] of a plain transmit: every frame into area 0.
struct OneArea;

impl Router for OneArea {
    fn must_peek(&self) -> bool {
        false
    }
    fn route(&mut self, _: usize, _: Option<&[u8]>) -> u8 {
        1
    }
}

/// Feature bits of virtio-net (§5.1.3).
pub mod feature {
    /// `VIRTIO_NET_F_CSUM`: the device takes partially checksummed
    /// frames. Not offered.
    pub const CSUM: u64 = 1 << 0;
    /// `VIRTIO_NET_F_MTU`: the configuration space has the MTU. Offered.
    pub const MTU: u64 = 1 << 3;
    /// `VIRTIO_NET_F_MAC`: the configuration space has the MAC. Offered.
    pub const MAC: u64 = 1 << 5;
    /// `VIRTIO_NET_F_MRG_RXBUF`: frames may span receive chains. Not
    /// offered.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// `VIRTIO_NET_F_STATUS`: the configuration space's `status` is
    /// valid. Not offered.
    pub const STATUS: u64 = 1 << 16;
}

/// `virtio_net_hdr_v1` flags bit `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;

/// `struct virtio_net_hdr_v1` (§5.1.6), little-endian.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
    Unaligned,
)]
#[repr(C)]
pub struct NetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers to copy into each segment (GSO).
    pub hdr_len: U16,
    /// Segment size (GSO).
    pub gso_size: U16,
    /// Where checksumming starts (`NEEDS_CSUM`).
    pub csum_start: U16,
    /// Where the checksum goes, from `csum_start` (`NEEDS_CSUM`).
    pub csum_offset: U16,
    /// Receive chains the frame spans (1 without `MRG_RXBUF`).
    pub num_buffers: U16,
}

impl NetHdr {
    /// The header the device writes in front of every received frame:
    /// zeros, `num_buffers` = 1.
    pub fn received() -> Self {
        NetHdr {
            num_buffers: 1.into(),
            ..NetHdr::default()
        }
    }

    /// Whether a transmitted header asks for nothing that was not offered:
    /// no flag and `GSO_NONE`.
    pub fn is_plain(&self) -> bool {
        self.flags == 0 && self.gso_type == GSO_NONE
    }
}

/// Why a frame or a chain was dropped (for log lines; each has its
/// counter in [`Stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A transmit chain with device-writable buffers, shorter than the
    /// header, or with a frame shorter than [`MIN_FRAME`] or longer than
    /// [`MAX_FRAME`].
    Malformed,
    /// A transmit header asking for checksum or segmentation offload.
    Offload,
    /// The copy service refused the chain's buffers.
    Refused,
    /// A receive chain too short for the frame.
    TooShort,
    /// A receive chain with device-readable buffers or none writable.
    BadChain,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Malformed => "malformed transmit chain",
            DropReason::Offload => "offload requested but not offered",
            DropReason::Refused => "buffers refused by the copy service",
            DropReason::TooShort => "receive chain too short for the frame",
            DropReason::BadChain => "receive chain not device-writable",
        })
    }
}

/// virtio-net's device type: the port's MAC and MTU, two queues, no
/// offloads (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The port's MAC address, from the system description.
    pub mac: [u8; 6],
    mtu: Mtu,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self::new([0; 6])
    }
}

impl NetConfig {
    /// A device with MAC address `mac` and an MTU of [`Mtu::DEFAULT`].
    pub const fn new(mac: [u8; 6]) -> Self {
        Self::with_mtu(mac, Mtu::DEFAULT)
    }

    /// A device with MAC address `mac` and an MTU of `mtu`.
    pub const fn with_mtu(mac: [u8; 6], mtu: Mtu) -> Self {
        NetConfig { mac, mtu }
    }

    /// The MTU the device reports.
    pub const fn mtu(&self) -> Mtu {
        self.mtu
    }

    /// The configuration space: `mac` at 0, `status` at 6 (0: no
    /// `VIRTIO_NET_F_STATUS`), `max_virtqueue_pairs` at 8 (1, though
    /// without `VIRTIO_NET_F_MQ` no driver reads it), `mtu` at 10.
    fn bytes(&self) -> [u8; CONFIG_LEN as usize] {
        let [a, b, c, d, e, f] = self.mac;
        let [m0, m1] = self.mtu.get().to_le_bytes();
        [a, b, c, d, e, f, 0, 0, 1, 0, m0, m1]
    }
}

impl DeviceType for NetConfig {
    fn device_id(&self) -> u32 {
        1
    }
    fn features(&self) -> u64 {
        feature::MAC | feature::MTU | crate::mmio::feature::RING_EVENT_IDX
    }
    fn queues(&self) -> usize {
        2
    }
    fn name(&self) -> &'static str {
        "virtio-net"
    }
    fn config_read(&self, offset: u64, width: u8) -> Option<u64> {
        let bytes = self.bytes();
        let start = usize::try_from(offset).ok()?;
        let width = usize::from(width);
        let field = bytes.get(start..start.checked_add(width)?)?;
        let mut word = [0u8; 8];
        word.get_mut(..width)?.copy_from_slice(field);
        Some(u64::from_le_bytes(word))
    }
}

/// The VMM's half of a virtio-net device.
pub type NetFrontend = Frontend<NetConfig>;

impl Frontend<NetConfig> {
    /// A virtio-net device with MAC `mac` whose queue states go to `page`
    /// (at least [`PAGE_LEN`](crate::shared::PAGE_LEN) bytes).
    pub fn new(page: SharedBuffer, mac: [u8; 6]) -> Self {
        Self::with_device(page, NetConfig::new(mac))
    }

    /// [`new`](Self::new) with an MTU of `mtu`.
    pub fn with_mtu(page: SharedBuffer, mac: [u8; 6], mtu: Mtu) -> Self {
        Self::with_device(page, NetConfig::with_mtu(mac, mtu))
    }
}

/// Frames transmitted by one port, in the `net` PD's memory: each
/// gathered with its header into a buffer the caller owns, and handed out
/// as slices without the header. At most [`MAX_BURST`] frames and the
/// buffer's length in bytes (headers included).
pub struct Burst<'a> {
    buf: &'a mut [u8],
    filled: usize,
    /// Each frame's start in `buf` (after its header) and length.
    frames: heapless::Vec<(usize, usize), MAX_BURST>,
}

impl<'a> Burst<'a> {
    /// An empty burst gathering into `buf` ([`BURST_BYTES`] hold any
    /// [`MAX_BURST`] frames).
    pub fn new(buf: &'a mut [u8]) -> Self {
        Burst {
            buf,
            filled: 0,
            frames: heapless::Vec::new(),
        }
    }

    /// Frames in the burst.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the burst has no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i`, without its header.
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let &(start, len) = self.frames.get(i)?;
        self.buf.get(start..start.checked_add(len)?)
    }

    /// The frames, in the order the guest sent them.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.frames.len()).filter_map(|i| self.frame(i))
    }

    /// The frames as slices, for a switch that decides a burst at once.
    pub fn slices(&self) -> heapless::Vec<&[u8], MAX_BURST> {
        let mut slices = heapless::Vec::new();
        for frame in self.frames() {
            // Cannot fail: a burst holds at most `MAX_BURST` frames.
            let _ = slices.push(frame);
        }
        slices
    }

    /// Each frame's start in the burst's buffer (after its header, which
    /// is [`HDR_LEN`] bytes before) and length: what
    /// [`receive_placed`](NetService::receive_placed) takes.
    pub fn spans(&self) -> &[(usize, usize)] {
        &self.frames
    }

    /// Empties the burst, for the next transmit.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.frames.clear();
    }

    /// Bytes left for gathering.
    fn space(&self) -> usize {
        self.buf.len().saturating_sub(self.filled)
    }

    /// Frames left before the burst is full.
    fn room(&self) -> usize {
        MAX_BURST - self.frames.len()
    }
}

/// Counters, for the `net` PD to log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames transmitted into [`Burst`]s.
    pub tx_frames: u64,
    /// Their bytes (headers excluded).
    pub tx_bytes: u64,
    /// Transmit chains used with length 0 because they were malformed
    /// ([`DropReason::Malformed`]).
    pub tx_malformed: u64,
    /// Transmitted frames whose header asked for an offload
    /// ([`DropReason::Offload`]).
    pub tx_offload: u64,
    /// Transmit chains the copy service refused ([`DropReason::Refused`]).
    pub tx_refused: u64,
    /// Transmit chains used (dropped ones included).
    pub tx_chains: u64,
    /// Frames written into receive chains.
    pub rx_frames: u64,
    /// Their bytes (headers excluded).
    pub rx_bytes: u64,
    /// Frames dropped because the next receive chain was too short
    /// ([`DropReason::TooShort`]).
    pub rx_too_short: u64,
    /// Receive chains used with length 0 for their buffers: not
    /// device-writable ([`DropReason::BadChain`]), or refused by the copy
    /// service (their frame dropped and counted here too).
    pub rx_bad_chains: u64,
    /// Frames handed to [`receive`](Net::receive) that are not Ethernet
    /// frames by length (a glue bug; dropped).
    pub rx_malformed: u64,
    /// Receive chains used (dropped ones included).
    pub rx_chains: u64,
    /// Calls to the copy service ([`GuestDma`] operations; the copy
    /// client splits one further past 39 buffers or its staging area).
    pub calls: u64,
    /// Queues stopped as broken (each makes the device need a reset).
    pub broken: u64,
}

/// What a [`transmit`](Net::transmit) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transmitted {
    /// Signal the VMM: chains were used and the driver wants an
    /// interrupt, or the device needs a reset.
    pub signal: bool,
    /// The burst filled up with chains still available: forward the
    /// burst, clear it and call again.
    pub more: bool,
}

/// What a [`receive`](Net::receive) did with a batch of frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Signal the VMM (as [`Transmitted::signal`]).
    pub signal: bool,
    /// Frames written into receive chains.
    pub delivered: usize,
    /// Frames from the start of the batch that found a chain (written,
    /// or dropped for a chain too short or refused) or were malformed:
    /// `frames[consumed..]` found no posted buffer. The switch counts
    /// `frames.len() - delivered` as dropped.
    pub consumed: usize,
}

/// The two queues of one virtio-net device, device side, over given
/// [`Layout`]s: [`NetService`] without the shared page.
pub struct Net {
    queues: Queues,
}

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Net {
    /// Both queues fresh, for frames up to [`MAX_FRAME`] bytes (the
    /// default MTU).
    pub fn new() -> Self {
        Self::with_mtu(Mtu::DEFAULT)
    }

    /// [`new`](Self::new) for frames up to `mtu` + 14 bytes (the device's
    /// [`NetConfig::with_mtu`]).
    pub fn with_mtu(mtu: Mtu) -> Self {
        Net {
            queues: Queues::new(mtu),
        }
    }

    /// The longest frame the device takes, without the header.
    pub fn max_frame(&self) -> usize {
        self.queues.mtu.max_frame()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.queues.stats
    }

    /// Whether a broken ring stopped a queue (until it is restarted).
    pub fn needs_reset(&self) -> bool {
        self.queues.needs_reset()
    }

    /// The driver configured queue `n` anew: start it from index 0.
    pub fn restart(&mut self, n: usize) {
        self.queues.restart(n);
    }

    /// Takes the transmit queue's available chains in order, gathers each
    /// one's header and frame into `burst` and keeps the frames that pass
    /// the checks (the module docs say which); every chain taken is used
    /// in one publication. Chains that do not fit the burst stay available
    /// ([`Transmitted::more`]). An `Err` stopped the queue.
    pub fn transmit<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        burst: &mut Burst<'_>,
    ) -> Result<Transmitted, QueueError> {
        self.queues
            .transmit(layout, dma, &mut OneArea, core::slice::from_mut(burst))
    }

    /// [`transmit`](Self::transmit) into several areas: each frame is
    /// gathered into every area `router` routes it to (peeking at its start
    /// first if the router asks), and into none if it routes it nowhere.
    /// Chains are taken only while they fit every area. At most
    /// [`MAX_AREAS`] areas are used.
    pub fn transmit_routed<M: GuestDma, R: Router>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        router: &mut R,
        areas: &mut [Burst<'_>],
    ) -> Result<Transmitted, QueueError> {
        self.queues.transmit(layout, dma, router, areas)
    }

    /// Writes `frames`, in order, one per available receive chain, each
    /// behind a [`NetHdr::received`] header, laid out in `staging` (the
    /// caller's: part of its copy client's shared buffer, so that the
    /// copy service scatters it in place) and scattered in one call and
    /// one publication per batch: a batch is at most `staging.len()`
    /// bytes ([`RX_STAGING`] takes a whole burst at the default MTU). A
    /// `staging` shorter than one frame of the longest length
    /// ([`max_frame`](Self::max_frame) and the header) cannot take every
    /// frame: nothing is written and nothing consumed. Frames beyond the posted chains
    /// are left: see [`Received`]. An `Err` stopped the queue.
    pub fn receive<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        frames: &[&[u8]],
        staging: &mut [u8],
    ) -> Result<Received, QueueError> {
        if staging.len() < HDR_LEN.saturating_add(self.max_frame()) {
            return Ok(Received::default());
        }
        self.queues.receive(layout, dma, frames, staging)
    }

    /// Receives frames that are already in `area`, each behind
    /// [`HDR_LEN`] bytes of room for its header: `spans` are their starts
    /// and lengths (a [`Burst::spans`]). Writes each frame's
    /// [`NetHdr::received`] header into that room and scatters adjacent
    /// frames together from `area` (in place, for a copy client whose
    /// shared buffer `area` is part of: no copy here at all). A span that
    /// is not an Ethernet frame or leaves `area` is counted malformed.
    pub fn receive_placed<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        area: &mut [u8],
        spans: &[(usize, usize)],
    ) -> Result<Received, QueueError> {
        self.queues.receive_placed(layout, dma, area, spans)
    }
}

/// A fresh receive queue. The device never acts on the receive queue's
/// notifications (a frame for a guest without buffers is dropped then,
/// not held until it posts some), so every publication asks the driver
/// not to send them ([`USED_F_NO_NOTIFY`](crate::virtq::USED_F_NO_NOTIFY)):
/// a guest refilling its receive ring costs no trap and no signal.
fn rx_queue() -> DeviceQueue {
    let mut queue = DeviceQueue::new();
    queue.set_no_notify(true);
    queue
}

/// [`Net`] without its receive staging area.
struct Queues {
    rx: DeviceQueue,
    tx: DeviceQueue,
    rx_broken: bool,
    tx_broken: bool,
    stats: Stats,
    drops: u32,
    /// The device's MTU: the frames it takes either way.
    mtu: Mtu,
}

impl Queues {
    fn new(mtu: Mtu) -> Self {
        Queues {
            rx: rx_queue(),
            tx: DeviceQueue::new(),
            rx_broken: false,
            tx_broken: false,
            stats: Stats::default(),
            drops: 0,
            mtu,
        }
    }

    fn needs_reset(&self) -> bool {
        self.rx_broken || self.tx_broken
    }

    fn restart(&mut self, n: usize) {
        match n {
            RECEIVEQ => (self.rx, self.rx_broken) = (rx_queue(), false),
            TRANSMITQ => (self.tx, self.tx_broken) = (DeviceQueue::new(), false),
            _ => {}
        }
    }

    /// Counts and (rate-limited) logs a drop.
    fn dropped(&mut self, why: DropReason) {
        let counter = match why {
            DropReason::Malformed => &mut self.stats.tx_malformed,
            DropReason::Offload => &mut self.stats.tx_offload,
            DropReason::Refused => &mut self.stats.tx_refused,
            DropReason::TooShort => &mut self.stats.rx_too_short,
            DropReason::BadChain => &mut self.stats.rx_bad_chains,
        };
        *counter = counter.saturating_add(1);
        self.drops = self.drops.saturating_add(1);
        if should_log(self.drops) {
            log::warn!("virtio-net: dropped: {why} (#{})", self.drops);
        }
    }

    fn transmit<M: GuestDma, R: Router>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        router: &mut R,
        areas: &mut [Burst<'_>],
    ) -> Result<Transmitted, QueueError> {
        if self.tx_broken {
            return Ok(Transmitted::default());
        }
        let result = self.transmit_inner(layout, dma, router, areas);
        if result.is_err() {
            self.tx_broken = true;
            self.stats.broken += 1;
        }
        result
    }

    fn transmit_inner<M: GuestDma, R: Router>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        router: &mut R,
        areas: &mut [Burst<'_>],
    ) -> Result<Transmitted, QueueError> {
        self.stats.calls += 1;
        let snapshot = Snapshot::take(layout, &self.tx, dma)?;
        let mut used = Used::new();
        // The chains taken that carry a frame: (index in the snapshot,
        // length with header, areas).
        let mut taken: heapless::Vec<(u16, usize, u8), MAX_BURST> = heapless::Vec::new();
        // Every area holds `MAX_BURST` frames of any length (or is
        // smaller: then the frames it cannot hold wait for the next call).
        let room = areas.iter().map(Burst::room).min().unwrap_or(0);
        let space = areas.iter().map(Burst::space).min().unwrap_or(0);
        // A frame longer than an empty area would wait for ever (the PD
        // calling again and again): dropped as malformed instead. (A glue
        // whose areas hold a frame at its MTU never sees it.)
        let capacity = areas.iter().map(|a| a.buf.len()).min().unwrap_or(0);
        let mut planned = 0usize;
        let mut more = false;
        for k in 0..snapshot.pending() {
            let (head, chain) = snapshot.chain(k)?;
            let len = usize::try_from(chain.readable_len()).unwrap_or(usize::MAX);
            let frame = len.saturating_sub(HDR_LEN);
            if !chain.writable().is_empty()
                || len < HDR_LEN
                || !self.mtu.takes(frame)
                || len > capacity
            {
                self.dropped(DropReason::Malformed);
                // Cannot fail: at most `pending <= MAX_CHAIN` pushes.
                let _ = used.push(used_elem(head, 0));
                continue;
            }
            // Taken only if it fits every area (it may go to any).
            if taken.len() >= room || planned.saturating_add(len) > space || taken.is_full() {
                more = true;
                break;
            }
            planned = planned.saturating_add(len);
            let _ = taken.push((k, len, 0));
            let _ = used.push(used_elem(head, 0));
        }
        if router.must_peek() {
            // Counts each frame that passes as transmitted.
            self.peek(&snapshot, dma, router, &mut taken)?;
        } else {
            for (_, len, to) in taken.iter_mut() {
                *to = router.route(len.saturating_sub(HDR_LEN), None);
            }
        }
        // Whether each taken frame has been counted (at its peek, or in an
        // area gathered before).
        let peeked = router.must_peek();
        let mut counted: heapless::Vec<bool, MAX_BURST> = heapless::Vec::new();
        for _ in 0..taken.len() {
            let _ = counted.push(peeked);
        }
        for (i, area) in areas.iter_mut().enumerate().take(MAX_AREAS) {
            let bit = 1u8.checked_shl(i as u32).unwrap_or(0);
            let mut batch = Batch::new();
            for (n, &(k, len, to)) in taken.iter().enumerate() {
                if to & bit == 0 {
                    continue;
                }
                let (_, chain) = snapshot.chain(k)?;
                if !batch.add(chain.readable(), len, n) {
                    self.gather(&mut batch, dma, area, &mut counted, peeked);
                    // Fits now: an empty batch takes any one chain.
                    let _ = batch.add(chain.readable(), len, n);
                }
            }
            self.gather(&mut batch, dma, area, &mut counted, peeked);
        }
        if !used.is_empty() {
            self.stats.calls += 1;
            self.tx.publish(layout, &[], &used, dma)?;
            self.stats.tx_chains += used.len() as u64;
        }
        let events = if used.is_empty() {
            Events::default()
        } else {
            Self::interrupt(&mut self.tx, &snapshot, layout, dma, &mut self.stats)
        };
        Ok(Transmitted {
            signal: events.interrupt,
            more: more || events.more,
        })
    }

    /// Whether to interrupt the driver after publishing used chains, and
    /// whether chains arrived since the snapshot that the driver need not
    /// have notified. With `VIRTIO_RING_F_EVENT_IDX`: the event indices
    /// (one call, [`DeviceQueue::events`]). Without: if the snapshot found
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT` set, the flag read again now (one
    /// call; see [`DeviceQueue::wants_interrupt_now`]: the guest may have
    /// cleared it since, and wait for this interrupt); nothing more (the
    /// driver notifies every chain it adds).
    fn interrupt<M: GuestDma>(
        queue: &mut DeviceQueue,
        snapshot: &Snapshot,
        layout: &Layout,
        dma: &mut M,
        stats: &mut Stats,
    ) -> Events {
        if layout.event_idx() {
            stats.calls += 1;
            return queue.events(layout, dma);
        }
        let interrupt = snapshot.wants_interrupt() || {
            stats.calls += 1;
            queue.wants_interrupt_now(layout, dma)
        };
        Events {
            interrupt,
            more: false,
        }
    }

    /// Reads the first [`PEEK_LEN`] bytes of every chain taken in one
    /// gather (chain by chain if refused, those refused dropped) and
    /// routes each; a header asking for an offload drops its frame here.
    fn peek<M: GuestDma, R: Router>(
        &mut self,
        snapshot: &Snapshot,
        dma: &mut M,
        router: &mut R,
        taken: &mut heapless::Vec<(u16, usize, u8), MAX_BURST>,
    ) -> Result<(), QueueError> {
        let mut heads = [0u8; MAX_BURST * PEEK_LEN];
        let mut segments: heapless::Vec<GpaRange, MAX_CHAIN> = heapless::Vec::new();
        let mut whole = true;
        for &(k, _, _) in taken.iter() {
            let (_, chain) = snapshot.chain(k)?;
            let mut parts: heapless::Vec<GpaRange, MAX_CHAIN> = heapless::Vec::new();
            // Cannot fail: a taken chain holds a header and a frame of at
            // least `MIN_FRAME` bytes.
            let _ = queue::sub_ranges(chain.readable(), 0, PEEK_LEN as u64, &mut parts);
            for p in &parts {
                whole &= segments.push(*p).is_ok();
            }
        }
        let bytes = taken.len().saturating_mul(PEEK_LEN);
        self.stats.calls += 1;
        let whole = whole
            && heads
                .get_mut(..bytes)
                .is_some_and(|dst| dma.readv(&segments, dst).is_ok());
        for (n, (k, len, to)) in taken.iter_mut().enumerate() {
            let at = n.saturating_mul(PEEK_LEN);
            let Some(head) = heads.get_mut(at..).and_then(|h| h.get_mut(..PEEK_LEN)) else {
                continue;
            };
            let ok = whole || {
                let (_, chain) = snapshot.chain(*k)?;
                segments.clear();
                let _ = queue::sub_ranges(chain.readable(), 0, PEEK_LEN as u64, &mut segments);
                self.stats.calls += 1;
                dma.readv(&segments, head).is_ok()
            };
            if !ok {
                self.dropped(DropReason::Refused);
                *to = 0;
            } else if !NetHdr::read_from_prefix(head).is_ok_and(|(h, _)| h.is_plain()) {
                self.dropped(DropReason::Offload);
                *to = 0;
            } else {
                // A frame the guest sent, wherever the router sends it
                // (nowhere, for a frame the switch drops).
                let frame = len.saturating_sub(HDR_LEN);
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame as u64;
                *to = router.route(frame, Some(head));
            }
        }
        Ok(())
    }

    /// Gathers the batch into `area` in one call (chain by chain if
    /// refused, dropping those refused) and keeps each frame whose header
    /// is plain. `counted[n]` says whether taken frame `n` (a batch
    /// chain's `used`) has been counted, at its peek or in another area
    /// already; a frame refused here after a successful peek counts as
    /// refused once per area.
    fn gather<M: GuestDma>(
        &mut self,
        batch: &mut Batch,
        dma: &mut M,
        area: &mut Burst<'_>,
        counted: &mut [bool],
        peeked: bool,
    ) {
        if batch.chains.is_empty() {
            return;
        }
        let start = area.filled;
        self.stats.calls += 1;
        let whole = start
            .checked_add(batch.bytes)
            .and_then(|end| area.buf.get_mut(start..end))
            .is_some_and(|dst| dma.readv(&batch.segments, dst).is_ok());
        let mut at = start;
        for (segments, chain) in batch.each() {
            let end = at.saturating_add(chain.len);
            let first = counted
                .get_mut(chain.used)
                .is_some_and(|c| !core::mem::replace(c, true));
            let ok = whole || {
                self.stats.calls += 1;
                area.buf
                    .get_mut(at..end)
                    .is_some_and(|dst| dma.readv(segments, dst).is_ok())
            };
            if !ok {
                if first || peeked {
                    self.dropped(DropReason::Refused);
                }
            } else if let Some(bytes) = area.buf.get(at..end) {
                let plain = NetHdr::read_from_prefix(bytes).is_ok_and(|(h, _)| h.is_plain());
                let frame = chain.len.saturating_sub(HDR_LEN);
                if plain
                    && area
                        .frames
                        .push((at.saturating_add(HDR_LEN), frame))
                        .is_ok()
                {
                    if first {
                        self.stats.tx_frames += 1;
                        self.stats.tx_bytes += frame as u64;
                    }
                } else if first {
                    self.dropped(DropReason::Offload);
                }
            }
            at = end;
        }
        area.filled = at;
        batch.clear();
    }

    /// Stages `frames` in `staging` (each behind room for its header) as
    /// far as they fit, and receives them from there
    /// ([`receive_placed`](Self::receive_placed)); again with the rest
    /// while every frame so far found a chain.
    fn receive<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        frames: &[&[u8]],
        staging: &mut [u8],
    ) -> Result<Received, QueueError> {
        let mut done = Received::default();
        let mut rest = frames;
        while !rest.is_empty() {
            let mut spans: heapless::Vec<(usize, usize), MAX_BURST> = heapless::Vec::new();
            let mut at = 0usize;
            for frame in rest {
                let end = at.saturating_add(HDR_LEN).saturating_add(frame.len());
                let span = if !self.mtu.takes(frame.len()) {
                    // Malformed: counted as such, never staged.
                    (0, frame.len())
                } else if let Some(dst) = staging
                    .get_mut(at.saturating_add(HDR_LEN)..)
                    .and_then(|d| d.get_mut(..frame.len()))
                {
                    dst.copy_from_slice(frame);
                    let span = (at.saturating_add(HDR_LEN), frame.len());
                    at = end;
                    span
                } else {
                    break;
                };
                if spans.push(span).is_err() {
                    break;
                }
            }
            if spans.is_empty() {
                break; // Not even one frame fits the staging area.
            }
            let part = self.receive_placed(layout, dma, staging, &spans)?;
            done.signal |= part.signal;
            done.delivered += part.delivered;
            done.consumed += part.consumed;
            if part.consumed < spans.len() {
                break; // No chain left for the rest.
            }
            rest = rest.get(spans.len()..).unwrap_or(&[]);
        }
        Ok(done)
    }

    fn receive_placed<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        area: &mut [u8],
        spans: &[(usize, usize)],
    ) -> Result<Received, QueueError> {
        if self.rx_broken || spans.is_empty() {
            return Ok(Received::default());
        }
        let result = self.receive_inner(layout, dma, area, spans);
        if result.is_err() {
            self.rx_broken = true;
            self.stats.broken += 1;
        }
        result
    }

    fn receive_inner<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        area: &mut [u8],
        spans: &[(usize, usize)],
    ) -> Result<Received, QueueError> {
        self.stats.calls += 1;
        let snapshot = Snapshot::take(layout, &self.rx, dma)?;
        let mut used = Used::new();
        let mut batch = Batch::new();
        // Where the batch starts in `area`: a batch is one run of
        // adjacent frames, scattered from the area in place.
        let mut run = 0usize;
        let mut k = 0;
        let mut consumed = 0;
        let mut delivered = 0;
        let header = NetHdr::received();
        'frames: for &(start, len) in spans {
            let at = start.checked_sub(HDR_LEN);
            let fits = at
                .and_then(|at| at.checked_add(HDR_LEN)?.checked_add(len))
                .is_some_and(|end| end <= area.len());
            let (Some(at), true, true) = (at, fits, self.mtu.takes(len)) else {
                self.stats.rx_malformed += 1;
                consumed += 1;
                continue;
            };
            // The next chain that can take a frame at all.
            let (head, chain) = loop {
                if k >= snapshot.pending() {
                    break 'frames;
                }
                let (head, chain) = snapshot.chain(k)?;
                k += 1;
                if chain.readable().is_empty() && !chain.writable().is_empty() {
                    break (head, chain);
                }
                self.dropped(DropReason::BadChain);
                let _ = used.push(used_elem(head, 0));
            };
            consumed += 1;
            let need = HDR_LEN.saturating_add(len);
            let mut parts: heapless::Vec<GpaRange, MAX_CHAIN> = heapless::Vec::new();
            if chain.writable_len() < need as u64
                || queue::sub_ranges(chain.writable(), 0, need as u64, &mut parts).is_err()
            {
                self.dropped(DropReason::TooShort);
                let _ = used.push(used_elem(head, 0));
                continue;
            }
            let added = !batch.chains.is_empty()
                && run.saturating_add(batch.bytes) == at
                && batch.add(&parts, need, used.len());
            if !added {
                let src = area.get(run..).unwrap_or(&[]);
                delivered += self.scatter(&mut batch, &mut used, dma, src);
                run = at;
                // Fits: an empty batch takes any one chain.
                let _ = batch.add(&parts, need, used.len());
            }
            if let Some(h) = area.get_mut(at..).and_then(|h| h.get_mut(..HDR_LEN)) {
                h.copy_from_slice(header.as_bytes());
            }
            let _ = used.push(used_elem(head, need));
        }
        let src = area.get(run..).unwrap_or(&[]);
        delivered += self.scatter(&mut batch, &mut used, dma, src);
        if !used.is_empty() {
            self.stats.calls += 1;
            self.rx.publish(layout, &[], &used, dma)?;
            self.stats.rx_chains += used.len() as u64;
        }
        // The receive queue's `more` means nothing: the device never
        // waits for receive buffers.
        let signal = !used.is_empty()
            && Self::interrupt(&mut self.rx, &snapshot, layout, dma, &mut self.stats).interrupt;
        Ok(Received {
            signal,
            delivered,
            consumed,
        })
    }

    /// Scatters the staged batch in one call; if it is refused, chain by
    /// chain, those refused used with length 0. Returns the frames
    /// written.
    fn scatter<M: GuestDma>(
        &mut self,
        batch: &mut Batch,
        used: &mut Used,
        dma: &mut M,
        staging: &[u8],
    ) -> usize {
        if batch.chains.is_empty() {
            return 0;
        }
        self.stats.calls += 1;
        let whole = staging
            .get(..batch.bytes)
            .is_some_and(|src| dma.writev(&batch.segments, src).is_ok());
        let mut at: usize = 0;
        let mut written = 0;
        for (segments, chain) in batch.each() {
            let end = at.saturating_add(chain.len);
            let ok = whole || {
                self.stats.calls += 1;
                staging
                    .get(at..end)
                    .is_some_and(|src| dma.writev(segments, src).is_ok())
            };
            if ok {
                written += 1;
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += chain.len.saturating_sub(HDR_LEN) as u64;
            } else {
                self.dropped(DropReason::BadChain);
                if let Some(elem) = used.get_mut(chain.used) {
                    elem.len = 0.into();
                }
            }
            at = end;
        }
        batch.clear();
        written
    }
}

/// Where a [`NetService`] receive takes its frames from.
enum Source<'a, 'f> {
    /// To be staged in the caller's area.
    Staged(&'a [&'f [u8]], &'a mut [u8]),
    /// Already in the caller's area, at these spans.
    Placed(&'a mut [u8], &'a [(usize, usize)]),
}

impl Source<'_, '_> {
    fn is_empty(&self) -> bool {
        match self {
            Source::Staged(frames, _) => frames.is_empty(),
            Source::Placed(_, spans) => spans.is_empty(),
        }
    }
}

/// The `net` PD's half of one VM port's virtio-net: the queues published
/// in the shared page, served through a [`GuestDma`] (that VM's VMM's
/// copy service).
pub struct NetService {
    page: BackendPage,
    net: Net,
}

impl NetService {
    /// A service for the queues published in `page`, at the default MTU.
    pub fn new(page: SharedBuffer) -> Self {
        Self::with_mtu(page, Mtu::DEFAULT)
    }

    /// [`new`](Self::new) at an MTU of `mtu` (the device's
    /// [`NetConfig::with_mtu`]).
    pub fn with_mtu(page: SharedBuffer, mtu: Mtu) -> Self {
        NetService {
            page: BackendPage::new(page),
            net: Net::with_mtu(mtu),
        }
    }

    /// Counters over the service's life.
    pub fn stats(&self) -> Stats {
        self.net.stats()
    }

    /// Queue `n`'s layout as published now ([`BackendPage::layout`]),
    /// every queue configured anew restarted.
    fn sync(&mut self, n: usize) -> Result<Option<Layout>, QueueError> {
        let net = &mut self.net;
        self.page.layout(n, |q| net.restart(q))
    }

    /// The VMM signalled (the guest notified a queue), or the `net` PD
    /// forwarded a full burst and calls again: gathers the transmit
    /// queue's frames into `burst` (see [`Net::transmit`]). The guest may
    /// have posted receive buffers too: a PD holding frames for this port
    /// calls [`receive`](Self::receive) on a signal as well.
    pub fn transmit<M: GuestDma>(&mut self, dma: &mut M, burst: &mut Burst<'_>) -> Transmitted {
        self.transmit_routed(dma, &mut OneArea, core::slice::from_mut(burst))
    }

    /// [`transmit`](Self::transmit) into the areas `router` routes each
    /// frame to (see [`Net::transmit_routed`]).
    pub fn transmit_routed<M: GuestDma, R: Router>(
        &mut self,
        dma: &mut M,
        router: &mut R,
        areas: &mut [Burst<'_>],
    ) -> Transmitted {
        match self.sync(TRANSMITQ) {
            Ok(None) => Transmitted::default(),
            Ok(Some(layout)) => match self.net.transmit_routed(&layout, dma, router, areas) {
                Ok(done) => Transmitted {
                    signal: done.signal && self.report(),
                    more: done.more,
                },
                Err(e) => {
                    log::warn!("virtio-net: transmit queue error, device needs reset: {e}");
                    Transmitted {
                        signal: self.report(),
                        more: false,
                    }
                }
            },
            Err(e) => {
                log::warn!("virtio-net: published transmit queue is invalid: {e}");
                Transmitted {
                    signal: self.report_broken(),
                    more: false,
                }
            }
        }
    }

    /// Writes `frames` into the receive queue's posted chains, staged in
    /// `staging` (see [`Net::receive`]); frames past
    /// [`Received::consumed`] found no buffer.
    pub fn receive<M: GuestDma>(
        &mut self,
        dma: &mut M,
        frames: &[&[u8]],
        staging: &mut [u8],
    ) -> Received {
        self.receive_from(dma, Source::Staged(frames, staging))
    }

    /// Receives the frames at `spans` of `area` (see
    /// [`Net::receive_placed`]).
    pub fn receive_placed<M: GuestDma>(
        &mut self,
        dma: &mut M,
        area: &mut [u8],
        spans: &[(usize, usize)],
    ) -> Received {
        self.receive_from(dma, Source::Placed(area, spans))
    }

    fn receive_from<M: GuestDma>(&mut self, dma: &mut M, source: Source<'_, '_>) -> Received {
        if source.is_empty() {
            return Received::default();
        }
        match self.sync(RECEIVEQ) {
            Ok(None) => Received::default(),
            Ok(Some(layout)) => {
                let result = match source {
                    Source::Staged(frames, staging) => {
                        self.net.receive(&layout, dma, frames, staging)
                    }
                    Source::Placed(area, spans) => {
                        self.net.receive_placed(&layout, dma, area, spans)
                    }
                };
                match result {
                    Ok(done) => Received {
                        signal: done.signal && self.report(),
                        ..done
                    },
                    Err(e) => {
                        log::warn!("virtio-net: receive queue error, device needs reset: {e}");
                        Received {
                            signal: self.report(),
                            ..Received::default()
                        }
                    }
                }
            }
            Err(e) => {
                log::warn!("virtio-net: published receive queue is invalid: {e}");
                Received {
                    signal: self.report_broken(),
                    ..Received::default()
                }
            }
        }
    }

    fn report(&mut self) -> bool {
        let stats = self.net.stats();
        self.page.report(
            self.net.needs_reset(),
            stats.rx_chains + stats.tx_chains,
            0,
            0,
        )
    }

    fn report_broken(&mut self) -> bool {
        let stats = self.net.stats();
        self.page
            .report(true, stats.rx_chains + stats.tx_chains, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{flags, Desc};
    use crate::virtq::testing::{Driver, Flat, AVAIL, DESC};
    use crate::virtq::AVAIL_F_NO_INTERRUPT;
    use std::vec;
    use std::vec::Vec;

    const DATA: u64 = 0x4000;

    fn frame(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| tag ^ i as u8).collect()
    }

    /// A transmitted chain's bytes: a plain header and `frame`.
    fn with_header(frame: &[u8]) -> Vec<u8> {
        let mut bytes = NetHdr::default().as_bytes().to_vec();
        bytes.extend_from_slice(frame);
        bytes
    }

    #[test]
    fn config_space_is_the_mac_a_zero_status_and_the_mtu() {
        let c = NetConfig::new([2, 0, 0, 0, 0, 7]);
        assert_eq!(
            (c.device_id(), c.features(), c.queues()),
            (1, 1 << 3 | 1 << 5 | 1 << 29, 2)
        );
        assert_eq!(c.config_read(0, 1), Some(2));
        assert_eq!(c.config_read(5, 1), Some(7));
        assert_eq!(c.config_read(4, 2), Some(0x0700));
        assert_eq!(c.config_read(0, 8), Some(0x0700_0000_0002));
        assert_eq!(c.config_read(6, 2), Some(0));
        assert_eq!(c.config_read(8, 2), Some(1));
        assert_eq!(c.config_read(10, 2), Some(1500));
        assert_eq!(c.config_read(11, 2), None);
        assert_eq!(c.config_read(12, 1), None);
        assert_eq!(c.config_read(u64::MAX, 1), None);
        let jumbo = NetConfig::with_mtu([2, 0, 0, 0, 0, 7], Mtu::JUMBO);
        assert_eq!(jumbo.config_read(10, 2), Some(65510));
        assert_eq!(jumbo.config_read(0, 6), c.config_read(0, 6));
        assert_eq!(Mtu::new(67), None);
        assert_eq!(Mtu::new(68).unwrap().get(), 68);
        assert_eq!(Mtu::new(u16::MAX).unwrap().max_frame(), 65549);
        assert_eq!(Mtu::DEFAULT.max_frame(), MAX_FRAME);
        assert!(Mtu::DEFAULT.takes(MIN_FRAME) && Mtu::DEFAULT.takes(MAX_FRAME));
        assert!(!Mtu::DEFAULT.takes(MIN_FRAME - 1) && !Mtu::DEFAULT.takes(MAX_FRAME + 1));
        assert_eq!(
            NetHdr::received().as_bytes(),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        );
        assert_eq!(core::mem::size_of::<NetHdr>(), HDR_LEN);
    }

    #[test]
    fn transmit_gathers_a_burst_in_three_calls() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        let (a, b) = (frame(60, 1), frame(1514, 2));
        mem.put(DATA, &with_header(&a));
        mem.put(DATA + 0x100, NetHdr::default().as_bytes());
        mem.put(DATA + 0x200, &b[..1000]);
        mem.put(DATA + 0x800, &b[1000..]);
        tx.post(&mut mem, &[(DATA, 72, false)]);
        tx.post(
            &mut mem,
            &[
                (DATA + 0x100, 12, false),
                (DATA + 0x200, 1000, false),
                (DATA + 0x800, 514, false),
            ],
        );
        let mut net = Net::new();
        let mut buf = vec![0u8; BURST_BYTES];
        let mut burst = Burst::new(&mut buf);
        let done = net.transmit(&tx.layout, &mut mem, &mut burst).unwrap();
        assert_eq!(
            done,
            Transmitted {
                signal: true,
                more: false
            }
        );
        assert_eq!(mem.calls, 3);
        assert_eq!(burst.len(), 2);
        assert_eq!(burst.frame(0), Some(&a[..]));
        assert_eq!(burst.frame(1), Some(&b[..]));
        assert_eq!(burst.slices().as_slice(), [&a[..], &b[..]]);
        assert_eq!(tx.used(&mem, 0), [(0, 0), (1, 0)]);
        let stats = net.stats();
        assert_eq!(
            (stats.tx_frames, stats.tx_bytes, stats.tx_chains),
            (2, 1574, 2)
        );
        // Nothing new: one call, no signal.
        mem.calls = 0;
        burst.clear();
        let done = net.transmit(&tx.layout, &mut mem, &mut burst).unwrap();
        assert_eq!(
            (done, mem.calls, burst.len()),
            (Transmitted::default(), 1, 0)
        );
    }

    #[test]
    fn bad_transmit_chains_are_dropped_and_counted() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        mem.put(DATA, &with_header(&frame(1600, 3)));
        let mut offload = NetHdr {
            flags: HDR_F_NEEDS_CSUM,
            ..NetHdr::default()
        };
        mem.put(DATA + 0x1000, offload.as_bytes());
        offload = NetHdr {
            gso_type: 1,
            ..NetHdr::default()
        };
        mem.put(DATA + 0x1100, offload.as_bytes());
        tx.post(&mut mem, &[(DATA, 72, true)]); // device-writable
        tx.post(&mut mem, &[(DATA, 11, false)]); // shorter than the header
        tx.post(&mut mem, &[(DATA, 12 + 13, false)]); // runt
        tx.post(&mut mem, &[(DATA, 12 + 1515, false)]); // too long
        tx.post(&mut mem, &[(DATA + 0x1000, 72, false)]); // NEEDS_CSUM
        tx.post(&mut mem, &[(DATA + 0x1100, 72, false)]); // GSO
        tx.post(&mut mem, &[(0xfff0, 72, false)]); // refused
        tx.post(&mut mem, &[(DATA, 12 + 14, false)]); // the one good frame
        let mut net = Net::new();
        let mut buf = vec![0u8; BURST_BYTES];
        let mut burst = Burst::new(&mut buf);
        net.transmit(&tx.layout, &mut mem, &mut burst).unwrap();
        assert_eq!(burst.len(), 1);
        assert_eq!(burst.frame(0), Some(&frame(1600, 3)[..14]));
        assert_eq!(tx.used(&mem, 0).len(), 8);
        assert!(tx.used(&mem, 0).iter().all(|&(_, len)| len == 0));
        let s = net.stats();
        assert_eq!((s.tx_malformed, s.tx_offload, s.tx_refused), (4, 2, 1));
        assert_eq!((s.tx_frames, s.tx_chains), (1, 8));
    }

    #[test]
    fn a_full_burst_leaves_the_rest_available() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        for i in 0..3u64 {
            mem.put(DATA + 0x100 * i, &with_header(&frame(60, i as u8)));
            tx.post(&mut mem, &[(DATA + 0x100 * i, 72, false)]);
        }
        let mut net = Net::new();
        let mut buf = vec![0u8; 2 * 72 + 10];
        let mut burst = Burst::new(&mut buf);
        let done = net.transmit(&tx.layout, &mut mem, &mut burst).unwrap();
        assert!(done.more && done.signal);
        assert_eq!(burst.len(), 2);
        assert_eq!(tx.used(&mem, 0).len(), 2);
        burst.clear();
        let done = net.transmit(&tx.layout, &mut mem, &mut burst).unwrap();
        assert!(!done.more);
        assert_eq!(burst.frames().collect::<Vec<_>>(), [&frame(60, 2)[..]]);
        assert_eq!(tx.used(&mem, 0).len(), 3);
    }

    #[test]
    fn receive_stages_in_the_callers_area_in_batches_it_holds() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        for k in 0..3 {
            rx.post(&mut mem, &[(DATA + 0x800 * k, 1526, true)]);
        }
        let frames: Vec<Vec<u8>> = (0..3).map(|k| frame(1000, k as u8)).collect();
        let slices: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
        // Room for two frames with their headers: two rounds, each a ring
        // snapshot, a scatter and a used-ring publication.
        let mut staging = vec![0u8; 2 * 1012 + 100];
        let mut net = Net::new();
        let done = net
            .receive(&rx.layout, &mut mem, &slices, &mut staging)
            .unwrap();
        assert_eq!((done.delivered, done.consumed), (3, 3));
        assert_eq!(mem.calls, 6);
        for (k, f) in frames.iter().enumerate() {
            let at = (DATA + 0x800 * k as u64) as usize;
            assert_eq!(&mem.mem[at..][..12], NetHdr::received().as_bytes());
            assert_eq!(&mem.mem[at + 12..][..1000], &f[..]);
        }
        // The last batch is still in the caller's area.
        assert_eq!(&staging[12..1012], &frames[2][..]);
        // Too small for one frame: nothing written, nothing consumed, no
        // call made.
        rx.post(&mut mem, &[(DATA + 0x2000, 1526, true)]);
        let calls = mem.calls;
        let done = net
            .receive(&rx.layout, &mut mem, &slices[..1], &mut [0u8; 100])
            .unwrap();
        assert_eq!((done.delivered, done.consumed), (0, 0));
        assert_eq!(mem.calls, calls);
    }

    #[test]
    fn receive_writes_one_frame_per_chain_behind_a_header() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        rx.post(&mut mem, &[(DATA, 1526, true)]);
        rx.post(
            &mut mem,
            &[(DATA + 0x800, 6, true), (DATA + 0x900, 100, true)],
        );
        let (a, b, c) = (frame(1514, 4), frame(60, 5), frame(60, 6));
        let mut net = Net::new();
        let done = net
            .receive(
                &rx.layout,
                &mut mem,
                &[&a[..], &b[..], &c[..]],
                &mut vec![0u8; RX_STAGING],
            )
            .unwrap();
        assert_eq!(
            done,
            Received {
                signal: true,
                delivered: 2,
                consumed: 2
            }
        );
        assert_eq!(mem.calls, 3);
        assert_eq!(
            &mem.mem[DATA as usize..][..12],
            NetHdr::received().as_bytes()
        );
        assert_eq!(&mem.mem[DATA as usize + 12..][..1514], &a[..]);
        assert_eq!(
            &mem.mem[DATA as usize + 0x800..][..6],
            &NetHdr::received().as_bytes()[..6]
        );
        assert_eq!(
            &mem.mem[DATA as usize + 0x900..][..6],
            &NetHdr::received().as_bytes()[6..]
        );
        assert_eq!(&mem.mem[DATA as usize + 0x906..][..60], &b[..]);
        assert_eq!(rx.used(&mem, 0), [(0, 1526), (1, 72)]);
        // No buffer left: nothing consumed, one call, no signal.
        mem.calls = 0;
        let done = net
            .receive(&rx.layout, &mut mem, &[&c[..]], &mut vec![0u8; RX_STAGING])
            .unwrap();
        assert_eq!((done, mem.calls), (Received::default(), 1));
        // No frames: no call at all.
        assert_eq!(
            net.receive(&rx.layout, &mut mem, &[], &mut vec![0u8; RX_STAGING]),
            Ok(Received::default())
        );
        assert_eq!(mem.calls, 1);
        let s = net.stats();
        assert_eq!((s.rx_frames, s.rx_bytes, s.rx_chains), (2, 1574, 2));
    }

    #[test]
    fn short_and_bad_receive_chains() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        rx.post(&mut mem, &[(DATA, 100, false), (DATA + 0x100, 100, true)]); // readable
        rx.post(&mut mem, &[(DATA + 0x200, 71, true)]); // one byte short
        rx.post(&mut mem, &[(0xfff0, 72, true)]); // refused
        rx.post(&mut mem, &[(DATA + 0x300, 72, true)]);
        let (a, b, c, d) = (frame(60, 7), frame(60, 8), frame(60, 9), frame(60, 10));
        let runt = frame(13, 0);
        let mut net = Net::new();
        let frames = [&a[..], &b[..], &runt[..], &c[..], &d[..]];
        let done = net
            .receive(&rx.layout, &mut mem, &frames, &mut vec![0u8; RX_STAGING])
            .unwrap();
        // a: too short a chain; b: refused; the runt: malformed; c: written.
        assert_eq!((done.delivered, done.consumed), (1, 4));
        assert_eq!(&mem.mem[DATA as usize + 0x300 + 12..][..60], &c[..]);
        assert_eq!(rx.used(&mem, 0), [(0, 0), (2, 0), (3, 0), (4, 72)]);
        let s = net.stats();
        assert_eq!((s.rx_too_short, s.rx_bad_chains, s.rx_malformed), (1, 2, 1));
    }

    #[test]
    fn no_interrupt_is_honoured_and_a_loop_needs_a_reset() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        mem.put(AVAIL, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
        rx.post(&mut mem, &[(DATA, 1526, true)]);
        let mut net = Net::new();
        let a = frame(60, 1);
        let done = net
            .receive(&rx.layout, &mut mem, &[&a[..]], &mut vec![0u8; RX_STAGING])
            .unwrap();
        assert!(!done.signal && done.delivered == 1);
        // Descriptor 1 -> 2 -> 1 ...
        mem.put(
            DESC + 16,
            Desc::new(DATA, 1, flags::NEXT | flags::WRITE, 2).as_bytes(),
        );
        mem.put(
            DESC + 32,
            Desc::new(DATA, 1, flags::NEXT | flags::WRITE, 1).as_bytes(),
        );
        mem.put(AVAIL + 6, &1u16.to_le_bytes());
        mem.put(AVAIL + 2, &2u16.to_le_bytes());
        assert!(net
            .receive(&rx.layout, &mut mem, &[&a[..]], &mut vec![0u8; RX_STAGING])
            .is_err());
        assert!(net.needs_reset());
        assert_eq!(
            net.receive(&rx.layout, &mut mem, &[&a[..]], &mut vec![0u8; RX_STAGING]),
            Ok(Received::default())
        );
        net.restart(RECEIVEQ);
        assert!(!net.needs_reset());
    }

    #[test]
    fn drop_reasons_display() {
        let all = [
            DropReason::Malformed,
            DropReason::Offload,
            DropReason::Refused,
            DropReason::TooShort,
            DropReason::BadChain,
        ];
        let lines: Vec<_> = all.iter().map(|d| std::format!("{d}")).collect();
        for (i, line) in lines.iter().enumerate() {
            assert!(!line.is_empty() && !lines[..i].contains(line));
        }
    }
}
