// SPDX-License-Identifier: BSD-2-Clause
//! A small virtio-blk driver and the test suite the demo guest runs with it.
//!
//! The driver is written against [`Platform`], so the same code runs in the
//! bare-metal guest (`src/main.rs`: MMIO through real loads and stores that
//! trap to the VMM, memory through volatile accesses) and in the host test
//! (`tests/host.rs`: the VMM's and the driver PD's library code called
//! directly). It follows virtio 1.2 for a virtio-mmio version 2 device:
//! probe, reset, feature negotiation with `VIRTIO_F_VERSION_1`, one split
//! queue in the guest's own RAM, requests submitted one at a time, the used
//! ring polled (no interrupts).
//!
//! [`run`] also misbehaves on purpose, as a hostile guest would, and checks
//! that the device answers as it must and still works afterwards.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use core::fmt::Write;

use virtio::blk::{req, status as blk_status, ReqHeader};
use virtio::mmio::{feature, reg, status};
use virtio::queue::{flags, Desc};
use zerocopy::IntoBytes;

/// What the driver needs from where it runs.
pub trait Platform {
    /// A load of `width` bytes at `offset` into the device window.
    fn mmio_read(&mut self, offset: u64, width: u8) -> u64;
    /// A store of `width` bytes at `offset` into the device window.
    fn mmio_write(&mut self, offset: u64, width: u8, value: u64);
    /// Reads guest memory.
    fn read(&mut self, gpa: u64, dst: &mut [u8]);
    /// Writes guest memory.
    fn write(&mut self, gpa: u64, src: &[u8]);
    /// Orders earlier memory accesses before later ones (a `dmb`).
    fn fence(&mut self);
    /// A free-running counter, for timing.
    fn now(&mut self) -> u64;
    /// The counter's frequency in Hz.
    fn frequency(&mut self) -> u64;
    /// Prints a line.
    fn print(&mut self, line: &str);
}

/// Queue size the driver uses.
pub const QUEUE_SIZE: u16 = 16;

/// Where the driver puts things, as offsets into its DMA area (the part of
/// guest RAM the VMM lets the device PD touch). Needs [`DMA_LEN`] bytes.
mod at {
    pub const DESC: u64 = 0x0;
    pub const AVAIL: u64 = 0x100;
    pub const USED: u64 = 0x200;
    pub const HEADER: u64 = 0x1000;
    pub const STATUS: u64 = 0x1800;
    pub const DATA: u64 = 0x10000;
    pub const BACK: u64 = 0x20_0000;
}

/// Size of the DMA area the suite needs: the queue, then two 1 MiB
/// buffers (at 64 KiB and at 2 MiB).
pub const DMA_LEN: u64 = at::BACK + (1 << 20);

/// One buffer of a request: gpa, length, device-writable.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    /// Guest-physical address.
    pub gpa: u64,
    /// Length.
    pub len: u32,
    /// The device writes it.
    pub writable: bool,
}

/// Why a request did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The used ring never moved.
    Timeout,
    /// The device set `DEVICE_NEEDS_RESET` instead.
    NeedsReset,
}

/// The driver for one virtio-blk device.
pub struct Blk<'p, P> {
    p: &'p mut P,
    dma: u64,
    avail_idx: u16,
    used_seen: u16,
    /// Capacity in sectors, after [`init`](Self::init).
    pub capacity: u64,
}

/// Polls before a request counts as lost.
const POLLS: u32 = 1 << 24;

impl<'p, P: Platform> Blk<'p, P> {
    /// A driver whose queue and buffers live in the DMA area at `dma`.
    pub fn new(p: &'p mut P, dma: u64) -> Self {
        Blk {
            p,
            dma,
            avail_idx: 0,
            used_seen: 0,
            capacity: 0,
        }
    }

    fn r32(&mut self, offset: u64) -> u32 {
        self.p.mmio_read(offset, 4) as u32
    }

    fn w32(&mut self, offset: u64, value: u32) {
        self.p.mmio_write(offset, 4, u64::from(value))
    }

    /// Probes: magic, version 2, device id 2.
    pub fn probe(&mut self) -> (bool, bool, bool) {
        (
            self.r32(reg::MAGIC_VALUE) == virtio::mmio::MAGIC,
            self.r32(reg::VERSION) == 2,
            self.r32(reg::DEVICE_ID) == 2,
        )
    }

    /// Resets the device and brings it up (§3.1.1): features, queue 0,
    /// `DRIVER_OK`. Returns whether the device accepted every step.
    pub fn init(&mut self) -> bool {
        self.w32(reg::STATUS, 0);
        self.w32(reg::STATUS, status::ACKNOWLEDGE);
        self.w32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.w32(reg::DEVICE_FEATURES_SEL, 1);
        let high = self.r32(reg::DEVICE_FEATURES);
        if u64::from(high) << 32 & feature::VERSION_1 == 0 {
            return false;
        }
        self.w32(reg::DRIVER_FEATURES_SEL, 0);
        self.w32(reg::DRIVER_FEATURES, 0);
        self.w32(reg::DRIVER_FEATURES_SEL, 1);
        self.w32(reg::DRIVER_FEATURES, (feature::VERSION_1 >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.w32(reg::STATUS, s);
        if self.r32(reg::STATUS) & status::FEATURES_OK == 0 {
            return false;
        }
        self.w32(reg::QUEUE_SEL, 0);
        if self.r32(reg::QUEUE_NUM_MAX) < u32::from(QUEUE_SIZE) || self.r32(reg::QUEUE_READY) != 0 {
            return false;
        }
        // Fresh rings: zeroed indices.
        let zeros = [0u8; 0x300];
        self.p.write(self.dma + at::DESC, &zeros);
        self.avail_idx = 0;
        self.used_seen = 0;
        self.w32(reg::QUEUE_NUM, u32::from(QUEUE_SIZE));
        let parts = [
            (reg::QUEUE_DESC_LOW, at::DESC),
            (reg::QUEUE_DRIVER_LOW, at::AVAIL),
            (reg::QUEUE_DEVICE_LOW, at::USED),
        ];
        for (low, offset) in parts {
            let gpa = self.dma + offset;
            self.w32(low, gpa as u32);
            self.w32(low + 4, (gpa >> 32) as u32);
        }
        self.w32(reg::QUEUE_READY, 1);
        if self.r32(reg::QUEUE_READY) != 1 {
            return false;
        }
        self.w32(reg::STATUS, s | status::DRIVER_OK);
        self.capacity =
            self.p.mmio_read(reg::CONFIG, 4) | (self.p.mmio_read(reg::CONFIG + 4, 4) << 32);
        self.r32(reg::STATUS) & status::DRIVER_OK != 0
    }

    /// Writes `descs` as one chain starting at descriptor 0 with
    /// `next` links taken from `links` (normally `i + 1`), publishes it,
    /// notifies, and polls the used ring. Returns the used length.
    pub fn submit_linked(&mut self, descs: &[Buf], links: &[u16]) -> Result<u32, Wait> {
        for (i, b) in descs.iter().enumerate() {
            let last = i + 1 == descs.len();
            let mut f = if b.writable { flags::WRITE } else { 0 };
            let next = links.get(i).copied().unwrap_or(i as u16 + 1);
            if !last || links.get(i).is_some() {
                f |= flags::NEXT;
            }
            let d = Desc::new(b.gpa, b.len, f, next);
            self.p
                .write(self.dma + at::DESC + 16 * i as u64, d.as_bytes());
        }
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        self.p
            .write(self.dma + at::AVAIL + 4 + 2 * slot, &0u16.to_le_bytes());
        self.p.fence();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.p
            .write(self.dma + at::AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.p.fence();
        self.w32(reg::QUEUE_NOTIFY, 0);
        for _ in 0..POLLS {
            let mut idx = [0u8; 2];
            self.p.read(self.dma + at::USED + 2, &mut idx);
            if u16::from_le_bytes(idx) != self.used_seen {
                self.p.fence();
                let slot = u64::from(self.used_seen % QUEUE_SIZE);
                self.used_seen = self.used_seen.wrapping_add(1);
                let mut elem = [0u8; 8];
                self.p.read(self.dma + at::USED + 4 + 8 * slot, &mut elem);
                return Ok(u32::from_le_bytes([elem[4], elem[5], elem[6], elem[7]]));
            }
            if self.r32_status_needs_reset() {
                return Err(Wait::NeedsReset);
            }
        }
        Err(Wait::Timeout)
    }

    fn r32_status_needs_reset(&mut self) -> bool {
        self.r32(reg::STATUS) & status::DEVICE_NEEDS_RESET != 0
    }

    /// A block request: header, `data` buffers, status byte. Returns the
    /// status byte (or `0xff` if the request never completed).
    pub fn request(&mut self, kind: u32, sector: u64, data: &[Buf]) -> u8 {
        let header = ReqHeader {
            kind: kind.into(),
            reserved: 0.into(),
            sector: sector.into(),
        };
        self.p.write(self.dma + at::HEADER, header.as_bytes());
        self.p.write(self.dma + at::STATUS, &[0xff]);
        let mut descs = [Buf {
            gpa: 0,
            len: 0,
            writable: false,
        }; 8];
        descs[0] = Buf {
            gpa: self.dma + at::HEADER,
            len: 16,
            writable: false,
        };
        let n = data.len().min(6);
        descs[1..1 + n].copy_from_slice(&data[..n]);
        descs[1 + n] = Buf {
            gpa: self.dma + at::STATUS,
            len: 1,
            writable: true,
        };
        if self.submit_linked(&descs[..n + 2], &[]).is_err() {
            return 0xff;
        }
        let mut s = [0u8];
        self.p.read(self.dma + at::STATUS, &mut s);
        s[0]
    }

    /// The DMA area's data buffer `n` (0 or 1), `len` bytes from `offset`.
    pub fn buf(&self, n: u64, offset: u64, len: u32, writable: bool) -> Buf {
        let base = if n == 0 { at::DATA } else { at::BACK };
        Buf {
            gpa: self.dma + base + offset,
            len,
            writable,
        }
    }

    /// The platform.
    pub fn platform(&mut self) -> &mut P {
        self.p
    }
}

/// The byte pattern of `seed` at position `i`.
pub fn pattern(seed: u8, i: u64) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 9) as u8)
}

fn fill_pattern<P: Platform>(p: &mut P, gpa: u64, len: u64, seed: u8) {
    let mut chunk = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(512);
        for (k, b) in chunk[..n as usize].iter_mut().enumerate() {
            *b = pattern(seed, done + k as u64);
        }
        p.write(gpa + done, &chunk[..n as usize]);
        done += n;
    }
}

fn is_pattern<P: Platform>(p: &mut P, gpa: u64, len: u64, seed: u8) -> bool {
    let mut chunk = [0u8; 512];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(512);
        p.read(gpa + done, &mut chunk[..n as usize]);
        if chunk[..n as usize]
            .iter()
            .enumerate()
            .any(|(k, b)| *b != pattern(seed, done + k as u64))
        {
            return false;
        }
        done += n;
    }
    true
}

/// A line of at most 128 bytes, formatted without allocation.
pub struct Line {
    bytes: [u8; 128],
    len: usize,
}

impl Line {
    /// An empty line.
    pub fn new() -> Self {
        Line {
            bytes: [0; 128],
            len: 0,
        }
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The suite's outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Checks passed.
    pub passed: u32,
    /// Checks run.
    pub total: u32,
    /// Counter ticks to read 1 MiB through the device.
    pub read_1mib_ticks: u64,
}

/// Where the suite runs: the DMA area, the device window, and two
/// addresses it must not be able to use (in guest RAM but outside the
/// device's window, and outside guest RAM).
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// The DMA area ([`DMA_LEN`] bytes).
    pub dma: u64,
    /// A guest RAM address outside the device PD's window.
    pub outside_window: u64,
    /// An address that is not guest RAM.
    pub not_ram: u64,
}

/// Runs the suite: an honest driver's life, then a hostile guest's tricks,
/// each followed by a check that the device still works.
pub fn run<P: Platform>(p: &mut P, setup: Setup) -> Summary {
    let (mut passed, mut total) = (0, 0);
    let mut blk = Blk::new(p, setup.dma);
    let mut check = |blk: &mut Blk<'_, P>, name: &str, ok: bool| {
        total += 1;
        passed += u32::from(ok);
        let mut line = Line::new();
        let _ = write!(line, "check {}: {name}", if ok { "ok" } else { "FAILED" });
        blk.platform().print(line.as_str());
    };

    let (magic, version, id) = blk.probe();
    check(&mut blk, "magic value", magic);
    check(&mut blk, "version 2", version);
    check(&mut blk, "device id 2 (block)", id);
    let up = blk.init();
    check(&mut blk, "features negotiated, queue ready, DRIVER_OK", up);
    let ok = blk.capacity == 2048;
    check(&mut blk, "capacity is 1 MiB", ok);

    // Honest I/O: 4 KiB out and back.
    fill_pattern(blk.platform(), setup.dma + at::DATA, 4096, 7);
    let out = blk.buf(0, 0, 4096, false);
    let ok = blk.request(req::OUT, 8, &[out]) == blk_status::OK;
    check(&mut blk, "write 8 sectors", ok);
    let back = blk.buf(1, 0, 4096, true);
    let ok = blk.request(req::IN, 8, &[back]) == blk_status::OK
        && is_pattern(blk.platform(), setup.dma + at::BACK, 4096, 7);
    check(&mut blk, "read them back", ok);

    // Scatter-gather: one request over three buffers of odd sizes.
    fill_pattern(blk.platform(), setup.dma + at::DATA, 3 * 1024, 9);
    let parts = [
        blk.buf(0, 0, 512, false),
        blk.buf(0, 512, 1536, false),
        blk.buf(0, 2048, 1024, false),
    ];
    let wrote = blk.request(req::OUT, 100, &parts) == blk_status::OK;
    let parts = [blk.buf(1, 0, 1024, true), blk.buf(1, 1024, 2048, true)];
    let ok = wrote
        && blk.request(req::IN, 100, &parts) == blk_status::OK
        && is_pattern(blk.platform(), setup.dma + at::BACK, 3 * 1024, 9);
    check(&mut blk, "scatter-gather over 3 + 2 buffers", ok);

    // The whole disk: 1 MiB out, 1 MiB back (timed).
    fill_pattern(blk.platform(), setup.dma + at::DATA, 1 << 20, 3);
    let all = blk.buf(0, 0, 1 << 20, false);
    let wrote = blk.request(req::OUT, 0, &[all]) == blk_status::OK;
    let all = blk.buf(1, 0, 1 << 20, true);
    let start = blk.platform().now();
    let read = blk.request(req::IN, 0, &[all]) == blk_status::OK;
    let read_1mib_ticks = blk.platform().now().wrapping_sub(start);
    let ok = wrote && read && is_pattern(blk.platform(), setup.dma + at::BACK, 1 << 20, 3);
    check(&mut blk, "1 MiB out and back", ok);

    let id = blk.buf(1, 0, 20, true);
    let ok = blk.request(req::GET_ID, 0, &[id]) == blk_status::OK && {
        let mut got = [0u8; 9];
        blk.platform().read(setup.dma + at::BACK, &mut got);
        &got == b"guest-ram"
    };
    check(&mut blk, "GET_ID", ok);
    let ok = blk.request(req::FLUSH, 0, &[]) == blk_status::OK;
    check(&mut blk, "FLUSH", ok);

    // Hostile requests: each fails alone, the next honest one works.
    let sector_ok = |blk: &mut Blk<'_, P>| {
        // Sector 0 holds the start of the 1 MiB pattern.
        let b = blk.buf(1, 0, 512, true);
        blk.request(req::IN, 0, &[b]) == blk_status::OK
            && is_pattern(blk.platform(), setup.dma + at::BACK, 512, 3)
    };
    let bad = Buf {
        gpa: setup.not_ram,
        len: 512,
        writable: true,
    };
    let ok = blk.request(req::IN, 0, &[bad]) == blk_status::IOERR && sector_ok(&mut blk);
    check(&mut blk, "buffer outside guest RAM: IOERR, then fine", ok);
    let bad = Buf {
        gpa: setup.outside_window,
        len: 512,
        writable: false,
    };
    let ok = blk.request(req::OUT, 0, &[bad]) == blk_status::IOERR && sector_ok(&mut blk);
    check(
        &mut blk,
        "buffer outside the driver's window: IOERR, then fine",
        ok,
    );
    let b = blk.buf(1, 0, 512, true);
    let ok = blk.request(req::IN, 2048, &[b]) == blk_status::IOERR && sector_ok(&mut blk);
    check(&mut blk, "sector past the end: IOERR, then fine", ok);
    let b = blk.buf(1, 0, 512, true);
    let ok = blk.request(req::IN, u64::MAX / 256, &[b]) == blk_status::IOERR && sector_ok(&mut blk);
    check(&mut blk, "sector * 512 overflows: IOERR, then fine", ok);
    let bad = Buf {
        gpa: u64::MAX - 0xff,
        len: 0x1000,
        writable: true,
    };
    let ok = blk.request(req::IN, 0, &[bad]) == blk_status::IOERR && sector_ok(&mut blk);
    check(
        &mut blk,
        "buffer address + length overflows: IOERR, then fine",
        ok,
    );
    let b = blk.buf(1, 0, 100, true);
    let ok = blk.request(req::IN, 0, &[b]) == blk_status::IOERR && sector_ok(&mut blk);
    check(&mut blk, "length not whole sectors: IOERR, then fine", ok);
    let ok = blk.request(0x99, 0, &[]) == blk_status::UNSUPP && sector_ok(&mut blk);
    check(&mut blk, "unknown request type: UNSUPP, then fine", ok);

    // Bad MMIO: undefined registers read as 0; a narrow load reads 0 if it
    // traps, or the register's own low bytes from the device's read-only
    // register page (what the VMM maps now): either way it changes
    // nothing. Narrow stores are ignored.
    let p = blk.platform();
    let undefined = p.mmio_read(0x0c8, 4) == 0 && p.mmio_read(0x1f0, 4) == 0;
    p.mmio_write(0x0c8, 4, 0x1234);
    let status_word = p.mmio_read(reg::STATUS, 4);
    let magic_byte = p.mmio_read(reg::MAGIC_VALUE, 1);
    let status_half = p.mmio_read(reg::STATUS, 2);
    let narrow = matches!(magic_byte, 0 | 0x76) // "v", MAGIC's low byte
        && (status_half == 0 || status_half == status_word & 0xffff)
        && p.mmio_read(reg::STATUS, 4) == status_word;
    p.mmio_write(reg::STATUS, 1, 0);
    let still = p.mmio_read(reg::STATUS, 4) as u32 & status::DRIVER_OK != 0;
    check(
        &mut blk,
        "undefined register reads 0, write ignored",
        undefined,
    );
    let ok = narrow && still && sector_ok(&mut blk);
    check(&mut blk, "wrong-width access ignored", ok);

    // A descriptor loop breaks the ring: DEVICE_NEEDS_RESET, and after a
    // reset the device works again.
    // Two device-readable descriptors pointing at each other.
    let header = blk.buf(0, 0, 16, false);
    let data = blk.buf(0, 16, 512, false);
    let looped = blk.submit_linked(&[header, data], &[1, 0]);
    check(
        &mut blk,
        "descriptor loop: DEVICE_NEEDS_RESET",
        looped == Err(Wait::NeedsReset),
    );
    let ok = blk.init() && sector_ok(&mut blk);
    check(&mut blk, "reset and re-init: works again", ok);
    let header = blk.buf(0, 0, 16, false);
    let long = blk.submit_linked(&[header], &[QUEUE_SIZE + 3]);
    let ok = long == Err(Wait::NeedsReset) && blk.init() && sector_ok(&mut blk);
    check(&mut blk, "next index out of range: reset, works again", ok);

    Summary {
        passed,
        total,
        read_1mib_ticks,
    }
}
