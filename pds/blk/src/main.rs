// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-blk driver PD: serves the guest's virtqueue from a RAM disk,
//! moving every byte of guest memory through guest-ram's copy service. It
//! never maps guest RAM. Glue only: the queue walking and request handling
//! are `virtio::device::BlkService`.
#![allow(
    unsafe_code,
    reason = "maps the buffer, shared page and disk regions that system.xml gives it"
)]
#![no_std]
#![no_main]

use common::{counter, CountingPpc, Ppc};
use guest_ram::client::Client;
use guest_ram::SharedBuffer;
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, Channel, ChannelSet, Handler, Infallible,
};
#[cfg(not(feature = "device"))]
use virtio::blk::{Disk, RamDisk};
#[cfg(feature = "device")]
use virtio::blk_async::AsyncDisk;
#[cfg(not(feature = "device"))]
use virtio::device::BlkService;

/// The disk: a RAM disk, or (`BLK=device`) a block driver PD's device.
#[cfg(not(feature = "device"))]
type PdDisk = RamDisk;
#[cfg(feature = "device")]
type PdDisk = blk_queue::disk::QueueDisk<DriverBell, DEPTH>;

/// `BLK=device`: guest requests in flight at the driver at most (each
/// with its own part of the data region).
#[cfg(feature = "device")]
const DEPTH: usize = 16;

/// The service: synchronous over a RAM disk, asynchronous over a device
/// (it hands the driver every request it can and returns; the driver's
/// signal brings the completions).
#[cfg(not(feature = "device"))]
type Service = BlkService<PdDisk>;
#[cfg(feature = "device")]
type Service = virtio::device::AsyncBlkService<PdDisk, DEPTH>;

struct Blk {
    vmm: Channel,
    /// Batches of at least 1 MiB served so far.
    large: u64,
    /// Notifications handled, and the ticks spent handling them.
    notifications: u64,
    busy: u64,
    client: Client<CountingPpc>,
    service: Service,
}

/// `BLK=device`: how the disk reaches the block driver PD: a signal when
/// requests are queued. Nothing waits for the driver: its signal back
/// (responses queued) runs this PD's `notified`, which completes them.
#[cfg(feature = "device")]
struct DriverBell {
    driver: Channel,
    /// Ticks spent in the driver, which runs above this PD, as soon as
    /// it is rung.
    ticks: u64,
}

#[cfg(feature = "device")]
impl blk_queue::disk::Doorbell for DriverBell {
    fn ring(&mut self) {
        let (start, _) = counter();
        self.driver.notify();
        self.ticks += counter().0.wrapping_sub(start);
    }
}

/// With a device (`BLK=device`), the copy client's shared buffer is the
/// data region (the driver's DMA data area, mapped here and in the VMM as
/// the disk region is with a RAM disk) and the staging region after it;
/// the disk is the block driver PD behind sDDF's rings, and the data
/// region its window: the VMM copies guest RAM <-> data region, the device
/// DMAs data region <-> disk.
#[cfg(feature = "device")]
fn data_path(region: SharedBuffer) -> (SharedBuffer, PdDisk, (usize, usize)) {
    let (staging_vaddr, staging_len) = (
        *var!(staging_vaddr: usize = 0),
        *var!(staging_size: usize = 0),
    );
    let contiguous = region.vaddr().as_ptr() as usize + region.len() == staging_vaddr;
    assert!(
        contiguous && staging_len > 0,
        "blk: the staging region must follow the data region"
    );
    // SAFETY: `system.xml` maps these regions here, read-write, for the
    // PD's whole life, the staging region right after the data region
    // (checked above); nothing in this PD takes references into them.
    let (buffer, queue, info) = unsafe {
        (
            SharedBuffer::new(region.vaddr(), region.len() + staging_len),
            SharedBuffer::new(
                memory_region_symbol!(queue_vaddr: *mut u8),
                *var!(queue_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(info_vaddr: *mut u8),
                *var!(info_size: usize = 0),
            ),
        )
    };
    let half = queue.len() / 2;
    let rings = blk_queue::Rings::new(
        queue.sub(0, half).expect("request ring"),
        queue.sub(half, half).expect("response ring"),
        blk_queue::RING_CAPACITY,
    )
    .expect("blk: rings do not fit the queue region");
    let bell = DriverBell {
        driver: Channel::new(*var!(driver_channel: usize = 0)),
        ticks: 0,
    };
    let disk = blk_queue::disk::QueueDisk::new(
        blk_queue::Client::new(rings),
        info,
        region.len() as u64,
        0,
        bell,
    );
    (buffer, disk, (region.len(), staging_len))
}

/// With one copy (the default), the copy client's shared buffer is the
/// disk region and the staging region that `system.xml` maps right after
/// it: the disk (the prefilled image's length) at offset 0, the staging
/// area for headers and ring traffic after the disk region. The VMM copies
/// between guest RAM and the disk directly.
#[cfg(not(any(feature = "two-copy", feature = "device")))]
fn data_path(region: SharedBuffer) -> (SharedBuffer, RamDisk, (usize, usize)) {
    let (staging_vaddr, staging_len) = (
        *var!(staging_vaddr: usize = 0),
        *var!(staging_size: usize = 0),
    );
    let contiguous = region.vaddr().as_ptr() as usize + region.len() == staging_vaddr;
    assert!(
        contiguous && staging_len > 0,
        "blk: the staging region must follow the disk region"
    );
    // SAFETY: the two regions are mapped read-write here for the PD's whole
    // life, back to back (checked above): one range of memory.
    let buffer = unsafe { SharedBuffer::new(region.vaddr(), region.len() + staging_len) };
    let disk_len = *var!(disk_prefill_size: usize = 0);
    let disk = region.sub(0, disk_len).expect("disk inside its region");
    (
        buffer,
        RamDisk::in_buffer(disk, 0),
        (region.len(), staging_len),
    )
}

/// With two copies (`BLK_COPIES=2`), a staging buffer of its own: disk →
/// buffer here, buffer → guest RAM in the VMM, and the VMM never maps the
/// disk.
#[cfg(all(feature = "two-copy", not(feature = "device")))]
fn data_path(region: SharedBuffer) -> (SharedBuffer, RamDisk, (usize, usize)) {
    // SAFETY: `system.xml` maps the staging buffer here, read-write, for
    // the PD's whole life, and nothing in this PD takes references into it.
    let buffer = unsafe {
        SharedBuffer::new(
            memory_region_symbol!(buffer_vaddr: *mut u8),
            *var!(buffer_size: usize = 0),
        )
    };
    let disk_len = *var!(disk_prefill_size: usize = 0);
    let disk = region.sub(0, disk_len).expect("disk inside its region");
    (buffer, RamDisk::new(disk), (0, buffer.len()))
}

#[protection_domain]
fn init() -> Blk {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps these regions here, read-write, for the
    // PD's whole life, and nothing in this PD takes references into them.
    let (page, region) = unsafe {
        (
            SharedBuffer::new(
                memory_region_symbol!(device_vaddr: *mut u8),
                *var!(device_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(disk_vaddr: *mut u8),
                *var!(disk_size: usize = 0),
            ),
        )
    };
    let (buffer, disk, (staging_at, staging_len)) = data_path(region);
    // The baseline for the device path's figure: 1 MiB copied locally,
    // disk → the staging area, 64 KiB at a time (as the two-copy path
    // moves it).
    let scratch = buffer.sub(staging_at, staging_len).expect("staging area");
    // Three times: the first runs cold (QEMU refills its software TLB,
    // as after every switch of address space), the fastest warm.
    let piece = staging_len.clamp(1, 0x10000);
    let local = (1usize << 20).min(disk.len() as usize);
    let whole = region;
    let (mut cold, mut warm, mut hz) = (0, u64::MAX, 1);
    for run in 0..3 {
        let (start, freq) = counter();
        for offset in (0..local).step_by(piece) {
            let _ = scratch.copy_from(0, &whole, offset, piece.min(local - offset));
        }
        let (end, _) = counter();
        if run == 0 {
            cold = end - start;
        } else {
            warm = warm.min(end - start);
        }
        hz = freq.max(1);
    }
    log::info!(
        "blk: local copy of {} KiB: cold {cold} ticks ({} us), warm {warm} ticks ({} us) at {hz} Hz; disk {} KiB, {} copy path",
        local >> 10,
        cold * 1_000_000 / hz,
        warm * 1_000_000 / hz,
        disk.len() >> 10,
        if cfg!(feature = "device") {
            "device (block driver PD)"
        } else if cfg!(feature = "two-copy") {
            "two-copy"
        } else {
            "one-copy"
        }
    );
    let vmm = Channel::new(*var!(vmm_channel: usize = 0));
    Blk {
        vmm,
        large: 0,
        notifications: 0,
        busy: 0,
        client: Client::with_staging(
            CountingPpc {
                ppc: Ppc(vmm),
                calls: 0,
                ticks: 0,
            },
            buffer,
            staging_at,
            staging_len,
        )
        .expect("staging area inside the buffer"),
        service: Service::new(page, disk),
    }
}

impl Handler for Blk {
    type Error = Infallible;

    fn notified(&mut self, _channels: ChannelSet) -> Result<(), Self::Error> {
        // From the VMM (the guest queued requests) or, with a device, from
        // the driver (responses queued): either way, serve what there is.
        // A driver that published its storage info after this PD started.
        #[cfg(feature = "device")]
        self.service.disk().refresh();
        let before = (self.client_calls(), self.service.stats());
        let (start, hz) = counter();
        let signal = self.service.notified(&mut self.client);
        let (end, _) = counter();
        if signal {
            self.vmm.notify();
        }
        self.notifications += 1;
        self.busy += end - start;
        let (calls, stats) = (self.client_calls(), self.service.stats());
        let bytes = stats.bytes - before.1.bytes;
        if bytes >= 1 << 20 {
            self.large += 1;
        }
        // The first few megabyte batches, then every power-of-two-th: a
        // Linux guest's streaming I/O would otherwise flood the console.
        if bytes >= 1 << 20 && (self.large <= 4 || self.large.is_power_of_two()) {
            let ppcs = calls - before.0;
            log::info!(
                "blk: {} request(s), {bytes} bytes in {ppcs} PPCs ({} bytes/PPC), {} ticks ({} us)",
                stats.requests - before.1.requests,
                bytes / ppcs.max(1),
                end - start,
                (end - start) * 1_000_000 / hz.max(1)
            );
            log::info!(
                "blk: so far {} requests ({} failed), {} PPCs: {}.{:02} PPCs per request; {} notifications, busy {} us of {} us",
                stats.requests,
                stats.failed,
                calls,
                calls / stats.requests.max(1),
                calls * 100 / stats.requests.max(1) % 100,
                self.notifications,
                self.busy * 1_000_000 / hz.max(1),
                end * 1_000_000 / hz.max(1)
            );
            #[cfg(feature = "device")]
            let rung = self.service.disk().doorbell().ticks;
            #[cfg(not(feature = "device"))]
            let rung = 0;
            log::info!(
                "blk: of which {} us in copy PPCs, {} us in the driver when rung",
                self.client.transport().ticks * 1_000_000 / hz.max(1),
                rung * 1_000_000 / hz.max(1)
            );
        }
        Ok(())
    }
}

impl Blk {
    fn client_calls(&mut self) -> u64 {
        self.client.transport().calls
    }
}
