// SPDX-License-Identifier: BSD-2-Clause
//! The two halves of a virtio device split across PDs, as library code so
//! that the host tests run exactly what the PDs run:
//!
//! - [`Frontend`], in the VMM, for any [`DeviceType`] ([`BlkFrontend`],
//!   [`ConsoleFrontend`](crate::console::ConsoleFrontend),
//!   [`NetFrontend`](crate::net::NetFrontend)): the
//!   virtio-mmio register file behind a trapped guest window. It
//!   publishes every queue's configuration to the shared page
//!   ([`shared`]) and tells the glue when to signal the backend
//!   ([`Action`]); when the backend signals back, it raises the device's
//!   interrupt status.
//! - In the device PD, a service built on [`BackendPage`] (which queue
//!   states changed, and the report back) and [`virtq`](crate::virtq)
//!   (the rings): [`BlkService`] here,
//!   [`ConsoleService`](crate::console::ConsoleService) for the console,
//!   [`NetService`](crate::net::NetService) for each port of a `net` PD.
//!
//! Adding a device is a [`DeviceType`] (id, features, queues,
//! configuration space) for the VMM and a service for its PD; the
//! transport, the page and the ring mechanics are these.
//!
//! ```text
//! guest --MMIO fault--> VMM: Frontend::access --Action::SignalBackend--> signal
//!   --> device PD: BlkService::notified --PPC copies--> VMM: guest_ram::Server
//!   --> guest RAM;  device PD --signal--> VMM: Frontend::backend_signalled
//! ```

use guest_ram::SharedBuffer;
use vcpu_fault::esr::MmioAccess;

use crate::blk::{BlkBackend, Disk, GuestDma, Stats};
use crate::mmio::{Access, BlkConfig, DeviceType, Effect, MmioDevice, QueueRegs, MAX_QUEUES};
use crate::shared::{self, BackendState, QueueState};

/// Logs the first 8 of a kind one by one, then every power-of-two-th, so a
/// misbehaving guest cannot flood the console.
pub(crate) fn should_log(n: u32) -> bool {
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

/// The VMM's half of a virtio device of type `D`.
pub struct Frontend<D> {
    device: MmioDevice<D>,
    page: SharedBuffer,
    generation: u32,
    /// Each queue's registers as last published, and the generation in
    /// which they last changed (`QueueState::configured`).
    published: [QueueRegs; MAX_QUEUES],
    configured: [u32; MAX_QUEUES],
    /// Whether the last publication said `VIRTIO_RING_F_EVENT_IDX` was
    /// negotiated.
    event_idx: bool,
    ignored: u32,
    /// The register page, if the guest has one ([`Self::set_register_page`]).
    registers: Option<SharedBuffer>,
    /// The generation that published the last device reset, until the
    /// backend has read it ([`Self::backend_may_copy`]).
    fence: Option<u32>,
}

/// The VMM's half of a virtio-blk device.
pub type BlkFrontend = Frontend<BlkConfig>;

impl Frontend<BlkConfig> {
    /// A virtio-blk device whose queue state goes to `page`. Its capacity
    /// is what the backend reports in the page (0 until it has), read
    /// again whenever the guest reads the configuration space.
    pub fn new(page: SharedBuffer) -> Self {
        Self::with_device(page, BlkConfig::new(0))
    }
}

impl<D: DeviceType> Frontend<D> {
    /// A device of type `device` whose queue states go to `page` (at
    /// least [`shared::PAGE_LEN`] bytes), published at once.
    pub fn with_device(page: SharedBuffer, device: D) -> Self {
        let mut frontend = Frontend {
            device: MmioDevice::new(device),
            page,
            generation: 0,
            published: [QueueRegs::default(); MAX_QUEUES],
            configured: [0; MAX_QUEUES],
            event_idx: false,
            ignored: 0,
            registers: None,
            fence: None,
        };
        frontend.publish();
        frontend
    }

    /// Gives the guest a register page: `registers` (at least
    /// [`WINDOW_SIZE`](crate::mmio::WINDOW_SIZE) bytes) is mapped
    /// read-only into the guest at the device's window, so the guest's
    /// loads read it without trapping and only its stores trap
    /// ([`MmioDevice::render`]). Every access and backend signal renders
    /// it again before the guest can look. Without one, every load traps
    /// and [`access`](Self::access) answers it. A page shorter than the
    /// window is refused ([`guest_ram::Error::OutsideBuffer`]) and loads
    /// keep trapping.
    ///
    /// Why: under QEMU's TCG every trap is a world switch after which the
    /// guest's translations are refilled; a driver reads
    /// `InterruptStatus` once per interrupt, and that read no longer
    /// traps.
    pub fn set_register_page(&mut self, registers: SharedBuffer) -> Result<(), guest_ram::Error> {
        if (registers.len() as u64) < crate::mmio::WINDOW_SIZE {
            return Err(guest_ram::Error::OutsideBuffer);
        }
        self.registers = Some(registers);
        self.sync_registers();
        Ok(())
    }

    /// Renders the register page, if there is one, from the current state
    /// (the backend's configuration fields refreshed first: with a page,
    /// configuration reads no longer trap to refresh them).
    fn sync_registers(&mut self) {
        if self.registers.is_none() {
            return;
        }
        self.refresh_backend_value();
        let mut window = [0u8; crate::mmio::WINDOW_SIZE as usize];
        self.device.render(&mut window);
        if let Some(registers) = &self.registers {
            // Cannot fail: the length was checked when it was given.
            let _ = registers.write(0, &window);
        }
    }

    /// The register file.
    pub fn device(&self) -> &MmioDevice<D> {
        &self.device
    }

    /// Accesses the guest made that the device ignored.
    pub fn ignored(&self) -> u32 {
        self.ignored
    }

    /// Publishes every queue's state under a new generation; a queue
    /// whose registers changed since the last publication is marked as
    /// configured in it, so the backend restarts that queue and no other.
    ///
    /// Every queue's record carries whether the driver accepted
    /// `VIRTIO_RING_F_EVENT_IDX` ([`QueueState::with_event_idx`]).
    fn publish(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.event_idx = self.device.event_idx();
        for n in 0..MAX_QUEUES {
            let q = self.device.queue(n).copied().unwrap_or_default();
            let (Some(published), Some(configured)) =
                (self.published.get_mut(n), self.configured.get_mut(n))
            else {
                continue;
            };
            if q != *published {
                *published = q;
                *configured = self.generation;
            }
            let state = QueueState::new(self.generation, q.ready, q.size, q.desc, q.avail, q.used)
                .with_configured(*configured)
                .with_event_idx(self.event_idx);
            if shared::publish_queue_n(&self.page, n, &state).is_err() {
                log::error!(
                    "{}: shared page too small for the queue state",
                    self.device.device().name()
                );
            }
        }
    }

    /// One trapped guest access at `offset` into the window: a load returns
    /// the value for the guest's register.
    pub fn access(&mut self, offset: u64, width: u8, write: Option<u64>) -> (u64, Action) {
        if write.is_none() && offset >= crate::mmio::reg::CONFIG {
            self.refresh_backend_value();
        }
        let access = match write {
            Some(value) => self.device.write(offset, width, value),
            None => self.device.read(offset, width),
        };
        let reset = write == Some(0) && offset == crate::mmio::reg::STATUS;
        // A store that changed the device is rendered into the register
        // page. A notification changes nothing readable, and an ignored
        // store nothing at all: the guest's kicks, its most frequent
        // stores, cost no render.
        let changed = !matches!(
            access,
            Access::Ignored(_) | Access::Done(_, Effect::Notify(_))
        );
        if write.is_some() && changed {
            self.sync_registers();
        }
        let done = match access {
            // A driver that accepts its features after readying a queue
            // (the spec says before) still gets a backend that works the
            // rings as it does (publishing signals the backend, which
            // covers a notification too).
            Access::Done(value, _) if self.device.event_idx() != self.event_idx => {
                (value, self.act(Effect::QueuesChanged))
            }
            Access::Done(value, effect) => (value, self.act(effect)),
            Access::Ignored(why) => {
                self.ignored = self.ignored.saturating_add(1);
                if should_log(self.ignored) {
                    let kind = if write.is_some() { "write" } else { "read" };
                    log::warn!(
                        "{}: guest {kind} of {width} bytes at +{offset:#x} ignored: {why} (#{})",
                        self.device.device().name(),
                        self.ignored
                    );
                }
                (0, Action::None)
            }
        };
        if reset {
            // Published under `self.generation` (a reset changes every
            // queue's registers, or they were already reset).
            self.fence = Some(self.generation);
        }
        done
    }

    /// Whether the backend's copy calls may be served now: not after a
    /// device reset (the driver's `STATUS` = 0, or [`reset`](Self::reset))
    /// until the backend has read the page published with it
    /// ([`BackendState::seen`]). Until then a call may come from what the
    /// backend knew of the old rings (a backend PD preempted between its
    /// ring snapshot and its copy, a request at a disk), and its addresses
    /// may already be the new driver's memory: the VMM refuses it
    /// (`guest_ram::protocol::Status::DeviceReset`). Reads the page's
    /// `seen` (4 bytes) only while a reset is fenced.
    ///
    /// ```
    /// # use core::ptr::NonNull;
    /// # use guest_ram::SharedBuffer;
    /// use virtio::device::{BackendPage, BlkFrontend};
    /// # let mut page = [0u8; 4096];
    /// # // SAFETY: `page` outlives both halves.
    /// # let page = unsafe { SharedBuffer::new(NonNull::new(page.as_mut_ptr()).unwrap(), 4096) };
    /// let mut blk = BlkFrontend::new(page);
    /// let mut backend = BackendPage::new(page);
    /// assert!(blk.backend_may_copy());
    /// blk.reset();
    /// assert!(!blk.backend_may_copy());
    /// backend.read(); // the backend looks
    /// assert!(blk.backend_may_copy());
    /// ```
    pub fn backend_may_copy(&mut self) -> bool {
        let Some(fence) = self.fence else {
            return true;
        };
        let seen = shared::read_backend(&self.page).map_or(fence.wrapping_sub(1), |s| s.seen.get());
        // At or past the fence (generations only grow, modulo 2^32).
        if seen.wrapping_sub(fence) < 1 << 31 {
            self.fence = None;
            true
        } else {
            false
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

    /// The configuration field the backend owns (virtio-blk's capacity),
    /// as the backend last reported it; set only when it changed, since
    /// setting bumps `ConfigGeneration`.
    fn refresh_backend_value(&mut self) {
        let Some(current) = self.device.device().backend_value() else {
            return;
        };
        if let Ok(state) = shared::read_backend(&self.page) {
            let value = (state.capacity.get(), state.block_size.get());
            if value != current {
                self.device.device_mut().set_backend_value(value.0, value.1);
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
        self.take_backend_report();
        // Also when the report was stale: the backend may have reported
        // its configuration fields (a capacity) with it.
        self.sync_registers();
    }

    fn take_backend_report(&mut self) {
        let Ok(state) = shared::read_backend(&self.page) else {
            return;
        };
        if state.generation.get() != self.generation {
            // About a queue configuration the guest has since replaced.
            return;
        }
        if state.needs_reset.get() != 0 {
            if self.device.status() & crate::mmio::status::DEVICE_NEEDS_RESET == 0 {
                log::warn!(
                    "{}: queue broken by the guest; device needs reset",
                    self.device.device().name()
                );
            }
            self.device.needs_reset();
        } else {
            self.device.used_buffers();
        }
    }
}

/// The device PD's side of the shared page: which queue states it has
/// seen, and its report back.
pub struct BackendPage {
    page: SharedBuffer,
    generation: u32,
    configured: [u32; MAX_QUEUES],
}

/// Every queue's state, as one [`BackendPage::read`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queues {
    /// Queue `n`'s state.
    pub states: [QueueState; MAX_QUEUES],
    /// Whether queue `n` was configured anew since the last read: the
    /// device starts it afresh (indices at 0, not broken).
    pub fresh: [bool; MAX_QUEUES],
}

impl BackendPage {
    /// The backend's side of `page`.
    pub fn new(page: SharedBuffer) -> Self {
        BackendPage {
            page,
            generation: 0,
            configured: [0; MAX_QUEUES],
        }
    }

    /// The generation the backend last read (and reports against).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Queue `n`'s layout as published now: `Ok(None)` if it is not ready
    /// (or the page is mid-publication); calls `restart` with every queue
    /// configured anew first. `Err` if the published layout is invalid.
    pub fn layout(
        &mut self,
        n: usize,
        mut restart: impl FnMut(usize),
    ) -> Result<Option<crate::queue::Layout>, crate::queue::QueueError> {
        let Some(queues) = self.read() else {
            return Ok(None);
        };
        for (q, fresh) in queues.fresh.iter().enumerate() {
            if *fresh {
                restart(q);
            }
        }
        queues
            .states
            .get(n)
            .and_then(|state| state.layout())
            .transpose()
    }

    /// Reads every queue's state. `None` if the page cannot be read, or
    /// the VMM was publishing while it was read (the queues' generations
    /// differ): its signal after publishing brings a consistent page.
    pub fn read(&mut self) -> Option<Queues> {
        let mut states = [QueueState::new(0, false, 0, 0, 0, 0); MAX_QUEUES];
        for (n, state) in states.iter_mut().enumerate() {
            *state = shared::read_queue_n(&self.page, n).ok()?;
        }
        let generation = states.first()?.generation.get();
        if states.iter().any(|s| s.generation.get() != generation) {
            return None;
        }
        if generation != self.generation {
            // Before anything of this generation is acted on: the VMM
            // lets this PD copy again after a device reset only once it
            // has looked (`Frontend::backend_may_copy`). Cannot fail on a
            // page that was just read.
            let _ = shared::publish_seen(&self.page, generation);
        }
        self.generation = generation;
        let mut fresh = [false; MAX_QUEUES];
        for ((state, seen), fresh) in states
            .iter()
            .zip(self.configured.iter_mut())
            .zip(fresh.iter_mut())
        {
            *fresh = state.configured.get() != *seen;
            *seen = state.configured.get();
        }
        Some(Queues { states, fresh })
    }

    /// Reports to the VMM, against the generation last read: whether the
    /// device needs a reset, chains used so far, and the device-specific
    /// configuration values (`BackendState::capacity` and `block_size`).
    /// Returns whether the page took it (so whether to signal).
    pub fn report(&self, needs_reset: bool, served: u64, value: u64, block_size: u32) -> bool {
        let state = BackendState {
            generation: self.generation.into(),
            needs_reset: u32::from(needs_reset).into(),
            served: served.into(),
            capacity: value.into(),
            block_size: block_size.into(),
            seen: self.generation.into(),
        };
        shared::publish_backend(&self.page, &state).is_ok()
    }
}

/// The driver PD's half of virtio-blk: a [`BlkBackend`] per queue
/// configuration.
pub struct BlkService<D> {
    page: BackendPage,
    disk: D,
    backend: BlkBackend,
    total: Stats,
}

impl<D: Disk> BlkService<D> {
    /// A service for the queue published in `page`, serving `disk`; it
    /// reports the disk's capacity in the page at once.
    pub fn new(page: SharedBuffer, disk: D) -> Self {
        let mut service = BlkService {
            page: BackendPage::new(page),
            disk,
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
        let Some(queues) = self.page.read() else {
            return false;
        };
        let [state, ..] = queues.states;
        if queues.fresh.first() == Some(&true) {
            self.total = self.total + core::mem::take(&mut self.backend).stats();
        }
        let layout = match state.layout() {
            None => return false,
            Some(Ok(layout)) => layout,
            Some(Err(e)) => {
                log::warn!("virtio-blk: published queue is invalid: {e}");
                return self.report(true);
            }
        };
        let result = self.backend.process(&layout, dma, &mut self.disk);
        let interrupt = self.backend.interrupt();
        settle(result, interrupt, |needs_reset| self.report(needs_reset))
    }

    fn report(&mut self, needs_reset: bool) -> bool {
        self.page.report(
            needs_reset || self.backend.is_broken(),
            self.stats().requests,
            self.disk.len() / crate::blk::SECTOR,
            self.disk.block_size(),
        )
    }
}

/// What a blk service does with one backend round: `result` is what
/// `process` returned, `interrupt` whether the driver then wanted an
/// interrupt; `report` writes the page and says whether to signal the VMM.
/// Returns whether to signal it. Used buffers the driver asked not to be
/// interrupted for still count: the report goes in the page, unsignalled.
fn settle(
    result: Result<u16, crate::queue::QueueError>,
    interrupt: bool,
    report: impl FnOnce(bool) -> bool,
) -> bool {
    match result {
        Ok(n) if !interrupt => {
            if n > 0 {
                report(false);
            }
            false
        }
        Ok(_) => report(false),
        Err(e) => {
            log::warn!("virtio-blk: queue error, device needs reset: {e}");
            report(true)
        }
    }
}

/// The device PD's half of asynchronous virtio-blk
/// ([`blk_async`](crate::blk_async)): an
/// [`AsyncBlkBackend`](crate::blk_async::AsyncBlkBackend) per queue
/// configuration over an [`AsyncDisk`](crate::blk_async::AsyncDisk), with
/// up to `N` requests in flight.
pub struct AsyncBlkService<D, const N: usize> {
    page: BackendPage,
    disk: D,
    backend: crate::blk_async::AsyncBlkBackend<N>,
    total: Stats,
}

impl<D: crate::blk_async::AsyncDisk, const N: usize> AsyncBlkService<D, N> {
    /// A service for the queue published in `page`, serving `disk`; it
    /// reports the disk's capacity in the page at once.
    pub fn new(page: SharedBuffer, disk: D) -> Self {
        let mut service = AsyncBlkService {
            page: BackendPage::new(page),
            disk,
            backend: crate::blk_async::AsyncBlkBackend::new(),
            total: Stats::default(),
        };
        service.report(false);
        service
    }

    /// Counters over all generations.
    pub fn stats(&self) -> Stats {
        self.total + self.backend.stats()
    }

    /// Guest requests in flight at the disk.
    pub fn in_flight(&self) -> usize {
        self.backend.in_flight()
    }

    /// The disk.
    pub fn disk(&mut self) -> &mut D {
        &mut self.disk
    }

    /// The VMM signalled (the guest queued requests) or the disk's driver
    /// did (requests finished): complete what finished, start what was
    /// queued. Returns whether to signal the VMM back (something was used,
    /// or the queue broke). Never waits for the disk.
    pub fn notified<M: GuestDma>(&mut self, dma: &mut M) -> bool {
        let Some(queues) = self.page.read() else {
            // Mid-publication: the VMM signals again once it is done.
            return false;
        };
        let [state, ..] = queues.states;
        if queues.fresh.first() == Some(&true) {
            // Requests of the old configuration still in flight finish
            // into the new backend, which only releases their slots.
            self.total = self.total + core::mem::take(&mut self.backend).stats();
        }
        let layout = match state.layout() {
            None => {
                self.backend.drop_completions(&mut self.disk);
                return false;
            }
            Some(Ok(layout)) => layout,
            Some(Err(e)) => {
                log::warn!("virtio-blk: published queue is invalid: {e}");
                self.backend.drop_completions(&mut self.disk);
                return self.report(true);
            }
        };
        let result = self.backend.process(&layout, dma, &mut self.disk);
        let interrupt = self.backend.interrupt();
        settle(result, interrupt, |needs_reset| self.report(needs_reset))
    }

    fn report(&mut self, needs_reset: bool) -> bool {
        self.page.report(
            needs_reset || self.backend.is_broken(),
            self.stats().requests,
            self.disk.len() / crate::blk::SECTOR,
            self.disk.block_size(),
        )
    }
}
