// SPDX-License-Identifier: BSD-2-Clause
//! The block driver PD (`BLK=device`): QEMU virt's virtio-mmio block
//! device, driven by `virtio-drivers`, serving the blk PD through sDDF's
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
//! Up to `DEPTH` reads and writes are on the device at once, started
//! without waiting and finished at the device's interrupt, in the order
//! the device uses them. A flush is started only when the device is idle
//! (`Serve` drains first) and waits for the device by polling (the
//! crate's `flush` is blocking), in this PD, which runs above the blk PD
//! and the guest.
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
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
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

/// Bounce slots for buffers the crate hands the device from elsewhere
/// (its blocking requests' header and status on the stack).
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

type Blk = VirtIOBlk<SeL4Hal, MmioTransport<'static>>;

/// Requests on the device at once: each read or write takes 3 of the
/// virtqueue's descriptors (header, data, status; the crate uses no
/// indirect descriptors without `alloc`), and it has 16.
const DEPTH: usize = 16 / 3;

/// The device as `Serve` drives it: up to [`DEPTH`] reads and writes in
/// flight, each with its own request header and status byte in DMA
/// memory, finished at the device's interrupt in whatever order it uses
/// them. A flush uses the crate's blocking `flush`, which `Serve` asks
/// for only on an idle device (virtio-drivers 0.13 has no non-blocking
/// flush): it polls the used ring for the one request, in this PD, above
/// the blk PD and the guest.
struct Device {
    blk: Blk,
    data: SharedBuffer,
    reqs: &'static mut [BlkReq; DEPTH],
    resps: &'static mut [BlkResp; DEPTH],
    /// Each slot's token, code and transfer while on the device.
    slots: [Option<(u16, Code, Transfer)>; DEPTH],
    /// A finished flush's slot and status, for the next poll.
    flushed: Option<(usize, Status)>,
    /// Used tokens that matched no slot (logged once).
    strays: u32,
    /// Flushes, and the ticks spent waiting for them.
    flushes: u64,
    flush_ticks: u64,
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
        let sector = usize::try_from(t.sector).map_err(|_| Status::InvalidParam)?;
        match code {
            Code::Read | Code::Write => {
                // SAFETY: see `data`; the slot's header, status and data
                // stay untouched until `poll` completes the request with
                // the same ones.
                let buf = unsafe { self.data(t) };
                let (Some(req), Some(resp)) = (self.reqs.get_mut(slot), self.resps.get_mut(slot))
                else {
                    return Err(Status::InvalidParam);
                };
                // SAFETY: as above.
                let token = unsafe {
                    if code == Code::Read {
                        self.blk.read_blocks_nb(sector, req, buf, resp)
                    } else {
                        self.blk.write_blocks_nb(sector, req, buf, resp)
                    }
                }
                .map_err(|_| Status::Io)?;
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some((token, code, *t));
                }
                Ok(())
            }
            Code::Flush | Code::Barrier => {
                // `Serve` drains first: nothing else is on the device.
                let (start, _) = common::counter();
                self.flushed = Some((
                    slot,
                    match self.blk.flush() {
                        Ok(()) => Status::Ok,
                        Err(_) => Status::Io,
                    },
                ));
                let (end, _) = common::counter();
                self.flushes += 1;
                self.flush_ticks += end - start;
                Ok(())
            }
            Code::Unknown(_) => Err(Status::InvalidParam),
        }
    }

    fn poll(&mut self) -> Option<(usize, Status)> {
        if let Some(done) = self.flushed.take() {
            return Some(done);
        }
        let token = self.blk.peek_used()?;
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
        let (_, code, t) = self.slots[slot].take()?;
        // SAFETY: the buffers `start` passed for this token.
        let buf = unsafe { self.data(&t) };
        let (req, resp) = (&self.reqs[slot], &mut self.resps[slot]);
        // SAFETY: as above.
        let done = unsafe {
            if code == Code::Read {
                self.blk.complete_read_blocks(token, req, buf, resp)
            } else {
                self.blk.complete_write_blocks(token, req, buf, resp)
            }
        };
        Some((slot, if done.is_ok() { Status::Ok } else { Status::Io }))
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
    let mut blk = Blk::new(transport).expect("blk-driver: virtio-blk init failed");
    blk.enable_interrupts();
    let blocks = blk.capacity() / (blk_queue::TRANSFER_SIZE / 512);
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
        reqs: dma_value(core::array::from_fn(|_| BlkReq::default())),
        resps: dma_value(core::array::from_fn(|_| BlkResp::default())),
        slots: [None; DEPTH],
        flushed: None,
        strays: 0,
        flushes: 0,
        flush_ticks: 0,
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
            self.device.blk.ack_interrupt();
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
