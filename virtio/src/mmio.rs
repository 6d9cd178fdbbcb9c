// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-mmio transport, version 2 ("virtio 1.x, non-legacy"), as the
//! VMM emulates it: a register file at a guest-physical window where every
//! guest store traps and arrives here as one [`write`](MmioDevice::write).
//! Loads either trap too and arrive as one [`read`](MmioDevice::read), or,
//! where the system description maps a *register page* read-only at the
//! window, read what [`render`](MmioDevice::render) put there.
//!
//! The device side of the status state machine lives here too (virtio 1.2,
//! §2.1 and §4.2.2): reset on a zero status write, feature negotiation
//! checked at `FEATURES_OK`, queue registers accepted only while their
//! queue is not ready, notifications only after `DRIVER_OK`.
//!
//! What a guest does wrong never panics: a register the spec does not
//! define, or an access of the wrong width or alignment, reads as 0 and is
//! ignored on write ([`Access::Ignored`] says why, so the VMM can log it
//! rate-limited).
//!
//! ```
//! use virtio::mmio::{reg, status, BlkConfig, MmioDevice, Effect};
//! let mut dev = MmioDevice::new(BlkConfig::new(2048));
//! assert_eq!(dev.read(reg::MAGIC_VALUE, 4).value(), 0x7472_6976);
//! assert_eq!(dev.read(reg::DEVICE_ID, 4).value(), 2);
//! dev.write(reg::STATUS, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER));
//! dev.write(reg::DRIVER_FEATURES_SEL, 4, 1);
//! dev.write(reg::DRIVER_FEATURES, 4, 1); // VIRTIO_F_VERSION_1 (bit 32)
//! dev.write(reg::STATUS, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK));
//! assert_ne!(dev.read(reg::STATUS, 4).value() as u32 & status::FEATURES_OK, 0);
//! ```

use core::fmt;

use crate::queue::Layout;

/// `MagicValue`: "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The register layout version this device implements (non-legacy).
pub const VERSION: u32 = 2;
/// `VendorID`: "GRAM", little-endian.
pub const VENDOR_ID: u32 = 0x4d41_5247;
/// The size of the register window, config space included.
pub const WINDOW_SIZE: u64 = 0x200;

/// Register offsets (virtio 1.2, §4.2.2).
pub mod reg {
    /// R: [`MAGIC`](super::MAGIC).
    pub const MAGIC_VALUE: u64 = 0x000;
    /// R: 2.
    pub const VERSION: u64 = 0x004;
    /// R: the device type (2 = block).
    pub const DEVICE_ID: u64 = 0x008;
    /// R.
    pub const VENDOR_ID: u64 = 0x00c;
    /// R: 32 feature bits, selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// W.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// W: 32 feature bits, selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// W.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// W: which queue the queue registers address.
    pub const QUEUE_SEL: u64 = 0x030;
    /// R: the largest queue size, 0 for a queue that does not exist.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// W: the queue size the driver chose.
    pub const QUEUE_NUM: u64 = 0x038;
    /// RW: 1 once the driver has set the queue up.
    pub const QUEUE_READY: u64 = 0x044;
    /// W: the index of a queue with new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// R: bit 0 used buffer, bit 1 configuration change.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// W: clears the written bits of `INTERRUPT_STATUS`.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// RW: the device status ([`status`](super::status)); 0 resets.
    pub const STATUS: u64 = 0x070;
    /// W: descriptor table gpa, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// W: descriptor table gpa, high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// W: available ring gpa, low.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// W: available ring gpa, high.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// W: used ring gpa, low.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// W: used ring gpa, high.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// R: changes whenever the config space changes.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// The device-specific configuration space starts here.
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits (virtio 1.2, §2.1).
pub mod status {
    /// The guest has found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: queues may be notified.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete (set by the driver, kept by the
    /// device only if it accepts the features).
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// `InterruptStatus` bit: a used ring was updated.
pub const INT_USED_BUFFER: u32 = 1;
/// `InterruptStatus` bit: the configuration (or `DEVICE_NEEDS_RESET`) changed.
pub const INT_CONFIG_CHANGE: u32 = 2;

/// Feature bits shared by every device type.
pub mod feature {
    /// `VIRTIO_F_VERSION_1`: the non-legacy interface. Required here.
    pub const VERSION_1: u64 = 1 << 32;
    /// `VIRTIO_RING_F_EVENT_IDX` (§2.7.7, §2.7.10): the driver says in the
    /// available ring's `used_event` after which used index it wants an
    /// interrupt, the device in the used ring's `avail_event` after which
    /// available index it wants a notification. Offered by the device
    /// types whose backends honour it (virtio-blk, virtio-net).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
}

/// virtio-blk's feature bits and configuration (virtio 1.2, §5.2).
pub mod blk_feature {
    /// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` is valid.
    pub const SEG_MAX: u64 = 1 << 2;
    /// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` is valid.
    pub const BLK_SIZE: u64 = 1 << 6;
    /// `VIRTIO_BLK_F_FLUSH`: the flush command exists.
    pub const FLUSH: u64 = 1 << 9;
}

/// Largest queue this device offers; the queue layer owns the limit.
pub use crate::queue::QUEUE_SIZE_MAX;

/// What a device type adds to the transport: its id, features, queues and
/// configuration space.
pub trait DeviceType {
    /// The virtio device id (2 for block).
    fn device_id(&self) -> u32;
    /// Device-specific feature bits; [`feature::VERSION_1`] is added.
    fn features(&self) -> u64;
    /// Number of virtqueues (at most [`MAX_QUEUES`]).
    fn queues(&self) -> usize;
    /// Reads `width` bytes of the configuration space at `offset`, or
    /// `None` if that is not a field the device has.
    fn config_read(&self, offset: u64, width: u8) -> Option<u64>;
    /// The device's name in log lines.
    fn name(&self) -> &'static str {
        "virtio"
    }
    /// The configuration fields the backend PD owns and reports in the
    /// shared page (`BackendState::capacity` and `block_size`), if this
    /// device has them: virtio-blk's capacity and block size. The VMM
    /// refreshes them before a guest reads the configuration space.
    fn backend_value(&self) -> Option<(u64, u32)> {
        None
    }
    /// Sets the fields [`backend_value`](Self::backend_value) reads (a
    /// block size of 0 means 512).
    fn set_backend_value(&mut self, value: u64, block_size: u32) {
        let _ = (value, block_size);
    }
}

/// The most virtqueues one device can have here.
pub const MAX_QUEUES: usize = 2;

/// virtio-blk's configuration space: capacity, `seg_max`, `blk_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most data segments in one request (`VIRTIO_BLK_F_SEG_MAX`).
    pub seg_max: u32,
    /// Block size in bytes (`VIRTIO_BLK_F_BLK_SIZE`): the disk's, which
    /// the backend reports.
    pub blk_size: u32,
}

impl BlkConfig {
    /// A disk of `capacity` 512-byte sectors.
    pub const fn new(capacity: u64) -> Self {
        BlkConfig {
            capacity,
            seg_max: crate::blk::SEG_MAX as u32,
            blk_size: crate::blk::SECTOR as u32,
        }
    }

    /// The configuration space as the guest reads it (little-endian):
    /// `capacity` at 0, `size_max` at 8 (0: no limit offered), `seg_max` at
    /// 12, geometry at 16 (0), `blk_size` at 20.
    fn bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        b[12..16].copy_from_slice(&self.seg_max.to_le_bytes());
        b[20..24].copy_from_slice(&self.blk_size.to_le_bytes());
        b
    }
}

impl DeviceType for BlkConfig {
    fn device_id(&self) -> u32 {
        2
    }
    fn features(&self) -> u64 {
        blk_feature::SEG_MAX | blk_feature::BLK_SIZE | blk_feature::FLUSH | feature::RING_EVENT_IDX
    }
    fn queues(&self) -> usize {
        1
    }
    fn name(&self) -> &'static str {
        "virtio-blk"
    }
    fn backend_value(&self) -> Option<(u64, u32)> {
        Some((self.capacity, self.blk_size))
    }
    fn set_backend_value(&mut self, value: u64, block_size: u32) {
        self.capacity = value;
        self.blk_size = match block_size {
            0 => crate::blk::SECTOR as u32,
            n => n,
        };
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

/// One virtqueue's registers, as the driver set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueRegs {
    /// `QueueNum`: the size the driver chose.
    pub size: u16,
    /// `QueueReady`.
    pub ready: bool,
    /// Descriptor table gpa.
    pub desc: u64,
    /// Available ("driver") ring gpa.
    pub avail: u64,
    /// Used ("device") ring gpa.
    pub used: u64,
}

/// What an access did, beyond its value: what the VMM glue must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing for the VMM to do.
    None,
    /// The driver notified queue `n` (after `DRIVER_OK`, on a ready queue).
    Notify(u16),
    /// The queue configuration changed: the device was reset, or a queue
    /// became ready. The VMM republishes it to the backend.
    QueuesChanged,
}

/// Why an access was ignored (it reads as 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// No register at this offset (or not readable / not writable).
    Undefined,
    /// Wrong width or misaligned for this register.
    BadWidth,
    /// A queue register written while its queue is ready, or a feature
    /// write after `FEATURES_OK`: the spec forbids it, the device ignores it.
    NotNow,
    /// `QueueReady` set with a bad size or misaligned or overflowing rings.
    BadQueue,
    /// A status write that clears bits without resetting.
    BadStatus,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ignored::Undefined => "undefined register",
            Ignored::BadWidth => "wrong access width or alignment",
            Ignored::NotNow => "register not writable in this state",
            Ignored::BadQueue => "queue setup is invalid",
            Ignored::BadStatus => "status write clears bits",
        })
    }
}

/// The outcome of one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Done: the value read (0 for writes) and what the VMM must act on.
    Done(u64, Effect),
    /// Ignored: reads as 0, writes change nothing.
    Ignored(Ignored),
}

impl Access {
    /// The value the guest gets: the read value, or 0.
    pub fn value(&self) -> u64 {
        match self {
            Access::Done(v, _) => *v,
            Access::Ignored(_) => 0,
        }
    }

    /// What the VMM must act on.
    pub fn effect(&self) -> Effect {
        match self {
            Access::Done(_, e) => *e,
            Access::Ignored(_) => Effect::None,
        }
    }
}

/// One virtio-mmio device: the transport state plus a [`DeviceType`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioDevice<D> {
    device: D,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: [QueueRegs; MAX_QUEUES],
    interrupt_status: u32,
    config_generation: u32,
}

impl<D: DeviceType> MmioDevice<D> {
    /// A device in its reset state.
    pub fn new(device: D) -> Self {
        MmioDevice {
            device,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: [QueueRegs::default(); MAX_QUEUES],
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    /// The device type.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device type, to update its configuration (for example a
    /// capacity the backend reports); bumps `ConfigGeneration` so a driver
    /// reading the configuration sees that it changed.
    pub fn device_mut(&mut self) -> &mut D {
        self.config_generation = self.config_generation.wrapping_add(1);
        &mut self.device
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The features the driver accepted (valid once `FEATURES_OK` is set).
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Whether the driver accepted `VIRTIO_RING_F_EVENT_IDX` and the
    /// device offered it (a driver that writes the bit to a device that
    /// does not offer it gets no `FEATURES_OK`, and its queues are worked
    /// without event indices all the same).
    pub fn event_idx(&self) -> bool {
        self.driver_features & self.device_features() & feature::RING_EVENT_IDX != 0
    }

    /// All features offered.
    pub fn device_features(&self) -> u64 {
        self.device.features() | feature::VERSION_1
    }

    /// Queue `n`'s registers, if the device has that queue.
    pub fn queue(&self, n: usize) -> Option<&QueueRegs> {
        self.queues.get(n).filter(|_| n < self.queue_count())
    }

    /// The `InterruptStatus` register.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// The backend used buffers: sets the used-buffer interrupt bit.
    pub fn used_buffers(&mut self) {
        self.interrupt_status |= INT_USED_BUFFER;
    }

    /// The backend cannot go on without a reset (virtio 1.2, §2.1.2): sets
    /// `DEVICE_NEEDS_RESET` whenever the driver has started (any status
    /// bit set), and the configuration-change interrupt bit if the driver
    /// is running. A queue refused before `DRIVER_OK` (rings outside RAM,
    /// found when the queue became ready) is reported this way too: the
    /// bit stays, and the interrupt follows when the driver sets
    /// `DRIVER_OK`. In the reset state (status 0) there is nothing to
    /// report into.
    ///
    /// ```
    /// use virtio::mmio::{reg, status, BlkConfig, MmioDevice, INT_CONFIG_CHANGE};
    /// let mut dev = MmioDevice::new(BlkConfig::new(8));
    /// dev.write(reg::STATUS, 4, u64::from(status::ACKNOWLEDGE));
    /// dev.needs_reset();
    /// assert_ne!(dev.status() & status::DEVICE_NEEDS_RESET, 0);
    /// assert_eq!(dev.interrupt_status() & INT_CONFIG_CHANGE, 0);
    /// ```
    pub fn needs_reset(&mut self) {
        if self.status == 0 {
            return;
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        if self.status & status::DRIVER_OK != 0 {
            self.interrupt_status |= INT_CONFIG_CHANGE;
        }
    }

    fn queue_count(&self) -> usize {
        self.device.queues().min(MAX_QUEUES)
    }

    /// Back to the state of [`new`](Self::new), keeping the device type
    /// and the configuration generation.
    fn reset(&mut self) {
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.queues = [QueueRegs::default(); MAX_QUEUES];
        self.interrupt_status = 0;
    }

    fn selected_queue(&mut self) -> Option<&mut QueueRegs> {
        let n = self.queue_sel as usize;
        if n < self.queue_count() {
            self.queues.get_mut(n)
        } else {
            None
        }
    }

    /// A guest read of `width` bytes at `offset` into the window.
    pub fn read(&self, offset: u64, width: u8) -> Access {
        if offset >= reg::CONFIG {
            if !config_width_ok(offset, width) {
                return Access::Ignored(Ignored::BadWidth);
            }
            return match self.device.config_read(offset - reg::CONFIG, width) {
                Some(v) => Access::Done(v, Effect::None),
                None => Access::Ignored(Ignored::Undefined),
            };
        }
        if !is_register(offset) {
            return Access::Ignored(Ignored::Undefined);
        }
        if width != 4 || offset % 4 != 0 {
            return Access::Ignored(Ignored::BadWidth);
        }
        let queue = self.queues.get(self.queue_sel as usize).copied();
        let queue_exists = (self.queue_sel as usize) < self.queue_count();
        let value: u32 = match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX if queue_exists => u32::from(QUEUE_SIZE_MAX),
            reg::QUEUE_NUM_MAX => 0,
            reg::QUEUE_READY => u32::from(queue_exists && queue.is_some_and(|q| q.ready)),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => return Access::Ignored(Ignored::Undefined),
        };
        Access::Done(u64::from(value), Effect::None)
    }

    /// The register window as the guest's loads would read it, for a
    /// read-only page the guest maps at the window (a *register page*):
    /// with it, loads do not trap at all and only stores reach
    /// [`write`](Self::write). Every readable register holds what
    /// [`read`](Self::read) returns for a 4-byte load; the configuration
    /// space holds its bytes (so a 1-, 2-, 4- or 8-byte load of a field
    /// reads what `read` returns for it); everything else is 0.
    ///
    /// The window must be rendered again after every change of state: a
    /// trapped store, a used-buffer or reset report from the backend, a
    /// configuration change. [`Frontend`](crate::device::Frontend) does.
    /// O(the window): 64 register slots and the configuration space up to
    /// its first four-byte word with no field (every configuration space
    /// here is contiguous from offset 0).
    ///
    /// ```
    /// use virtio::mmio::{reg, BlkConfig, MmioDevice, WINDOW_SIZE};
    /// let dev = MmioDevice::new(BlkConfig::new(2048));
    /// let mut window = [0u8; WINDOW_SIZE as usize];
    /// dev.render(&mut window);
    /// assert_eq!(window[..4], 0x7472_6976u32.to_le_bytes()); // "virt"
    /// assert_eq!(window[0x100..0x108], 2048u64.to_le_bytes()); // capacity
    /// ```
    pub fn render(&self, window: &mut [u8; WINDOW_SIZE as usize]) {
        window.fill(0);
        let (registers, config) = window.split_at_mut(reg::CONFIG as usize);
        for (offset, word) in (0..reg::CONFIG)
            .step_by(4)
            .zip(registers.chunks_exact_mut(4))
        {
            if let Access::Done(value, _) = self.read(offset, 4) {
                word.copy_from_slice(&(value as u32).to_le_bytes());
            }
        }
        for (offset, word) in (0..).step_by(4).zip(config.chunks_exact_mut(4)) {
            let mut any = false;
            for (byte_offset, byte) in (offset..).zip(word.iter_mut()) {
                if let Some(value) = self.device.config_read(byte_offset, 1) {
                    *byte = value as u8;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }

    /// A guest write of `width` bytes of `value` at `offset`.
    pub fn write(&mut self, offset: u64, width: u8, value: u64) -> Access {
        if offset >= reg::CONFIG {
            // Every configuration space here is read-only (virtio-blk's
            // fields, the console's, which this device does not let the
            // driver write: no EMERG_WRITE).
            return Access::Ignored(Ignored::Undefined);
        }
        if !is_register(offset) {
            return Access::Ignored(Ignored::Undefined);
        }
        if width != 4 || offset % 4 != 0 {
            return Access::Ignored(Ignored::BadWidth);
        }
        let value = value as u32;
        let features_open = self.status & status::FEATURES_OK == 0;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES if features_open => match self.driver_features_sel {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value)
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                }
                // No feature bits above 63 exist; the write means nothing.
                _ => {}
            },
            reg::DRIVER_FEATURES => return Access::Ignored(Ignored::NotNow),
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => return self.queue_write(|q| q.size = value as u16, value <= 0xffff),
            reg::QUEUE_DESC_LOW => return self.queue_write(|q| set_low(&mut q.desc, value), true),
            reg::QUEUE_DESC_HIGH => {
                return self.queue_write(|q| set_high(&mut q.desc, value), true)
            }
            reg::QUEUE_DRIVER_LOW => {
                return self.queue_write(|q| set_low(&mut q.avail, value), true)
            }
            reg::QUEUE_DRIVER_HIGH => {
                return self.queue_write(|q| set_high(&mut q.avail, value), true)
            }
            reg::QUEUE_DEVICE_LOW => {
                return self.queue_write(|q| set_low(&mut q.used, value), true)
            }
            reg::QUEUE_DEVICE_HIGH => {
                return self.queue_write(|q| set_high(&mut q.used, value), true)
            }
            reg::QUEUE_READY => return self.queue_ready(value),
            reg::QUEUE_NOTIFY => return self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => return self.status_write(value),
            _ => return Access::Ignored(Ignored::Undefined),
        }
        Access::Done(0, Effect::None)
    }

    fn queue_write(&mut self, set: impl FnOnce(&mut QueueRegs), valid: bool) -> Access {
        match self.selected_queue() {
            None => Access::Ignored(Ignored::Undefined),
            Some(q) if q.ready => Access::Ignored(Ignored::NotNow),
            Some(_) if !valid => Access::Ignored(Ignored::BadQueue),
            Some(q) => {
                set(q);
                Access::Done(0, Effect::None)
            }
        }
    }

    fn queue_ready(&mut self, value: u32) -> Access {
        let Some(q) = self.selected_queue() else {
            return Access::Ignored(Ignored::Undefined);
        };
        match value {
            0 => {
                let was = q.ready;
                q.ready = false;
                let effect = if was {
                    Effect::QueuesChanged
                } else {
                    Effect::None
                };
                Access::Done(0, effect)
            }
            1 if q.ready => Access::Done(0, Effect::None),
            1 => {
                let layout = Layout::new(q.size, q.desc, q.avail, q.used);
                if layout.is_err() || q.size > QUEUE_SIZE_MAX {
                    return Access::Ignored(Ignored::BadQueue);
                }
                q.ready = true;
                Access::Done(0, Effect::QueuesChanged)
            }
            _ => Access::Ignored(Ignored::BadQueue),
        }
    }

    fn notify(&mut self, value: u32) -> Access {
        let running =
            self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0;
        let ready = (value as usize) < self.queue_count()
            && self.queues.get(value as usize).is_some_and(|q| q.ready);
        if running && ready {
            Access::Done(0, Effect::Notify(value as u16))
        } else {
            Access::Ignored(Ignored::NotNow)
        }
    }

    fn status_write(&mut self, value: u32) -> Access {
        if value == 0 {
            self.reset();
            return Access::Done(0, Effect::QueuesChanged);
        }
        // The driver only ever adds bits (§3.1.1); DEVICE_NEEDS_RESET is
        // the device's own and survives until a reset.
        let kept = self.status & status::DEVICE_NEEDS_RESET;
        let driver_bits = self.status & !status::DEVICE_NEEDS_RESET;
        if value & driver_bits != driver_bits {
            return Access::Ignored(Ignored::BadStatus);
        }
        let mut new = (value & !status::DEVICE_NEEDS_RESET) | kept;
        let newly = new & !self.status;
        if newly & status::FEATURES_OK != 0 && !self.features_acceptable() {
            // §3.1.1 step 6: the device leaves FEATURES_OK clear.
            new &= !status::FEATURES_OK;
        }
        if newly & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            // DRIVER_OK without negotiated features: refuse to run.
            new &= !status::DRIVER_OK;
        }
        if new & status::DRIVER_OK != 0 && newly & status::DRIVER_OK != 0 && kept != 0 {
            // The device needed a reset before the driver ran (§2.1.2): the
            // notification is due now that DRIVER_OK is set.
            self.interrupt_status |= INT_CONFIG_CHANGE;
        }
        self.status = new;
        Access::Done(0, Effect::None)
    }

    fn features_acceptable(&self) -> bool {
        let offered = self.device_features();
        self.driver_features & !offered == 0 && self.driver_features & feature::VERSION_1 != 0
    }
}

fn is_register(offset: u64) -> bool {
    matches!(
        offset,
        reg::MAGIC_VALUE
            | reg::VERSION
            | reg::DEVICE_ID
            | reg::VENDOR_ID
            | reg::DEVICE_FEATURES
            | reg::DEVICE_FEATURES_SEL
            | reg::DRIVER_FEATURES
            | reg::DRIVER_FEATURES_SEL
            | reg::QUEUE_SEL
            | reg::QUEUE_NUM_MAX
            | reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_NOTIFY
            | reg::INTERRUPT_STATUS
            | reg::INTERRUPT_ACK
            | reg::STATUS
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH
            | reg::CONFIG_GENERATION
    )
}

/// Config-space accesses: 1, 2, 4 or 8 bytes, naturally aligned.
fn config_width_ok(offset: u64, width: u8) -> bool {
    matches!(width, 1 | 2 | 4 | 8) && offset % u64::from(width) == 0
}

fn set_low(field: &mut u64, value: u32) {
    *field = (*field & !0xffff_ffff) | u64::from(value);
}

fn set_high(field: &mut u64, value: u32) {
    *field = (*field & 0xffff_ffff) | (u64::from(value) << 32);
}
