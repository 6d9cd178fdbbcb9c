// SPDX-License-Identifier: BSD-2-Clause
//! The two halves of a virtio-blk device split across PDs, as library code
//! so that the host tests run exactly what the PDs run:
//!
//! - [`BlkFrontend`], in the VMM: the virtio-mmio register file behind a
//!   trapped guest window. It publishes queue changes to the shared page
//!   and tells the glue when to signal the backend.
//! - [`BlkService`], in the driver PD: on each signal, reads the queue
//!   state, serves the queue through guest-ram's copy service, and reports
//!   back in the shared page.
//!
//! ```text
//! guest --MMIO fault--> VMM: BlkFrontend::access --Notify--> signal
//!   --> blk PD: BlkService::notified --PPC copies--> VMM: guest_ram::Server
//!   --> guest RAM;  blk PD --signal--> VMM: BlkFrontend::backend_signalled
//! ```

use guest_ram::SharedBuffer;
use vcpu_fault::esr::MmioAccess;

use crate::blk::{BlkBackend, Disk, GuestDma, Stats};
use crate::mmio::{Access, BlkConfig, Effect, MmioDevice};
use crate::shared::{self, BackendState, QueueState};

/// Logs the first 8 of a kind one by one, then every power-of-two-th, so a
/// misbehaving guest cannot flood the console.
fn should_log(n: u32) -> bool {
    n <= 8 || n.is_power_of_two()
}

/// What the VMM glue must do after an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Signal the backend PD.
    SignalBackend,
}

/// The VMM's half of a virtio-blk device.
pub struct BlkFrontend {
    device: MmioDevice<BlkConfig>,
    page: SharedBuffer,
    generation: u32,
    ignored: u32,
}

impl BlkFrontend {
    /// A device whose queue state goes to `page`. Its capacity is what
    /// the backend reports in the page (0 until it has), read again
    /// whenever the guest reads the configuration space.
    pub fn new(page: SharedBuffer) -> Self {
        let mut frontend = BlkFrontend {
            device: MmioDevice::new(BlkConfig::new(0)),
            page,
            generation: 0,
            ignored: 0,
        };
        frontend.publish();
        frontend
    }

    /// The register file.
    pub fn device(&self) -> &MmioDevice<BlkConfig> {
        &self.device
    }

    /// Accesses the guest made that the device ignored.
    pub fn ignored(&self) -> u32 {
        self.ignored
    }

    fn publish(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let q = self.device.queue(0).copied().unwrap_or_default();
        let state = QueueState::new(self.generation, q.ready, q.size, q.desc, q.avail, q.used);
        if shared::publish_queue(&self.page, &state).is_err() {
            log::error!("virtio-blk: shared page too small for the queue state");
        }
    }

    /// One trapped guest access at `offset` into the window: a load returns
    /// the value for the guest's register.
    pub fn access(&mut self, offset: u64, width: u8, write: Option<u64>) -> (u64, Action) {
        if write.is_none() && offset >= crate::mmio::reg::CONFIG {
            self.refresh_capacity();
        }
        let access = match write {
            Some(value) => self.device.write(offset, width, value),
            None => self.device.read(offset, width),
        };
        match access {
            Access::Done(value, effect) => (value, self.act(effect)),
            Access::Ignored(why) => {
                self.ignored = self.ignored.saturating_add(1);
                if should_log(self.ignored) {
                    let kind = if write.is_some() { "write" } else { "read" };
                    log::warn!(
                        "virtio-blk: guest {kind} of {width} bytes at +{offset:#x} ignored: {why} (#{})",
                        self.ignored
                    );
                }
                (0, Action::None)
            }
        }
    }

    /// Resets the device from outside the guest, as a power cycle resets
    /// hardware (a guest reset): as if the driver wrote 0 to `STATUS`.
    /// The backend is told that the queue it knew is gone, so nothing the
    /// old guest left in its rings is served into the new one's memory.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// use virtio::device::{Action, BlkFrontend};
    /// use virtio::mmio::{reg, status};
    /// # let mut page = [0u8; 4096];
    /// # // SAFETY: `page` outlives `blk`.
    /// # let page = unsafe { SharedBuffer::new(NonNull::new(page.as_mut_ptr()).unwrap(), 4096) };
    /// let mut blk = BlkFrontend::new(page);
    /// blk.access(reg::STATUS, 4, Some(u64::from(status::ACKNOWLEDGE)));
    /// assert_eq!(blk.reset(), Action::SignalBackend);
    /// assert_eq!(blk.access(reg::STATUS, 4, None).0, 0);
    /// ```
    pub fn reset(&mut self) -> Action {
        self.access(crate::mmio::reg::STATUS, 4, Some(0)).1
    }

    /// Emulates a decoded guest load or store, if it falls inside the
    /// device window at `window_gpa`. `register_value` is the transfer
    /// register's contents (used by stores). Returns the value a load puts
    /// in its register (`None` for stores and the zero register) and what
    /// the glue must do; `None` if the access is not this device's.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// use vcpu_fault::esr::decode_data_abort;
    /// use virtio::device::BlkFrontend;
    /// # let mut page = [0u8; 4096];
    /// # let page = unsafe { SharedBuffer::new(NonNull::new(page.as_mut_ptr()).unwrap(), 4096) };
    /// let mut blk = BlkFrontend::new(page);
    /// // `ldr w5, [x0]` at the window's start: the magic value.
    /// let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (5 << 16);
    /// let load = decode_data_abort(esr, 0x0a00_0000).unwrap();
    /// let (value, _) = blk.emulate(0x0a00_0000, &load, 0).unwrap();
    /// assert_eq!(value, Some(0x7472_6976));
    /// ```
    pub fn emulate(
        &mut self,
        window_gpa: u64,
        access: &MmioAccess,
        register_value: u64,
    ) -> Option<(Option<u64>, Action)> {
        let offset = access
            .gpa
            .checked_sub(window_gpa)
            .filter(|offset| *offset < crate::mmio::WINDOW_SIZE)?;
        if access.write {
            let value = access.store_value(register_value);
            let (_, action) = self.access(offset, access.width, Some(value));
            Some((None, action))
        } else {
            let (value, action) = self.access(offset, access.width, None);
            let load = access.writes_register().then(|| access.load_value(value));
            Some((load, action))
        }
    }

    fn refresh_capacity(&mut self) {
        if let Ok(state) = shared::read_backend(&self.page) {
            let capacity = state.capacity.get();
            let blk_size = match state.block_size.get() {
                0 => crate::blk::SECTOR as u32,
                n => n,
            };
            let config = self.device.device();
            if capacity != config.capacity || blk_size != config.blk_size {
                let config = self.device.device_mut();
                config.capacity = capacity;
                config.blk_size = blk_size;
            }
        }
    }

    fn act(&mut self, effect: Effect) -> Action {
        match effect {
            Effect::None => Action::None,
            Effect::Notify(_) => Action::SignalBackend,
            Effect::QueuesChanged => {
                self.publish();
                Action::SignalBackend
            }
        }
    }

    /// The backend signalled: it used buffers, or the queue broke.
    pub fn backend_signalled(&mut self) {
        let Ok(state) = shared::read_backend(&self.page) else {
            return;
        };
        if state.generation.get() != self.generation {
            // About a queue configuration the guest has since replaced.
            return;
        }
        if state.needs_reset.get() != 0 {
            if self.device.status() & crate::mmio::status::DEVICE_NEEDS_RESET == 0 {
                log::warn!("virtio-blk: queue broken by the guest; device needs reset");
            }
            self.device.needs_reset();
        } else {
            self.device.used_buffers();
        }
    }
}

/// The driver PD's half: a [`BlkBackend`] per queue generation.
pub struct BlkService<D> {
    page: SharedBuffer,
    disk: D,
    generation: u32,
    backend: BlkBackend,
    total: Stats,
}

impl<D: Disk> BlkService<D> {
    /// A service for the queue published in `page`, serving `disk`; it
    /// reports the disk's capacity in the page at once.
    pub fn new(page: SharedBuffer, disk: D) -> Self {
        let mut service = BlkService {
            page,
            disk,
            generation: 0,
            backend: BlkBackend::new(),
            total: Stats::default(),
        };
        service.report(false);
        service
    }

    /// Counters over all generations.
    pub fn stats(&self) -> Stats {
        self.total + self.backend.stats()
    }

    /// The disk.
    pub fn disk(&mut self) -> &mut D {
        &mut self.disk
    }

    /// The VMM signalled: serve what the queue has. Returns whether to
    /// signal the VMM back (something was used, or the queue broke).
    pub fn notified<M: GuestDma>(&mut self, dma: &mut M) -> bool {
        let Ok(state) = shared::read_queue(&self.page) else {
            return false;
        };
        if state.generation.get() != self.generation {
            self.total = self.total + core::mem::take(&mut self.backend).stats();
            self.generation = state.generation.get();
        }
        let layout = match state.layout() {
            None => return false,
            Some(Ok(layout)) => layout,
            Some(Err(e)) => {
                log::warn!("virtio-blk: published queue is invalid: {e}");
                return self.report(true);
            }
        };
        match self.backend.process(&layout, dma, &mut self.disk) {
            Ok(0) => false,
            Ok(_) => self.report(false),
            Err(e) => {
                log::warn!("virtio-blk: queue error, device needs reset: {e}");
                self.report(true)
            }
        }
    }

    fn report(&mut self, needs_reset: bool) -> bool {
        let state = BackendState {
            generation: self.generation.into(),
            needs_reset: u32::from(needs_reset || self.backend.is_broken()).into(),
            served: self.backend.stats().requests.into(),
            capacity: (self.disk.len() / crate::blk::SECTOR).into(),
            block_size: self.disk.block_size().into(),
            reserved: 0.into(),
        };
        shared::publish_backend(&self.page, &state).is_ok()
    }
}
