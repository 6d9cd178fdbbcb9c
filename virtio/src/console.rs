// SPDX-License-Identifier: BSD-2-Clause
//! virtio-console (virtio 1.2, §5.3): one port, a receive queue and a
//! transmit queue, for a serial PD that multiplexes several VMs' consoles
//! onto one UART.
//!
//! - [`ConsoleConfig`] is the [`DeviceType`] the VMM's
//!   [`ConsoleFrontend`] emulates: device id 3, two queues
//!   ([`RECEIVEQ`] = 0, [`TRANSMITQ`] = 1).
//! - [`ConsoleService`] is the serial PD's half: on a signal it
//!   [`transmit`](ConsoleService::transmit)s what the guest wrote to a
//!   [`ConsoleSink`], and it [`receive`](ConsoleService::receive)s input
//!   into the buffers the guest posted. [`Console`] is the same without
//!   the shared page (the queues given as [`Layout`]s).
//!
//! **Features offered: none but `VIRTIO_F_VERSION_1`.**
//! - `VIRTIO_CONSOLE_F_SIZE` (0) would report a terminal size; the serial
//!   PD has no terminal to measure, and a guest without it just assumes
//!   one.
//! - `VIRTIO_CONSOLE_F_MULTIPORT` (1) would need the control queues (two
//!   more, plus a port protocol); the multiplexing across VMs happens in
//!   the serial PD, one port per VM is all a guest needs.
//! - `VIRTIO_CONSOLE_F_EMERG_WRITE` (2) writes a byte through the
//!   configuration space, which the VMM traps; the VMM does not own the
//!   UART and has no path to the serial PD but the queues, so it would
//!   have to buffer or drop: not offered. The configuration space (12
//!   bytes: `cols`, `rows`, `max_nr_ports`, `emerg_wr`) therefore reads
//!   as 0 and a write to it is ignored.
//!
//! **Calls to the copy service.** Transmit, for a notification with `k`
//! available chains of `b` bytes in all in `s` guest buffers: 1 (the
//! ring snapshot: [`Snapshot::take`]) + 1 per [`TX_STAGING`] bytes or
//! [`MAX_CHAIN`] buffers of the batch (one gather of every chain's bytes;
//! the copy client splits it further only past 39 buffers or its staging
//! area) + 1 (the used elements and index: [`DeviceQueue::publish`]); so
//! 3 calls for any `k` chains of up to 4 KiB in up to 39 buffers. Receive
//! is the same with one scatter. Nothing available, or no input: 1 and 0
//! calls. A batch the copy service refuses (one buffer outside the
//! device's window) is retried chain by chain, the refused chains dropped.
//!
//! **What a guest gets wrong is dropped and counted, never trusted:** a
//! transmit chain with device-writable buffers, or longer than
//! [`TX_STAGING`] (or than the sink can ever hold), or whose buffers the
//! copy service refuses, is used with length 0 and counted in
//! [`Stats::dropped`]; so is a receive chain with device-readable buffers
//! or none writable. What breaks a ring (a descriptor loop, an index jump,
//! a ring outside the window) stops that queue and reports
//! `DEVICE_NEEDS_RESET`, as virtio-blk does.
//!
//! Stack: a transmit or receive call keeps a ring snapshot (4.6 KiB), a
//! walked chain (4 KiB), a batch of guest buffers (4 KiB plus 4 KiB of
//! bookkeeping) and the used elements (2 KiB) on the stack, and
//! [`DeviceQueue::publish`] 6.5 KiB more: about 26 KiB at the deepest.
//! The [`TX_STAGING`] buffer is part of the [`Console`].

use guest_ram::{GpaRange, SharedBuffer};

use crate::device::{should_log, BackendPage, Frontend};
use crate::mmio::DeviceType;
use crate::queue::{self, Layout, QueueError, MAX_CHAIN};
use crate::virtq::{used_elem, Batch, DeviceQueue, GuestDma, Snapshot, Used};

/// The receive queue's index (port 0's `receiveq`).
pub const RECEIVEQ: usize = 0;
/// The transmit queue's index (port 0's `transmitq`).
pub const TRANSMITQ: usize = 1;
/// Bytes of `struct virtio_console_config`.
pub const CONFIG_LEN: u64 = 12;
/// Bytes the console gathers per batch before handing them to the sink,
/// and the longest transmit chain it delivers: a longer one is dropped.
/// A console write is a line or a screenful; Linux's `hvc` writes at most
/// a page per chain.
pub const TX_STAGING: usize = 4096;

/// virtio-console's device type: no device-specific features, two
/// queues, a configuration space of zeros (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleConfig;

impl ConsoleConfig {
    /// The console's device type.
    pub const fn new() -> Self {
        ConsoleConfig
    }
}

impl DeviceType for ConsoleConfig {
    fn device_id(&self) -> u32 {
        3
    }
    fn features(&self) -> u64 {
        0
    }
    fn queues(&self) -> usize {
        2
    }
    fn name(&self) -> &'static str {
        "virtio-console"
    }
    fn config_read(&self, offset: u64, width: u8) -> Option<u64> {
        let end = offset.checked_add(u64::from(width))?;
        (end <= CONFIG_LEN).then_some(0)
    }
}

/// The VMM's half of a virtio-console device.
pub type ConsoleFrontend = Frontend<ConsoleConfig>;

impl Frontend<ConsoleConfig> {
    /// A console whose queue states go to `page` (at least
    /// [`PAGE_LEN`](crate::shared::PAGE_LEN) bytes).
    pub fn new(page: SharedBuffer) -> Self {
        Self::with_device(page, ConsoleConfig::new())
    }
}

/// Where transmitted bytes go: the serial PD's output buffer for this VM.
pub trait ConsoleSink {
    /// Bytes the sink can take now. A transmit chain is delivered only
    /// whole, so a chain longer than this waits for a later call.
    fn room(&self) -> usize;
    /// The most [`room`](Self::room) ever reports (when drained): a chain
    /// longer than this could never be delivered and is dropped instead
    /// of blocking the queue for good.
    fn capacity(&self) -> usize {
        usize::MAX
    }
    /// Takes `bytes`, in order; never more in all than
    /// [`room`](Self::room) said before the call that delivers them.
    fn write(&mut self, bytes: &[u8]);
}

/// Counters, for the serial PD to log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes handed to the sink.
    pub bytes_out: u64,
    /// Input bytes written into the guest's receive buffers.
    pub bytes_in: u64,
    /// Transmit chains used (dropped ones included).
    pub chains_out: u64,
    /// Receive chains used (dropped ones included).
    pub chains_in: u64,
    /// Chains used with length 0 because they were malformed or their
    /// buffers were refused.
    pub dropped: u64,
    /// Calls to the copy service ([`GuestDma`] operations; the copy
    /// client splits one further only past 39 buffers or its staging
    /// area).
    pub calls: u64,
    /// Queues stopped as broken (each makes the device need a reset).
    pub broken: u64,
}

/// What a [`transmit`](Console::transmit) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transmitted {
    /// Signal the VMM: chains were used and the driver wants an
    /// interrupt, or the device needs a reset.
    pub signal: bool,
    /// A chain waits for room in the sink: call again once it drained.
    pub blocked: bool,
}

/// What a [`receive`](Console::receive) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Signal the VMM (as [`Transmitted::signal`]).
    pub signal: bool,
    /// Input bytes written into the guest's buffers: the input's first
    /// `consumed` bytes. The rest stays with the caller until the guest
    /// posts more buffers (it notifies the receive queue then).
    pub consumed: usize,
}

/// The console's two queues, device side, over given [`Layout`]s:
/// [`ConsoleService`] without the shared page.
pub struct Console {
    rx: DeviceQueue,
    tx: DeviceQueue,
    rx_broken: bool,
    tx_broken: bool,
    stats: Stats,
    staging: [u8; TX_STAGING],
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// Both queues fresh.
    pub fn new() -> Self {
        Console {
            rx: DeviceQueue::new(),
            tx: DeviceQueue::new(),
            rx_broken: false,
            tx_broken: false,
            stats: Stats::default(),
            staging: [0; TX_STAGING],
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a broken ring stopped a queue (until it is restarted).
    pub fn needs_reset(&self) -> bool {
        self.rx_broken || self.tx_broken
    }

    /// The driver configured queue `n` anew: start it from index 0.
    pub fn restart(&mut self, n: usize) {
        match n {
            RECEIVEQ => (self.rx, self.rx_broken) = (DeviceQueue::new(), false),
            TRANSMITQ => (self.tx, self.tx_broken) = (DeviceQueue::new(), false),
            _ => {}
        }
    }

    /// Takes the transmit queue's available chains in order and hands
    /// their bytes to `sink`, as long as each whole chain fits its room;
    /// the first that does not stays available (and every one after it),
    /// so nothing is lost or reordered. An `Err` stopped the queue.
    pub fn transmit<M: GuestDma, S: ConsoleSink>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        sink: &mut S,
    ) -> Result<Transmitted, QueueError> {
        if self.tx_broken {
            return Ok(Transmitted::default());
        }
        let result = self.transmit_inner(layout, dma, sink);
        if result.is_err() {
            self.tx_broken = true;
            self.stats.broken += 1;
        }
        result
    }

    fn transmit_inner<M: GuestDma, S: ConsoleSink>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        sink: &mut S,
    ) -> Result<Transmitted, QueueError> {
        self.stats.calls += 1;
        let snapshot = Snapshot::take(layout, &self.tx, dma)?;
        let mut room = sink.room();
        let longest = TX_STAGING.min(sink.capacity());
        let mut used = Used::new();
        let mut batch = Batch::new();
        let mut blocked = false;
        for k in 0..snapshot.pending() {
            let (head, chain) = snapshot.chain(k)?;
            let len = usize::try_from(chain.readable_len()).unwrap_or(usize::MAX);
            if !chain.writable().is_empty() || len > longest {
                self.stats.dropped += 1;
                // Cannot fail: at most `pending <= MAX_CHAIN` pushes.
                let _ = used.push(used_elem(head, 0));
                continue;
            }
            if len > room {
                blocked = true;
                break;
            }
            if batch.bytes + len > TX_STAGING || !batch.add(chain.readable(), len, used.len()) {
                self.gather(&mut batch, dma, sink);
                // Fits now: an empty batch takes any chain of at most
                // `TX_STAGING` bytes and `MAX_CHAIN` buffers.
                let _ = batch.add(chain.readable(), len, used.len());
            }
            room -= len;
            let _ = used.push(used_elem(head, 0));
        }
        self.gather(&mut batch, dma, sink);
        if !used.is_empty() {
            self.stats.calls += 1;
            self.tx.publish(layout, &[], &used, dma)?;
            self.stats.chains_out += used.len() as u64;
        }
        Ok(Transmitted {
            signal: !used.is_empty() && snapshot.wants_interrupt(),
            blocked,
        })
    }

    /// Gathers the batch's bytes in one call and hands them to the sink;
    /// if the call is refused, chain by chain, dropping those refused.
    fn gather<M: GuestDma, S: ConsoleSink>(
        &mut self,
        batch: &mut Batch,
        dma: &mut M,
        sink: &mut S,
    ) {
        if batch.bytes == 0 {
            batch.clear();
            return;
        }
        self.stats.calls += 1;
        if let Some(dst) = self.staging.get_mut(..batch.bytes) {
            if dma.readv(&batch.segments, dst).is_ok() {
                sink.write(dst);
                self.stats.bytes_out += batch.bytes as u64;
                batch.clear();
                return;
            }
        }
        for (segments, chain) in batch.each() {
            if chain.len == 0 {
                continue;
            }
            self.stats.calls += 1;
            let delivered = match self.staging.get_mut(..chain.len) {
                Some(dst) => {
                    let ok = dma.readv(segments, dst).is_ok();
                    if ok {
                        sink.write(dst);
                    }
                    ok
                }
                None => false,
            };
            if delivered {
                self.stats.bytes_out += chain.len as u64;
            } else {
                self.stats.dropped += 1;
                if should_log(self.stats.dropped.min(u64::from(u32::MAX)) as u32) {
                    log::warn!("virtio-console: transmit buffer refused; chain dropped");
                }
            }
        }
        batch.clear();
    }

    /// Writes `input` in order into the receive queue's available chains,
    /// each as full as it can be, and returns how many bytes went in. An
    /// `Err` stopped the queue.
    pub fn receive<M: GuestDma>(
        &mut self,
        layout: &Layout,
        dma: &mut M,
        input: &[u8],
    ) -> Result<Received, QueueError> {
        if self.rx_broken || input.is_empty() {
            return Ok(Received::default());
        }
        let result = self.receive_inner(layout, dma, input);
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
        input: &[u8],
    ) -> Result<Received, QueueError> {
        self.stats.calls += 1;
        let snapshot = Snapshot::take(layout, &self.rx, dma)?;
        let mut used = Used::new();
        let mut batch = Batch::new();
        // Input bytes written by earlier batches; the current batch's
        // start.
        let mut consumed = 0;
        for k in 0..snapshot.pending() {
            let left = input.len() - consumed - batch.bytes;
            if left == 0 {
                break;
            }
            let (head, chain) = snapshot.chain(k)?;
            let n = usize::try_from(chain.writable_len())
                .unwrap_or(usize::MAX)
                .min(left);
            let mut parts: heapless::Vec<GpaRange, MAX_CHAIN> = heapless::Vec::new();
            if !chain.readable().is_empty()
                || n == 0
                || queue::sub_ranges(chain.writable(), 0, n as u64, &mut parts).is_err()
            {
                self.stats.dropped += 1;
                let _ = used.push(used_elem(head, 0));
                continue;
            }
            if !batch.add(&parts, n, used.len()) {
                consumed += self.scatter(
                    &mut batch,
                    &mut used,
                    dma,
                    input.get(consumed..).unwrap_or(&[]),
                );
                let _ = batch.add(&parts, n, used.len());
            }
            let _ = used.push(used_elem(head, n));
        }
        consumed += self.scatter(
            &mut batch,
            &mut used,
            dma,
            input.get(consumed..).unwrap_or(&[]),
        );
        if !used.is_empty() {
            self.stats.calls += 1;
            self.rx.publish(layout, &[], &used, dma)?;
            self.stats.chains_in += used.len() as u64;
        }
        self.stats.bytes_in += consumed as u64;
        Ok(Received {
            signal: !used.is_empty() && snapshot.wants_interrupt(),
            consumed,
        })
    }

    /// Scatters the start of `input` over the batch in one call; if it is
    /// refused, chain by chain, each taking the next bytes, those refused
    /// used with length 0. Returns the input bytes written.
    fn scatter<M: GuestDma>(
        &mut self,
        batch: &mut Batch,
        used: &mut Used,
        dma: &mut M,
        input: &[u8],
    ) -> usize {
        if batch.bytes == 0 {
            batch.clear();
            return 0;
        }
        self.stats.calls += 1;
        if let Some(src) = input.get(..batch.bytes) {
            if dma.writev(&batch.segments, src).is_ok() {
                let n = batch.bytes;
                batch.clear();
                return n;
            }
        }
        let mut at: usize = 0;
        for (segments, chain) in batch.each() {
            self.stats.calls += 1;
            let ok = at
                .checked_add(chain.len)
                .and_then(|end| input.get(at..end))
                .is_some_and(|src| dma.writev(segments, src).is_ok());
            if ok {
                at += chain.len;
            } else {
                self.stats.dropped += 1;
                if let Some(elem) = used.get_mut(chain.used) {
                    elem.len = 0.into();
                }
            }
        }
        batch.clear();
        at
    }
}

/// The serial PD's half of one VM's virtio-console: the queues published
/// in the shared page, served through a [`GuestDma`].
pub struct ConsoleService {
    page: BackendPage,
    console: Console,
}

impl ConsoleService {
    /// A service for the queues published in `page`.
    pub fn new(page: SharedBuffer) -> Self {
        ConsoleService {
            page: BackendPage::new(page),
            console: Console::new(),
        }
    }

    /// Counters over the service's life.
    pub fn stats(&self) -> Stats {
        self.console.stats()
    }

    /// Queue `n`'s layout as published now ([`BackendPage::layout`]),
    /// every queue configured anew restarted.
    fn sync(&mut self, n: usize) -> Result<Option<Layout>, QueueError> {
        let console = &mut self.console;
        self.page.layout(n, |q| console.restart(q))
    }

    /// The VMM signalled (the guest notified a queue), or the serial PD
    /// drained its output and calls again: delivers the transmit queue's
    /// chains to `sink` as far as its room goes (see
    /// [`Console::transmit`]). A serial PD with input pending calls
    /// [`receive`](Self::receive) on a signal too: the guest may have
    /// posted receive buffers.
    pub fn transmit<M: GuestDma, S: ConsoleSink>(
        &mut self,
        dma: &mut M,
        sink: &mut S,
    ) -> Transmitted {
        match self.sync(TRANSMITQ) {
            Ok(None) => Transmitted::default(),
            Ok(Some(layout)) => match self.console.transmit(&layout, dma, sink) {
                Ok(done) => Transmitted {
                    signal: done.signal && self.report(),
                    blocked: done.blocked,
                },
                Err(e) => {
                    log::warn!("virtio-console: transmit queue error, device needs reset: {e}");
                    Transmitted {
                        signal: self.report(),
                        blocked: false,
                    }
                }
            },
            Err(e) => {
                log::warn!("virtio-console: published transmit queue is invalid: {e}");
                Transmitted {
                    signal: self.report_broken(),
                    blocked: false,
                }
            }
        }
    }

    /// Writes `input` into the receive queue's posted buffers, in order
    /// (see [`Console::receive`]); the bytes not consumed stay with the
    /// caller.
    pub fn receive<M: GuestDma>(&mut self, dma: &mut M, input: &[u8]) -> Received {
        match self.sync(RECEIVEQ) {
            Ok(None) => Received::default(),
            Ok(Some(layout)) => match self.console.receive(&layout, dma, input) {
                Ok(done) => Received {
                    signal: done.signal && self.report(),
                    consumed: done.consumed,
                },
                Err(e) => {
                    log::warn!("virtio-console: receive queue error, device needs reset: {e}");
                    Received {
                        signal: self.report(),
                        consumed: 0,
                    }
                }
            },
            Err(e) => {
                log::warn!("virtio-console: published receive queue is invalid: {e}");
                Received {
                    signal: self.report_broken(),
                    consumed: 0,
                }
            }
        }
    }

    fn report(&mut self) -> bool {
        let stats = self.console.stats();
        self.page.report(
            self.console.needs_reset(),
            stats.chains_in + stats.chains_out,
            0,
            0,
        )
    }

    fn report_broken(&mut self) -> bool {
        let stats = self.console.stats();
        self.page
            .report(true, stats.chains_in + stats.chains_out, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{flags, Desc};
    use crate::virtq::testing::{Driver, Flat, AVAIL, DESC};
    use crate::virtq::AVAIL_F_NO_INTERRUPT;
    use std::vec::Vec;
    use zerocopy::IntoBytes;

    const DATA: u64 = 0x8000;

    struct Sink {
        out: Vec<u8>,
        room: usize,
    }

    impl ConsoleSink for Sink {
        fn room(&self) -> usize {
            self.room
        }
        fn write(&mut self, bytes: &[u8]) {
            assert!(bytes.len() <= self.room);
            self.room -= bytes.len();
            self.out.extend_from_slice(bytes);
        }
    }

    #[test]
    fn config_space_is_twelve_zero_bytes() {
        let c = ConsoleConfig::new();
        assert_eq!((c.device_id(), c.features(), c.queues()), (3, 0, 2));
        assert_eq!(c.config_read(0, 4), Some(0));
        assert_eq!(c.config_read(8, 4), Some(0));
        assert_eq!(c.config_read(8, 8), None);
        assert_eq!(c.config_read(12, 1), None);
        assert_eq!(c.config_read(u64::MAX, 8), None);
    }

    #[test]
    fn event_idx_is_not_offered_and_a_driver_that_asks_does_not_get_it() {
        use crate::mmio::{feature, reg, status, MmioDevice};
        let mut dev = MmioDevice::new(ConsoleConfig::new());
        assert_eq!(dev.device_features() & feature::RING_EVENT_IDX, 0);
        dev.write(reg::DRIVER_FEATURES_SEL, 4, 0);
        dev.write(reg::DRIVER_FEATURES, 4, feature::RING_EVENT_IDX);
        dev.write(reg::DRIVER_FEATURES_SEL, 4, 1);
        dev.write(reg::DRIVER_FEATURES, 4, 1);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        dev.write(reg::STATUS, 4, u64::from(s));
        assert_eq!(dev.status() & status::FEATURES_OK, 0);
        assert!(!dev.event_idx());
    }

    #[test]
    fn transmit_batches_chains_in_three_calls_and_in_order() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        mem.put(DATA, b"hello, ");
        mem.put(DATA + 0x100, b"wor");
        mem.put(DATA + 0x200, b"ld\n");
        tx.post(&mut mem, &[(DATA, 7, false)]);
        tx.post(
            &mut mem,
            &[(DATA + 0x100, 3, false), (DATA + 0x200, 3, false)],
        );
        let mut console = Console::new();
        let mut sink = Sink {
            out: Vec::new(),
            room: 100,
        };
        let done = console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert_eq!(
            done,
            Transmitted {
                signal: true,
                blocked: false
            }
        );
        assert_eq!(sink.out, b"hello, world\n");
        assert_eq!(mem.calls, 3);
        assert_eq!(tx.used(&mem, 0), [(0, 0), (1, 0)]);
        let stats = console.stats();
        assert_eq!((stats.bytes_out, stats.chains_out, stats.calls), (13, 2, 3));
        // Nothing new: one call, no signal.
        mem.calls = 0;
        let done = console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert_eq!((done, mem.calls), (Transmitted::default(), 1));
    }

    #[test]
    fn a_chain_that_does_not_fit_waits_and_nothing_after_it_passes() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        mem.put(DATA, b"abcdefgh");
        tx.post(&mut mem, &[(DATA, 2, false)]);
        tx.post(&mut mem, &[(DATA + 2, 4, false)]);
        tx.post(&mut mem, &[(DATA + 6, 1, false)]);
        let mut console = Console::new();
        let mut sink = Sink {
            out: Vec::new(),
            room: 5,
        };
        let done = console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert!(done.blocked && done.signal);
        assert_eq!(sink.out, b"ab");
        assert_eq!(tx.used(&mem, 0), [(0, 0)]);
        sink.room = 5;
        let done = console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert!(!done.blocked);
        assert_eq!(sink.out, b"abcdefg");
        assert_eq!(tx.used(&mem, 0).len(), 3);
    }

    #[test]
    fn bad_transmit_chains_are_dropped_not_delivered() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        mem.put(DATA, b"ok");
        tx.post(&mut mem, &[(DATA, 2, true)]);
        tx.post(&mut mem, &[(DATA, TX_STAGING as u32 + 1, false)]);
        tx.post(&mut mem, &[(0xffff_0000, 2, false)]);
        tx.post(&mut mem, &[(DATA, 2, false)]);
        let mut console = Console::new();
        let mut sink = Sink {
            out: Vec::new(),
            room: 1 << 20,
        };
        console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert_eq!(sink.out, b"ok");
        assert_eq!(tx.used(&mem, 0), [(0, 0), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(console.stats().dropped, 3);
    }

    #[test]
    fn receive_fills_buffers_in_order_and_keeps_the_rest() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        rx.post(&mut mem, &[(DATA, 4, true)]);
        rx.post(
            &mut mem,
            &[(DATA + 0x100, 2, true), (DATA + 0x200, 8, true)],
        );
        rx.post(&mut mem, &[(DATA + 0x300, 1, false)]);
        let mut console = Console::new();
        let done = console.receive(&rx.layout, &mut mem, b"0123456").unwrap();
        assert_eq!(
            done,
            Received {
                signal: true,
                consumed: 7
            }
        );
        assert_eq!(mem.calls, 3);
        assert_eq!(&mem.mem[DATA as usize..][..4], b"0123");
        assert_eq!(&mem.mem[DATA as usize + 0x100..][..2], b"45");
        assert_eq!(&mem.mem[DATA as usize + 0x200..][..1], b"6");
        // The third chain was not needed: it stays available.
        assert_eq!(rx.used(&mem, 0), [(0, 4), (1, 3)]);
        let done = console.receive(&rx.layout, &mut mem, b"xyz").unwrap();
        assert_eq!(done.consumed, 0);
        assert_eq!(rx.used(&mem, 2), [(3, 0)]);
        assert_eq!(console.stats().dropped, 1);
        // No buffers left: nothing consumed, the input stays with the caller.
        assert_eq!(
            console
                .receive(&rx.layout, &mut mem, b"xyz")
                .unwrap()
                .consumed,
            0
        );
    }

    #[test]
    fn a_refused_receive_buffer_drops_only_its_chain() {
        let mut mem = Flat::new();
        let mut rx = Driver::new();
        rx.post(&mut mem, &[(DATA, 2, true)]);
        rx.post(&mut mem, &[(0xfff0_0000, 2, true)]);
        rx.post(&mut mem, &[(DATA + 0x100, 2, true)]);
        let mut console = Console::new();
        let done = console.receive(&rx.layout, &mut mem, b"abcdef").unwrap();
        assert_eq!(done.consumed, 4);
        assert_eq!(&mem.mem[DATA as usize..][..2], b"ab");
        assert_eq!(&mem.mem[DATA as usize + 0x100..][..2], b"cd");
        assert_eq!(rx.used(&mem, 0), [(0, 2), (1, 0), (2, 2)]);
    }

    #[test]
    fn no_interrupt_is_honoured_and_a_loop_needs_a_reset() {
        let mut mem = Flat::new();
        let mut tx = Driver::new();
        mem.put(AVAIL, &AVAIL_F_NO_INTERRUPT.to_le_bytes());
        tx.post(&mut mem, &[(DATA, 1, false)]);
        let mut console = Console::new();
        let mut sink = Sink {
            out: Vec::new(),
            room: 10,
        };
        let done = console.transmit(&tx.layout, &mut mem, &mut sink).unwrap();
        assert!(!done.signal);
        assert_eq!(sink.out.len(), 1);
        // Descriptor 1 -> 2 -> 1 ...
        mem.put(DESC + 16, Desc::new(DATA, 1, flags::NEXT, 2).as_bytes());
        mem.put(DESC + 32, Desc::new(DATA, 1, flags::NEXT, 1).as_bytes());
        mem.put(AVAIL + 6, &1u16.to_le_bytes());
        mem.put(AVAIL + 2, &2u16.to_le_bytes());
        assert!(console.transmit(&tx.layout, &mut mem, &mut sink).is_err());
        assert!(console.needs_reset());
        assert_eq!(
            console.transmit(&tx.layout, &mut mem, &mut sink),
            Ok(Transmitted::default())
        );
        console.restart(TRANSMITQ);
        assert!(!console.needs_reset());
    }
}
