// SPDX-License-Identifier: BSD-2-Clause
//! The block driver PD (`BLK=device`): QEMU virt's virtio-mmio block
//! device, driven over `virtio-drivers`' virtio-mmio transport and split
//! virtqueue (the virtio-blk requests are built here), serving the blk PD
//! through sDDF's
//! block rings (`blk_queue::driver::Serve`). It never maps guest RAM: the
//! device reads and writes the data region, which the VMM fills and
//! empties for the blk PD.
//!
//! Memory (`system.xml`'s BLKDEVICE parts): the device's register page;
//! a DMA region for the virtqueue, the request header and status slots and
//! a small bounce area; the data region (also the blk PD's copy buffer);
//! the rings and the storage-info page. The DMA and data regions' physical
//! addresses come from `setvar region_paddr`.
//!
//! Up to `DEPTH` requests are on the device at once, started without
//! waiting and finished at the device's interrupt, in the order the
//! device uses them. A flush is started only when the device is idle
//! (`Serve` drains first) and finished at the interrupt like the rest:
//! nothing polls. (The crate's own `VirtIOBlk` has only a blocking
//! `flush`, which would spin this PD, above the blk PD and the guest, for
//! as long as the host's `fdatasync` takes, and a 16-entry queue.)
#![allow(
    unsafe_code,
    reason = "maps the device's registers and DMA memory that system.xml gives it, and implements virtio-drivers' unsafe Hal over them"
)]
#![no_std]
#![no_main]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use blk_queue::driver::{BlockDevice, Serve};
use blk_queue::{publish_storage_info, Code, Driver, Rings, Status, StorageInfo, Transfer};
use guest_ram::SharedBuffer;
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, Channel, ChannelSet, Handler, Infallible,
};
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// A mapping and its physical address, set once in `init`.
struct Region {
    vaddr: AtomicUsize,
    paddr: AtomicUsize,
    len: AtomicUsize,
}

impl Region {
    const fn new() -> Self {
        Region {
            vaddr: AtomicUsize::new(0),
            paddr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    fn set(&self, vaddr: usize, paddr: usize, len: usize) {
        self.vaddr.store(vaddr, Ordering::Relaxed);
        self.paddr.store(paddr, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
    }

    /// The physical address of `[vaddr, vaddr + len)` if it lies inside.
    fn paddr_of(&self, vaddr: usize, len: usize) -> Option<PhysAddr> {
        let base = self.vaddr.load(Ordering::Relaxed);
        let offset = vaddr.checked_sub(base)?;
        let end = offset.checked_add(len)?;
        (end <= self.len.load(Ordering::Relaxed))
            .then(|| (self.paddr.load(Ordering::Relaxed) + offset) as PhysAddr)
    }

    fn vaddr_of(&self, paddr: PhysAddr) -> Option<usize> {
        let offset = usize::try_from(paddr)
            .ok()?
            .checked_sub(self.paddr.load(Ordering::Relaxed))?;
        (offset < self.len.load(Ordering::Relaxed))
            .then(|| self.vaddr.load(Ordering::Relaxed) + offset)
    }
}

/// The DMA region: virtqueue pages from the start (bump-allocated), the
/// bounce slots at the end.
static DMA: Region = Region::new();
/// The data region: request data, shared with the blk PD (and the VMM).
static DATA: Region = Region::new();
/// The next free byte of the DMA region.
static DMA_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Bounce slots for a buffer handed to the device from outside the DMA
/// and data regions (none is, today: headers and status bytes live in
/// the DMA region; kept so that `share` never hands the device an
/// address it cannot reach).
const BOUNCE_SLOTS: usize = 4;
const BOUNCE_LEN: usize = 64;
static BOUNCE_USED: [AtomicBool; BOUNCE_SLOTS] = [const { AtomicBool::new(false) }; BOUNCE_SLOTS];

fn bounce_base() -> usize {
    DMA.vaddr.load(Ordering::Relaxed) + DMA.len.load(Ordering::Relaxed) - BOUNCE_SLOTS * BOUNCE_LEN
}

/// virtio-drivers' platform layer over this PD's regions.
struct SeL4Hal;

// SAFETY: `dma_alloc` hands out page-aligned, zeroed, never-reused pages of
// the DMA region (mapped here for the PD's life, its physical address from
// the system description); `share` returns the physical address of memory
// inside the DMA or data regions, or of a bounce slot that holds a copy.
unsafe impl Hal for SeL4Hal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let len = pages * PAGE_SIZE;
        let start = DMA_NEXT.fetch_add(len, Ordering::Relaxed);
        let vaddr = DMA.vaddr.load(Ordering::Relaxed) + start;
        let room = DMA.len.load(Ordering::Relaxed) - BOUNCE_SLOTS * BOUNCE_LEN;
        assert!(start + len <= room, "blk-driver: DMA region too small");
        let paddr = DMA.paddr_of(vaddr, len).expect("inside the DMA region");
        let ptr = NonNull::new(vaddr as *mut u8).expect("mapped");
        // SAFETY: `len` bytes of the DMA region, handed out once.
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        (paddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // The device lives as long as the PD: nothing is given back.
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Only the PCI transport asks.
        panic!("blk-driver: no PCI")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let (vaddr, len) = (buffer.cast::<u8>().as_ptr() as usize, buffer.len());
        if let Some(paddr) = DMA
            .paddr_of(vaddr, len)
            .or_else(|| DATA.paddr_of(vaddr, len))
        {
            return paddr;
        }
        assert!(len <= BOUNCE_LEN, "blk-driver: buffer outside DMA memory");
        let slot = BOUNCE_USED
            .iter()
            .position(|used| !used.swap(true, Ordering::Acquire))
            .expect("blk-driver: bounce slots exhausted");
        let at = bounce_base() + slot * BOUNCE_LEN;
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for `len` bytes; the slot
            // is ours until `unshare`.
            unsafe { core::ptr::copy_nonoverlapping(vaddr as *const u8, at as *mut u8, len) };
        }
        DMA.paddr_of(at, len)
            .expect("bounce slot inside the DMA region")
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let Some(at) = DMA.vaddr_of(paddr) else {
            return; // The data region: nothing to copy back.
        };
        let Some(slot) = at.checked_sub(bounce_base()).map(|o| o / BOUNCE_LEN) else {
            return; // Inside the DMA region proper.
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: as in `share`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    at as *const u8,
                    buffer.cast::<u8>().as_ptr(),
                    buffer.len(),
                )
            };
        }
        if let Some(used) = BOUNCE_USED.get(slot) {
            used.store(false, Ordering::Release);
        }
    }
}

/// Descriptors in the device's virtqueue (QEMU's virtio-blk offers 256).
const QUEUE_SIZE: usize = 64;

/// Requests on the device at once: a read or write takes 3 descriptors
/// (header, data, status; no indirect descriptors without `alloc`).
const DEPTH: usize = 16;

/// virtio-blk feature bits this driver takes: `VIRTIO_BLK_F_RO`,
/// `VIRTIO_BLK_F_FLUSH`, `VIRTIO_F_VERSION_1`.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;

/// virtio-blk request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// The virtio-blk device over virtio-drivers' transport and virtqueue.
/// Not the crate's `VirtIOBlk`: its flush is blocking (0.13 has no
/// non-blocking one), and its queue has 16 descriptors; here every
/// request, a flush too, is added without waiting and finished at the
/// interrupt.
struct VirtioBlk {
    transport: MmioTransport<'static>,
    queue: VirtQueue<SeL4Hal, QUEUE_SIZE>,
    /// 512-byte sectors.
    capacity: u64,
    features: u64,
}

impl VirtioBlk {
    /// Initialises the device (virtio 1.2 §3.1.1): features, capacity,
    /// queue 0, `DRIVER_OK`.
    fn new(mut transport: MmioTransport<'static>) -> Result<Self, virtio_drivers::Error> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let features = transport.read_device_features() & (F_RO | F_FLUSH | F_VERSION_1);
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return Err(virtio_drivers::Error::Unsupported);
        }
        transport.set_guest_page_size(PAGE_SIZE as u32);
        let capacity = transport.read_consistent(|| {
            Ok(u64::from(transport.read_config_space::<u32>(0)?)
                | (u64::from(transport.read_config_space::<u32>(4)?) << 32))
        })?;
        let queue = VirtQueue::new(&mut transport, 0, false, false)?;
        transport.finish_init();
        Ok(VirtioBlk {
            transport,
            queue,
            capacity,
            features,
        })
    }

    fn readonly(&self) -> bool {
        self.features & F_RO != 0
    }
}

/// A request's header as the device reads it (`virtio_blk_req`'s first
/// 16 bytes), and its status byte.
type Header = [u8; 16];

fn header(kind: u32, sector: u64) -> Header {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// A slot's header and status byte, in DMA memory.
#[repr(C)]
struct SlotDma {
    header: Header,
    status: [u8; 1],
}

/// The device as `Serve` drives it: up to [`DEPTH`] requests in flight,
/// each with its own header and status byte in DMA memory, finished at
/// the device's interrupt in whatever order it uses them. A flush too:
/// `Serve` starts one only on an idle device, and it completes at the
/// interrupt like the rest (no PD waits for the device).
struct Device {
    blk: VirtioBlk,
    data: SharedBuffer,
    dma: &'static mut [SlotDma; DEPTH],
    /// Each slot's token, code and transfer while on the device.
    slots: [Option<(u16, Code, Transfer)>; DEPTH],
    /// A flush answered without the device (no `VIRTIO_BLK_F_FLUSH`).
    flushed: Option<usize>,
    /// Used tokens that matched no slot (logged once).
    strays: u32,
    /// Flushes, and the ticks from start to completion.
    flushes: u64,
    flush_ticks: u64,
    flush_start: u64,
}

impl Device {
    /// The data region's bytes of `t`.
    ///
    /// # Safety
    /// Nothing else may use the slice while it lives: `Serve` never has
    /// two requests with overlapping data on the device, and the blk PD
    /// and the VMM leave a request's data alone until it is answered.
    unsafe fn data(&self, t: &Transfer) -> &'static mut [u8] {
        // SAFETY: `Request::transfer` checked the range against the data
        // region's length; exclusivity is the caller's promise.
        unsafe {
            core::slice::from_raw_parts_mut(self.data.vaddr().as_ptr().add(t.data_offset), t.len)
        }
    }
}

impl BlockDevice for Device {
    fn start(&mut self, slot: usize, code: Code, t: &Transfer) -> Result<(), Status> {
        let kind = match code {
            Code::Read => T_IN,
            Code::Write => T_OUT,
            Code::Flush | Code::Barrier => {
                if self.blk.features & F_FLUSH == 0 {
                    // Nothing to flush: every completed write is in place.
                    self.flushed = Some(slot);
                    return Ok(());
                }
                T_FLUSH
            }
            Code::Unknown(_) => return Err(Status::InvalidParam),
        };
        if code == Code::Write && self.blk.readonly() {
            return Err(Status::Io);
        }
        let sector = if kind == T_FLUSH { 0 } else { t.sector };
        // SAFETY: see `data`; `Transfer` lengths are whole blocks.
        let buf = unsafe { self.data(t) };
        let dma = self.dma.get_mut(slot).ok_or(Status::InvalidParam)?;
        dma.header = header(kind, sector);
        dma.status = [0xff];
        // SAFETY: the slot's header, status byte and data stay untouched
        // until `poll` pops the token with the same buffers.
        let token = unsafe {
            match kind {
                T_IN => self
                    .blk
                    .queue
                    .add(&[&dma.header], &mut [buf, &mut dma.status]),
                T_OUT => self
                    .blk
                    .queue
                    .add(&[&dma.header, buf], &mut [&mut dma.status]),
                _ => self.blk.queue.add(&[&dma.header], &mut [&mut dma.status]),
            }
        }
        .map_err(|_| Status::Io)?;
        if self.blk.queue.should_notify() {
            self.blk.transport.notify(0);
        }
        if kind == T_FLUSH {
            self.flush_start = common::counter().0;
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some((token, code, *t));
        }
        Ok(())
    }

    fn poll(&mut self) -> Option<(usize, Status)> {
        if let Some(slot) = self.flushed.take() {
            return Some((slot, Status::Ok));
        }
        let token = self.blk.queue.peek_used()?;
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(t, _, _)| t == token))
        else {
            self.strays += 1;
            if self.strays == 1 {
                log::warn!("blk-driver: the device used token {token}, which is no request's");
            }
            return None;
        };
        let (_, code, t) = self.slots.get_mut(slot)?.take()?;
        // SAFETY: the buffers `start` added for this token.
        let buf = unsafe { self.data(&t) };
        let dma = self.dma.get_mut(slot)?;
        // SAFETY: as above: the same buffers, in the same places.
        let popped = unsafe {
            match code {
                Code::Read => {
                    self.blk
                        .queue
                        .pop_used(token, &[&dma.header], &mut [buf, &mut dma.status])
                }
                Code::Write => {
                    self.blk
                        .queue
                        .pop_used(token, &[&dma.header, buf], &mut [&mut dma.status])
                }
                _ => self
                    .blk
                    .queue
                    .pop_used(token, &[&dma.header], &mut [&mut dma.status]),
            }
        };
        if matches!(code, Code::Flush | Code::Barrier) {
            self.flushes += 1;
            self.flush_ticks += common::counter().0.wrapping_sub(self.flush_start);
        }
        let ok = popped.is_ok() && dma.status == [0];
        Some((slot, if ok { Status::Ok } else { Status::Io }))
    }
}

struct BlkDriver {
    client: Channel,
    irq: Channel,
    /// Notifications (client and interrupt) handled, the ticks spent, and
    /// the power of two of requests answered last logged.
    notifications: u64,
    busy: u64,
    logged: u64,
    device: Device,
    serve: Serve<DEPTH>,
}

/// Carves a `T` out of the DMA region.
fn dma_value<T>(value: T) -> &'static mut T {
    let (_, ptr) = SeL4Hal::dma_alloc(1, BufferDirection::Both);
    let ptr = ptr.cast::<T>();
    // SAFETY: a fresh, page-aligned, exclusively owned page.
    unsafe {
        ptr.as_ptr().write(value);
        &mut *ptr.as_ptr()
    }
}

#[protection_domain]
fn init() -> BlkDriver {
    common::init_logging(log::LevelFilter::Info);
    DMA.set(
        memory_region_symbol!(dma_vaddr: *mut u8).as_ptr() as usize,
        *var!(dma_paddr: usize = 0),
        *var!(dma_size: usize = 0),
    );
    let (data_vaddr, data_size) = (
        memory_region_symbol!(data_vaddr: *mut u8),
        *var!(data_size: usize = 0),
    );
    DATA.set(
        data_vaddr.as_ptr() as usize,
        *var!(data_paddr: usize = 0),
        data_size,
    );
    // SAFETY: `system.xml` maps the device's register page here, uncached,
    // for the PD's whole life; the transport is its only user.
    let transport = unsafe {
        MmioTransport::new(
            memory_region_symbol!(virtio_mmio_vaddr: *mut VirtIOHeader),
            0x200,
        )
    }
    .expect("blk-driver: no virtio-mmio device at the register page");
    let mut blk = VirtioBlk::new(transport).expect("blk-driver: virtio-blk init failed");
    blk.queue.set_dev_notify(true);
    log::info!("found a block device of size {}KB", blk.capacity / 2);
    let blocks = blk.capacity / (blk_queue::TRANSFER_SIZE / 512);
    // SAFETY: `system.xml` maps these regions here, read-write, for the
    // PD's whole life; this PD touches them only through these buffers
    // (and the data region through `Device::data`, one request at a time).
    let (queue, info, data) = unsafe {
        (
            SharedBuffer::new(
                memory_region_symbol!(queue_vaddr: *mut u8),
                *var!(queue_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(info_vaddr: *mut u8),
                *var!(info_size: usize = 0),
            ),
            SharedBuffer::new(data_vaddr, data_size),
        )
    };
    let half = queue.len() / 2;
    let rings = Rings::new(
        queue.sub(0, half).expect("request ring"),
        queue.sub(half, half).expect("response ring"),
        blk_queue::RING_CAPACITY,
    )
    .expect("blk-driver: rings do not fit the queue region");
    let mut storage = StorageInfo::new(blocks, 512, DEPTH as u16);
    storage.read_only = u8::from(blk.readonly());
    storage.serial_number[..15].copy_from_slice(b"qemu-virtio-blk");
    publish_storage_info(&info, &storage).expect("blk-driver: storage-info page");
    log::info!(
        "blk-driver: virtio-blk {} MiB ({} blocks of 4 KiB){}, data region {} KiB at {:#x}",
        blocks * 4 / 1024,
        blocks,
        if blk.readonly() { ", read-only" } else { "" },
        data.len() >> 10,
        DATA.paddr.load(Ordering::Relaxed)
    );
    let device = Device {
        blk,
        data,
        dma: dma_value(core::array::from_fn(|_| SlotDma {
            header: [0; 16],
            status: [0],
        })),
        slots: [None; DEPTH],
        flushed: None,
        strays: 0,
        flushes: 0,
        flush_ticks: 0,
        flush_start: 0,
    };
    BlkDriver {
        client: Channel::new(*var!(client_channel: usize = 0)),
        irq: Channel::new(*var!(irq_channel: usize = 0)),
        notifications: 0,
        busy: 0,
        logged: 128,
        serve: Serve::new(Driver::new(rings), data.len() as u64, blocks),
        device,
    }
}

impl Handler for BlkDriver {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        let (start, hz) = common::counter();
        if channels.contains(self.irq) {
            self.device.blk.transport.ack_interrupt();
        }
        match self.serve.run(&mut self.device) {
            Ok(true) => self.client.notify(),
            Ok(false) => {}
            Err(e) => log::warn!("blk-driver: request ring: {e}"),
        }
        if channels.contains(self.irq) {
            let _ = self.irq.irq_ack();
        }
        let (end, _) = common::counter();
        self.notifications += 1;
        self.busy += end - start;
        // Every power of two of requests answered, from 256 on.
        if self.serve.served() >= 2 * self.logged {
            self.logged *= 2;
            log::info!(
                "blk-driver: {} requests answered in {} notifications, busy {} us ({} flushes: {} us) of {} us",
                self.serve.served(),
                self.notifications,
                self.busy * 1_000_000 / hz.max(1),
                self.device.flushes,
                self.device.flush_ticks * 1_000_000 / hz.max(1),
                end * 1_000_000 / hz.max(1)
            );
        }
        Ok(())
    }
}
