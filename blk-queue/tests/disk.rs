// SPDX-License-Identifier: BSD-2-Clause
//! The device path end to end on the host, asynchronous: a guest's
//! virtio-blk requests, many at once, through the blk PD's backend
//! (`virtio::blk_async::AsyncBlkBackend`) and the VMM's copy server, into a
//! `QueueDisk` whose requests cross the sDDF rings to the driver loop
//! (`driver::Serve`) over a RAM "device" that finishes its requests in
//! whatever order the test says, fails some, or never answers.
//!
//! The model proptest runs any interleaving of the guest queueing, the
//! blk PD and the driver PD running, and the device finishing any request
//! it holds, and checks: every request completes once, with the status it
//! should have; a read returns what the device read; a write carries the
//! guest's bytes to the device; no two requests on the device share
//! data-region bytes; a flush starts only when every write the guest
//! queued before it has been done and nothing else is on the device, and
//! nothing queued after it starts before it is done.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes; it outlives the buffers"
)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::rc::Rc;

use blk_queue::disk::{Doorbell, QueueDisk};
use blk_queue::driver::{BlockDevice, Serve};
use blk_queue::{
    publish_storage_info, Client as RingClient, Code, Driver, Response, Rings, Status, StorageInfo,
    Transfer,
};
use guest_ram::client::{Client, ClientError};
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};
use proptest::prelude::*;
use virtio::blk::{req, status, ReqHeader};
use virtio::blk_async::{AsyncBlkBackend, AsyncDisk};
use virtio::queue::{flags, Desc, Layout};
use virtio::virtq::{need_event, GuestDma};
use zerocopy::IntoBytes;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: each test keeps `memory` alive while the buffer is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

const BLOCKS: u64 = 64;
/// The data region: room for 4 requests of 4 blocks at once.
const DATA: usize = 64 << 10;
/// Requests the blk PD keeps in flight.
const DEPTH: usize = 8;
/// Requests the device takes at once.
const DEVICE_DEPTH: usize = 3;
const RING: u32 = 8;

const GPA: u64 = 0x4000_0000;
const RAM: usize = 4 << 20;
const QSIZE: u16 = 64;
const DESC: u64 = GPA;
const AVAIL: u64 = GPA + 0x1000;
const USED: u64 = GPA + 0x2000;
const HEADERS: u64 = GPA + 0x3000;
const STATUSES: u64 = GPA + 0x3800;
const BUFS: u64 = GPA + 0x1_0000;
/// Bytes per guest slot's data buffer.
const BUF_LEN: u64 = 0x2_0000;
/// Guest requests outstanding at most (3 descriptors each).
const GUEST_SLOTS: usize = 16;

/// A RAM device behind the driver loop: it holds what it started and
/// finishes a request only when the test says.
struct RamDevice {
    disk: Vec<u8>,
    data: SharedBuffer,
    started: [Option<(Code, Transfer)>; DEVICE_DEPTH],
    finished: VecDeque<(usize, Status)>,
    /// Blocks whose requests fail.
    bad_block: Option<u64>,
    /// Every write done, by the sequence number in its first 8 bytes.
    writes_done: Vec<u64>,
    /// What each read put in the data region, by sector.
    reads: Vec<(u64, Vec<u8>)>,
    flushes: u32,
    /// Writes done when each flush started.
    flush_saw: Vec<usize>,
    /// Sequence numbers of the writes started after each flush ended.
    writes_after_flush: Vec<(u32, u64)>,
}

impl RamDevice {
    fn new(data: SharedBuffer) -> Self {
        RamDevice {
            disk: (0..BLOCKS as usize * 4096)
                .map(|i| (i / 4096) as u8)
                .collect(),
            data,
            started: [None; DEVICE_DEPTH],
            finished: VecDeque::new(),
            bad_block: None,
            writes_done: Vec::new(),
            reads: Vec::new(),
            flushes: 0,
            flush_saw: Vec::new(),
            writes_after_flush: Vec::new(),
        }
    }

    fn on_device(&self) -> Vec<usize> {
        (0..DEVICE_DEPTH)
            .filter(|&s| self.started[s].is_some())
            .collect()
    }

    /// Finishes the request in `slot`: moves its data now.
    fn finish(&mut self, slot: usize) {
        let Some((code, t)) = self.started[slot].take() else {
            return;
        };
        let block = t.sector / 8;
        let bad = self
            .bad_block
            .is_some_and(|b| (block..block + t.len as u64 / 4096).contains(&b));
        let status = if bad {
            Status::Io
        } else {
            let at = t.sector as usize * 512;
            match code {
                Code::Read => {
                    self.data
                        .write(t.data_offset, &self.disk[at..at + t.len])
                        .unwrap();
                    self.reads
                        .push((t.sector, self.disk[at..at + t.len].to_vec()));
                }
                Code::Write => {
                    self.data
                        .read(t.data_offset, &mut self.disk[at..at + t.len])
                        .unwrap();
                    let seq = u64::from_le_bytes(self.disk[at..at + 8].try_into().unwrap());
                    self.writes_done.push(seq);
                }
                _ => self.flushes += 1,
            }
            Status::Ok
        };
        self.finished.push_back((slot, status));
    }
}

impl BlockDevice for RamDevice {
    fn start(&mut self, slot: usize, code: Code, t: &Transfer) -> Result<(), Status> {
        assert!(self.started[slot].is_none(), "slot {slot} in use");
        for (_, o) in self.started.iter().flatten() {
            let disjoint =
                t.data_offset + t.len <= o.data_offset || o.data_offset + o.len <= t.data_offset;
            assert!(disjoint || t.len == 0 || o.len == 0, "data region shared");
        }
        match code {
            Code::Flush => {
                assert!(
                    self.on_device().is_empty(),
                    "a flush with requests on the device"
                );
                self.flush_saw.push(self.writes_done.len());
            }
            Code::Write => {
                let mut seq = [0u8; 8];
                self.data.read(t.data_offset, &mut seq).unwrap();
                self.writes_after_flush
                    .push((self.flushes, u64::from_le_bytes(seq)));
            }
            _ => {}
        }
        self.started[slot] = Some((code, *t));
        Ok(())
    }
    fn poll(&mut self) -> Option<(usize, Status)> {
        self.finished.pop_front()
    }
}

/// The doorbell: counts rings.
struct Bell(Rc<Cell<u32>>);

impl Doorbell for Bell {
    fn ring(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A request given a guest slot `j` and the available-ring entry after
/// `old_avail`, not yet written ([`write_request`]).
struct Placed {
    j: usize,
    guest: Guest,
    old_avail: u16,
}

/// What the guest's driver does to queue `p`: its header, status byte,
/// data and descriptors, the available entry and index, then (Linux's
/// `virtqueue_kick_prepare`) whether to notify: always without event
/// indices, with them only if the index passed `avail_event`.
fn write_request(ram: &mut GuestRam<1, 8>, layout: &Layout, event_idx: bool, p: &Placed) -> bool {
    let (j, g) = (p.j, &p.guest);
    let header = ReqHeader {
        kind: g.kind.into(),
        reserved: 0.into(),
        sector: g.sector.into(),
    };
    let (h, st, buf) = (
        HEADERS + 16 * j as u64,
        STATUSES + j as u64,
        BUFS + BUF_LEN * j as u64,
    );
    ram.write(h, header.as_bytes()).unwrap();
    ram.write(st, &[0xee]).unwrap();
    // A write's data: its sequence number, then a pattern.
    let fill: Vec<u8> = (0..u64::from(g.len))
        .map(|i| (g.seq.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect();
    if g.len > 0 {
        ram.write(buf, &fill).unwrap();
        if g.len >= 8 {
            ram.write(buf, &g.seq.to_le_bytes()).unwrap();
        }
    }
    let d = 3 * j as u16;
    let mut chain = vec![(h, 16u32, false)];
    if g.len > 0 {
        chain.push((buf, g.len, g.kind == req::IN));
    }
    chain.push((st, 1, true));
    for (i, &(gpa, l, writable)) in chain.iter().enumerate() {
        let last = i + 1 == chain.len();
        let f = if writable { flags::WRITE } else { 0 } | if last { 0 } else { flags::NEXT };
        ram.write(
            DESC + 16 * u64::from(d + i as u16),
            Desc::new(gpa, l, f, d + i as u16 + 1).as_bytes(),
        )
        .unwrap();
    }
    ram.write(
        AVAIL + 4 + 2 * u64::from(p.old_avail % QSIZE),
        &d.to_le_bytes(),
    )
    .unwrap();
    let avail = p.old_avail.wrapping_add(1);
    ram.write(AVAIL + 2, &avail.to_le_bytes()).unwrap();
    let mut event = [0u8; 2];
    ram.read(layout.avail_event_gpa(), &mut event).unwrap();
    !event_idx || need_event(u16::from_le_bytes(event), avail, p.old_avail)
}

/// The blk PD's copy client, through which the guest runs between two of
/// its calls: just before call number `at`, the guest queues `planned`.
struct Preempted<'a> {
    client: &'a mut Client<Local<'static, 1, 8, 1>>,
    calls: usize,
    at: usize,
    /// The guest's view of its memory (the world's).
    ram: &'a mut GuestRam<1, 8>,
    layout: Layout,
    event_idx: bool,
    planned: Vec<Placed>,
    /// Whether the guest notified.
    kicked: bool,
}

impl Preempted<'_> {
    fn tick(&mut self) {
        if self.calls == self.at {
            self.guest_runs();
        }
        self.calls += 1;
    }

    fn guest_runs(&mut self) {
        for p in std::mem::take(&mut self.planned) {
            self.kicked |= write_request(self.ram, &self.layout, self.event_idx, &p);
        }
    }
}

impl GuestDma for Preempted<'_> {
    type Error = ClientError;
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), ClientError> {
        self.tick();
        self.client.read(gpa, dst)
    }
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), ClientError> {
        self.tick();
        GuestDma::readv(self.client, segments, dst)
    }
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), ClientError> {
        self.tick();
        self.client.write(gpa, src)
    }
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), ClientError> {
        self.tick();
        GuestDma::writev(self.client, segments, src)
    }
    fn staging(&self) -> &SharedBuffer {
        GuestDma::staging(&*self.client)
    }
    fn gather(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.tick();
        GuestDma::gather(self.client, segments)
    }
    fn scatter(&mut self, segments: &[GpaRange]) -> Result<usize, ClientError> {
        self.tick();
        GuestDma::scatter(self.client, segments)
    }
    fn gather_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.tick();
        GuestDma::gather_at(self.client, segments, offset)
    }
    fn scatter_at(&mut self, segments: &[GpaRange], offset: u64) -> Result<usize, ClientError> {
        self.tick();
        GuestDma::scatter_at(self.client, segments, offset)
    }
}

/// A guest request: kind, first sector, data bytes.
#[derive(Clone, Debug)]
struct Guest {
    kind: u32,
    sector: u64,
    len: u32,
    /// Sequence number (in order of queueing).
    seq: u64,
}

/// The whole path's memory and state.
struct World {
    ram: GuestRam<1, 8>,
    client: Client<Local<'static, 1, 8, 1>>,
    layout: Layout,
    backend: AsyncBlkBackend<DEPTH>,
    disk: QueueDisk<Bell, DEPTH>,
    serve: Serve<DEVICE_DEPTH>,
    device: RamDevice,
    rings: Rc<Cell<u32>>,
    /// Guest slots: the request in each, if any.
    slots: [Option<Guest>; GUEST_SLOTS],
    avail: u16,
    used: u16,
    /// Completed: (request, status byte, used length, data read).
    completed: Vec<(Guest, u8, u32, Vec<u8>)>,
    next_seq: u64,
    /// `VIRTIO_RING_F_EVENT_IDX`: the guest notifies only when its
    /// available index passes the device's `avail_event`.
    event_idx: bool,
    /// The guest notified since the blk PD last ran.
    kicked: bool,
}

impl World {
    fn new(ring_capacity: u32) -> Self {
        let leak = |n: usize| -> &'static mut [u8] { Box::leak(vec![0u8; n].into_boxed_slice()) };
        let shared = buffer(leak(DATA + 4096));
        let data = shared.sub(0, DATA).unwrap();
        let rings = Rings::new(
            buffer(leak(Rings::request_bytes(ring_capacity as usize))),
            buffer(leak(Rings::response_bytes(ring_capacity as usize))),
            ring_capacity,
        )
        .unwrap();
        let info = buffer(leak(4096));
        publish_storage_info(&info, &StorageInfo::new(BLOCKS, 512, 1)).unwrap();
        let guest = leak(RAM);
        // SAFETY: the leaked guest memory lives for the test's whole life.
        let region = unsafe {
            MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), RAM as u64)
        };
        let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
        ram.register_at(GPA, RAM as u64).unwrap();
        let server: &'static RefCell<Server<1>> = Box::leak(Box::new(RefCell::new(Server::new())));
        server
            .borrow_mut()
            .add_client(
                ClientConfig::new(1, shared, &[Window::read_write(GPA, RAM as u64)]).unwrap(),
            )
            .unwrap();
        let ram_static: &'static GuestRam<1, 8> = Box::leak(Box::new(ram));
        let client =
            Client::with_staging(Local::new(server, ram_static, 1), shared, DATA, 4096).unwrap();
        let counter = Rc::new(Cell::new(0));
        let disk = QueueDisk::new(
            RingClient::new(rings),
            info,
            DATA as u64,
            0,
            Bell(counter.clone()),
        );
        // The guest's view of the same memory, for the test's own writes.
        let mut mirror = GuestRam::<1, 8>::new(&[region]).unwrap();
        mirror.register_at(GPA, RAM as u64).unwrap();
        World {
            ram: mirror,
            client,
            layout: Layout::new(QSIZE, DESC, AVAIL, USED).unwrap(),
            backend: AsyncBlkBackend::new(),
            disk,
            serve: Serve::new(Driver::new(rings), DATA as u64, BLOCKS),
            device: RamDevice::new(data),
            rings: counter,
            slots: std::array::from_fn(|_| None),
            avail: 0,
            used: 0,
            completed: Vec::new(),
            next_seq: 1,
            event_idx: false,
            kicked: false,
        }
    }

    /// The same, the guest having negotiated `VIRTIO_RING_F_EVENT_IDX`.
    fn with_event_idx(mut self) -> Self {
        self.event_idx = true;
        self.layout = self.layout.with_event_idx(true);
        self
    }

    /// The blk PD runs if it was signalled: the guest notified, or (with
    /// requests in flight) the driver may have answered.
    fn blk_if_signalled(&mut self) {
        if !self.event_idx || self.kicked || self.backend.in_flight() > 0 {
            self.blk();
        }
    }

    /// Queues a request in a free guest slot; `false` if there is none.
    fn queue(&mut self, kind: u32, sector: u64, len: u32) -> bool {
        let Some(placed) = self.place(kind, sector, len) else {
            return false;
        };
        self.kicked |= write_request(&mut self.ram, &self.layout, self.event_idx, &placed);
        true
    }

    /// Takes a free guest slot and the next available-ring entry for a
    /// request, which [`write_request`] then writes into guest memory.
    fn place(&mut self, kind: u32, sector: u64, len: u32) -> Option<Placed> {
        let j = self.slots.iter().position(Option::is_none)?;
        let guest = Guest {
            kind,
            sector,
            len,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.slots[j] = Some(guest.clone());
        let old_avail = self.avail;
        self.avail = self.avail.wrapping_add(1);
        Some(Placed {
            j,
            guest,
            old_avail,
        })
    }

    /// The blk PD runs (a signal from the VMM or the driver).
    fn blk(&mut self) {
        self.blk_preempted(usize::MAX, &[]);
    }

    /// The blk PD runs, and is preempted just before its `at`-th copy call
    /// (or, if it makes fewer, right after it returns), when the guest
    /// queues `requests` (kind, sector, length): as on seL4 when its
    /// budget runs out, or with the guest on another core. The guest reads
    /// `avail_event` as the device left it then, so it may not notify.
    fn blk_preempted(&mut self, at: usize, requests: &[(u32, u64, u32)]) {
        self.kicked = false;
        let planned = requests
            .iter()
            .filter_map(|&(kind, sector, len)| self.place(kind, sector, len))
            .collect();
        let mut dma = Preempted {
            client: &mut self.client,
            calls: 0,
            at,
            ram: &mut self.ram,
            layout: self.layout,
            event_idx: self.event_idx,
            planned,
            kicked: false,
        };
        self.backend
            .process(&self.layout, &mut dma, &mut self.disk)
            .unwrap();
        dma.guest_runs();
        self.kicked |= dma.kicked;
        self.reap();
    }

    /// The driver PD runs (a signal from the blk PD or an interrupt).
    fn driver(&mut self) {
        self.serve.run(&mut self.device).unwrap();
    }

    /// The guest takes what was used.
    fn reap(&mut self) {
        let mut idx = [0u8; 2];
        self.ram.read(USED + 2, &mut idx).unwrap();
        let idx = u16::from_le_bytes(idx);
        while self.used != idx {
            let mut elem = [0u8; 8];
            self.ram
                .read(USED + 4 + 8 * u64::from(self.used % QSIZE), &mut elem)
                .unwrap();
            self.used = self.used.wrapping_add(1);
            let head = u32::from_le_bytes(elem[..4].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(elem[4..].try_into().unwrap());
            assert_eq!(head % 3, 0, "a used id that is no head");
            let j = head / 3;
            let g = self.slots[j].take().expect("a request completed twice");
            let mut s = [0u8];
            self.ram.read(STATUSES + j as u64, &mut s).unwrap();
            let mut data = vec![0u8; g.len as usize];
            if !data.is_empty() {
                self.ram.read(BUFS + BUF_LEN * j as u64, &mut data).unwrap();
            }
            self.completed.push((g, s[0], len, data));
        }
        // Interrupts wanted from the next completion on (unused here:
        // the guest looks after every run of the blk PD).
        self.ram
            .write(AVAIL + 4 + 2 * u64::from(QSIZE), &self.used.to_le_bytes())
            .unwrap();
    }

    /// Everything runs until nothing moves: every request completes.
    fn settle(&mut self) {
        for _ in 0..1000 {
            self.blk_if_signalled();
            self.driver();
            for s in self.device.on_device() {
                self.device.finish(s);
            }
            self.driver();
            self.blk_if_signalled();
            if self.slots.iter().all(Option::is_none) {
                return;
            }
        }
        panic!("requests never completed: {:?}", self.slots);
    }

    /// Checks every completion against what should have happened.
    fn check(&self) {
        for (g, st, used_len, data) in &self.completed {
            let block = g.sector / 8;
            let blocks = u64::from(g.len) / 4096;
            let valid = match g.kind {
                req::IN | req::OUT => {
                    g.len > 0
                        && g.len % 4096 == 0
                        && g.sector % 8 == 0
                        && block + blocks <= BLOCKS
                        && u64::from(g.len) <= DATA as u64
                }
                req::FLUSH => true,
                _ => false,
            };
            let bad = self
                .device
                .bad_block
                .is_some_and(|b| g.len > 0 && (block..block + blocks).contains(&b));
            let want = match (valid, g.kind) {
                (false, req::IN | req::OUT | req::FLUSH) => status::IOERR,
                (false, _) => status::UNSUPP,
                (true, _) if bad => status::IOERR,
                _ => status::OK,
            };
            assert_eq!(*st, want, "{g:?}");
            if g.kind == req::IN && want == status::OK {
                assert_eq!(*used_len, g.len + 1);
                assert!(
                    self.device
                        .reads
                        .iter()
                        .any(|(sector, bytes)| *sector == g.sector && bytes == data),
                    "a read returned what the device never read: {g:?}"
                );
            } else {
                assert_eq!(*used_len, 1);
            }
        }
        // Flush order: every write queued before a flush was done when it
        // started; no write queued after it started before it ended.
        let flushes: Vec<u64> = self
            .completed
            .iter()
            .filter(|(g, st, _, _)| g.kind == req::FLUSH && *st == status::OK)
            .map(|(g, _, _, _)| g.seq)
            .collect();
        let mut sorted = flushes.clone();
        sorted.sort();
        for (n, flush) in sorted.iter().enumerate() {
            let before: Vec<u64> = self
                .completed
                .iter()
                .filter(|(g, st, _, _)| g.kind == req::OUT && *st == status::OK && g.seq < *flush)
                .map(|(g, _, _, _)| g.seq)
                .collect();
            let seen = self.device.flush_saw[n];
            for w in before {
                assert!(
                    self.device.writes_done[..seen].contains(&w),
                    "write {w} not done before flush {flush}"
                );
            }
            for &(flushes_done, seq) in &self.device.writes_after_flush {
                if seq > *flush {
                    assert!(
                        flushes_done > n as u32,
                        "write {seq} started before flush {flush} ended"
                    );
                }
            }
        }
    }
}

#[test]
fn many_requests_in_flight_complete_out_of_order() {
    let mut w = World::new(RING);
    for b in 0..6u64 {
        assert!(w.queue(req::OUT, b * 8, 4096));
    }
    w.blk();
    assert_eq!(w.backend.in_flight(), 6);
    assert_eq!(w.rings.get(), 1, "one ring for a batch");
    w.driver();
    assert_eq!(w.device.on_device().len(), DEVICE_DEPTH);
    // Finish the last first.
    for s in w.device.on_device().into_iter().rev() {
        w.device.finish(s);
    }
    w.driver();
    w.blk();
    assert_eq!(w.completed.len(), 3);
    w.settle();
    assert_eq!(w.completed.len(), 6);
    for b in 0..6u64 {
        assert!(w.queue(req::IN, b * 8, 4096));
    }
    w.settle();
    w.check();
    for (g, _, _, data) in &w.completed[6..] {
        assert_eq!(
            u64::from_le_bytes(data[..8].try_into().unwrap()),
            1 + g.sector / 8
        );
    }
}

#[test]
fn a_flush_waits_for_the_writes_before_it_and_holds_those_after() {
    let mut w = World::new(RING);
    assert!(w.queue(req::OUT, 0, 4096));
    assert!(w.queue(req::OUT, 8, 4096));
    assert!(w.queue(req::FLUSH, 0, 0));
    assert!(w.queue(req::OUT, 16, 4096));
    w.blk();
    assert_eq!(
        w.backend.in_flight(),
        2,
        "the flush and the write after it wait"
    );
    w.driver();
    for s in w.device.on_device() {
        w.device.finish(s);
    }
    w.driver();
    w.blk();
    assert_eq!(w.backend.in_flight(), 1, "the flush alone");
    w.driver();
    assert_eq!(w.device.on_device().len(), 1);
    w.settle();
    assert_eq!(w.device.flushes, 1);
    w.check();
}

#[test]
fn a_device_that_never_answers_leaves_requests_pending_not_a_pd_stuck() {
    let mut w = World::new(RING);
    for b in 0..GUEST_SLOTS as u64 {
        assert!(w.queue(req::IN, (b % 8) * 8, 4096 * 4));
    }
    for _ in 0..10 {
        w.blk();
        w.driver();
    }
    // The data region holds 4 such requests; the rest wait in the ring.
    assert_eq!(w.backend.in_flight(), 4);
    assert!(w.completed.is_empty());
    // Once it answers, everything completes.
    w.settle();
    assert_eq!(w.completed.len(), GUEST_SLOTS);
    w.check();
}

#[test]
fn failures_and_bad_requests_are_ioerr_and_the_rest_work() {
    let mut w = World::new(RING);
    w.device.bad_block = Some(3);
    assert!(w.queue(req::IN, 3 * 8, 4096));
    assert!(w.queue(req::IN, 1, 4096)); // not block-aligned
    assert!(w.queue(req::OUT, 0, 512)); // not whole blocks
    assert!(w.queue(req::IN, (BLOCKS - 1) * 8, 8192)); // past the end
    assert!(w.queue(req::IN, 0, (DATA + 4096) as u32)); // larger than the data region
    assert!(w.queue(99, 0, 0));
    assert!(w.queue(req::IN, 2 * 8, 4096));
    w.settle();
    w.check();
    assert_eq!(w.completed.len(), 7);
}

#[test]
fn requests_of_a_queue_reset_in_flight_only_free_their_slots() {
    let mut w = World::new(RING);
    for b in 0..4u64 {
        assert!(w.queue(req::IN, b * 8, 4096));
    }
    w.blk();
    w.driver();
    assert_eq!(w.disk.in_flight(), 4);
    // The guest resets the device: a new backend, the rings zeroed.
    w.backend = AsyncBlkBackend::new();
    w.ram.write(AVAIL + 2, &0u16.to_le_bytes()).unwrap();
    w.ram.write(USED + 2, &0u16.to_le_bytes()).unwrap();
    w.ram.write(USED + 4, &[0u8; 64]).unwrap();
    // The old requests finish: nothing reaches the guest's memory.
    for _ in 0..4 {
        for s in w.device.on_device() {
            w.device.finish(s);
        }
        w.driver();
        w.backend
            .process(&w.layout, &mut w.client, &mut w.disk)
            .unwrap();
    }
    let mut used = [0xffu8; 66];
    w.ram.read(USED + 2, &mut used).unwrap();
    assert!(
        used.iter().all(|&b| b == 0),
        "the old requests wrote the new queue's used ring"
    );
    assert_eq!(w.disk.in_flight(), 0);
    assert_eq!(w.backend.in_flight(), 0);
    // And the new queue works, every slot free again.
    w.slots = std::array::from_fn(|_| None);
    w.avail = 0;
    w.used = 0;
    for b in 0..8u64 {
        assert!(w.queue(req::IN, b * 8, 4096));
    }
    w.settle();
    w.check();
}

#[test]
fn a_driver_answering_wrong_ids_is_ignored_and_a_corrupt_ring_fails_requests() {
    use virtio::blk_async::{Op, Refused};
    let leak = |n: usize| -> &'static mut [u8] { Box::leak(vec![0u8; n].into_boxed_slice()) };
    let (req_ring, resp_ring) = (
        buffer(leak(Rings::request_bytes(4))),
        buffer(leak(Rings::response_bytes(4))),
    );
    let rings = Rings::new(req_ring, resp_ring, 4).unwrap();
    let info = buffer(leak(4096));
    publish_storage_info(&info, &StorageInfo::new(BLOCKS, 512, 1)).unwrap();
    let count = Rc::new(Cell::new(0));
    let mut disk: QueueDisk<Bell, 4> = QueueDisk::new(
        RingClient::new(rings),
        info,
        16384,
        4096,
        Bell(count.clone()),
    );
    let mut driver = Driver::new(rings);
    let a = disk.reserve(8192).unwrap();
    let b = disk.reserve(8192).unwrap();
    assert_eq!(
        disk.reserve(4096),
        Err(Refused::Busy),
        "the data region is full"
    );
    assert_eq!(
        disk.reserve(20000),
        Err(Refused::Never),
        "larger than the data region"
    );
    assert_eq!((a.buffer_offset, b.buffer_offset), (4096, 4096 + 8192));
    assert!(disk.submit(a.index, Op::Read, 0, 8192));
    assert!(disk.submit(b.index, Op::Write, 8192, 8192));
    disk.kick();
    disk.kick();
    assert_eq!(count.get(), 1);
    let ra = driver.dequeue().unwrap().unwrap();
    let rb = driver.dequeue().unwrap().unwrap();
    assert_eq!((ra.io_offset, rb.io_offset), (0, 8192));
    // A made-up id, an id with the right slot but an old sequence, and a
    // short count: dropped, dropped, failed.
    driver
        .enqueue(&Response::new(Status::Ok, 2, 0xdead_beef))
        .unwrap();
    driver
        .enqueue(&Response::new(Status::Ok, 2, rb.id ^ 0x100))
        .unwrap();
    driver
        .enqueue(&Response::new(Status::Ok, 1, rb.id))
        .unwrap();
    assert_eq!(disk.complete(), Some((b.index, false)));
    assert_eq!(disk.stats().stale, 2);
    disk.release(b.index);
    assert_eq!(disk.in_flight(), 1);
    // A response ring whose tail jumped: the disk breaks, what was in
    // flight fails, and nothing new is taken.
    resp_ring.write(4, &1000u32.to_le_bytes()).unwrap();
    assert_eq!(disk.complete(), Some((a.index, false)));
    assert_eq!(disk.complete(), None);
    assert!(disk.broken().is_some());
    assert_eq!(disk.reserve(4096), Err(Refused::Never));
    assert_eq!(disk.in_flight(), 0);
}

#[test]
fn requests_queued_while_the_blk_pd_is_preempted_are_not_lost() {
    // The guest's disk hung this way (VMS=2 qemu-test, NET_MTU=65510):
    // the blk PD, completing a read, took its snapshot (nothing new),
    // lost the core, and the guest queued more, reading the old
    // `avail_event` (so without notifying); the blk PD's publication
    // then read the new available index back, and stopped because its
    // own round had started nothing. Nothing was at the disk to run it
    // again. Wherever the guest runs in the call, every request
    // completes.
    for at in 0..8 {
        let mut w = World::new(RING).with_event_idx();
        assert!(w.queue(req::IN, 0, 4096));
        w.blk_if_signalled();
        assert_eq!(w.backend.in_flight(), 1);
        w.driver();
        for s in w.device.on_device() {
            w.device.finish(s);
        }
        w.driver();
        w.blk_preempted(at, &[(req::IN, 8, 4096), (req::OUT, 16, 4096)]);
        w.settle();
        w.check();
        assert_eq!(w.completed.len(), 3, "preempted before call {at}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_interleaving_keeps_the_model(
        ring in prop::sample::select(vec![4u32, 8, 64]),
        bad in prop::option::of(0u64..BLOCKS),
        steps in prop::collection::vec((0u8..10, any::<u8>(), 0u8..6), 1..120),
        event_idx in any::<bool>(),
    ) {
        let mut w = World::new(ring);
        if event_idx {
            // The guest notifies only past avail_event, and the blk PD
            // runs only when signalled: a lost notification is a request
            // that never completes in `settle`.
            w = w.with_event_idx();
        }
        w.device.bad_block = bad;
        for (what, a, b) in steps {
            match what {
                0 | 1 => {
                    let kind = match a % 8 {
                        0..=2 => req::OUT,
                        3..=5 => req::IN,
                        6 => req::FLUSH,
                        _ => 77,
                    };
                    let len = if kind == req::FLUSH || kind == 77 { 0 } else {
                        match b { 0 => 512, 5 => 20 * 4096, n => 4096 * u32::from(n) }
                    };
                    let sector = if a % 16 == 15 { u64::from(a) } else { u64::from(a / 8 % 70) * 8 };
                    w.queue(kind, sector, len);
                }
                2 | 3 => w.blk_if_signalled(),
                // The blk PD runs and the guest queues a request in the
                // middle of it, before its (b)th copy call.
                8 | 9 => {
                    if !w.event_idx || w.kicked || w.backend.in_flight() > 0 {
                        let sector = u64::from(a / 8 % 70) * 8;
                        let kind = if a % 2 == 0 { req::IN } else { req::OUT };
                        w.blk_preempted(usize::from(b), &[(kind, sector, 4096)]);
                    }
                }
                4 | 5 => w.driver(),
                _ => {
                    let on = w.device.on_device();
                    if !on.is_empty() {
                        w.device.finish(on[usize::from(a) % on.len()]);
                    }
                }
            }
        }
        w.settle();
        w.check();
        prop_assert_eq!(w.backend.in_flight(), 0);
        prop_assert_eq!(w.disk.in_flight(), 0);
    }
}
