// SPDX-License-Identifier: BSD-2-Clause
//! The device path end to end on the host: a guest's virtio-blk requests
//! through the blk PD's backend (`virtio::blk::BlkBackend`) and the VMM's
//! copy server, into a `QueueDisk` whose requests cross the sDDF rings to
//! the driver loop (`driver::Serve`) over a RAM "device" that can be told
//! to fail, to be slow, or to never answer.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes; it outlives the buffers"
)]

use std::cell::RefCell;
use std::ptr::NonNull;

use blk_queue::disk::{Doorbell, QueueDisk};
use blk_queue::driver::{BlockDevice, Serve};
use blk_queue::{
    publish_storage_info, Client as RingClient, Code, Driver, Rings, Status, StorageInfo, Transfer,
};
use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use virtio::blk::{req, status, BlkBackend, Disk, ReqHeader};
use virtio::queue::{flags, Desc, Layout};
use zerocopy::IntoBytes;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: each test keeps `memory` alive while the buffer is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

const BLOCKS: u64 = 64;
const DATA: usize = 64 << 10;

/// A RAM device behind the driver loop.
struct RamDevice {
    disk: Vec<u8>,
    data: SharedBuffer,
    started: Option<(Code, Transfer)>,
    /// Polls before a started request completes.
    delay: u32,
    left: u32,
    /// Sectors whose requests fail with an I/O error.
    bad_sector: Option<u64>,
    /// Never completes anything.
    dead: bool,
    flushes: u32,
}

impl BlockDevice for RamDevice {
    fn start(&mut self, code: Code, transfer: &Transfer) -> Result<(), Status> {
        self.started = Some((code, *transfer));
        self.left = self.delay;
        Ok(())
    }
    fn poll(&mut self) -> Option<Status> {
        if self.dead {
            return None;
        }
        if self.left > 0 {
            self.left -= 1;
            return None;
        }
        let (code, t) = self.started.take()?;
        if self.bad_sector == Some(t.sector) {
            return Some(Status::Io);
        }
        let at = t.sector as usize * 512;
        match code {
            Code::Read => self
                .data
                .write(t.data_offset, &self.disk[at..at + t.len])
                .unwrap(),
            Code::Write => self
                .data
                .read(t.data_offset, &mut self.disk[at..at + t.len])
                .unwrap(),
            Code::Flush => self.flushes += 1,
            _ => {}
        }
        Some(Status::Ok)
    }
}

/// The driver PD, run whenever the blk PD rings or waits.
struct Bell {
    serve: Serve,
    device: RamDevice,
    waits: u32,
}

impl Doorbell for Bell {
    fn ring(&mut self) {
        self.serve.run(&mut self.device).unwrap();
    }
    fn wait(&mut self) -> bool {
        self.waits += 1;
        self.serve.run(&mut self.device).unwrap();
        self.waits < 100
    }
}

const GPA: u64 = 0x4000_0000;
const RAM: usize = 1 << 20;
const DESC: u64 = GPA;
const AVAIL: u64 = GPA + 0x1000;
const USED: u64 = GPA + 0x2000;
const HEADER: u64 = GPA + 0x3000;
const STATUS: u64 = GPA + 0x3100;
const BUF: u64 = GPA + 0x1_0000;

struct World {
    guest: Vec<u8>,
    shared: Vec<u8>,
    req: Vec<u8>,
    resp: Vec<u8>,
    info: Vec<u8>,
}

impl World {
    fn new() -> Self {
        World {
            guest: vec![0; RAM],
            shared: vec![0; DATA + 4096],
            req: vec![0; Rings::request_bytes(4)],
            resp: vec![0; Rings::response_bytes(4)],
            info: vec![0; 4096],
        }
    }
}

/// One guest request: type, sector, data buffers as (length, writable),
/// and what the data buffers hold before it.
type GuestRequest = (u32, u64, Vec<(u32, bool)>, Vec<u8>);

/// Runs `requests` (type, sector, data buffers as (len, writable)) one
/// after another through the whole path; `setup` adjusts the device.
/// Returns each request's status and the disk and guest RAM after.
fn run(
    requests: &[GuestRequest],
    setup: impl FnOnce(&mut RamDevice),
) -> (Vec<u8>, Vec<u8>, Vec<u8>, u32) {
    let mut w = World::new();
    let shared = buffer(&mut w.shared);
    let data = shared.sub(0, DATA).unwrap();
    let rings = Rings::new(buffer(&mut w.req), buffer(&mut w.resp), 4).unwrap();
    let info = buffer(&mut w.info);
    publish_storage_info(&info, &StorageInfo::new(BLOCKS, 512, 1)).unwrap();
    let mut device = RamDevice {
        disk: (0..BLOCKS as usize * 4096)
            .map(|i| (i / 4096) as u8)
            .collect(),
        data,
        started: None,
        delay: 3,
        left: 0,
        bad_sector: None,
        dead: false,
        flushes: 0,
    };
    setup(&mut device);
    let bell = Bell {
        serve: Serve::new(Driver::new(rings), DATA as u64, BLOCKS),
        device,
        waits: 0,
    };
    let mut disk = QueueDisk::new(RingClient::new(rings), info, data, 0, bell);
    assert_eq!(disk.len(), BLOCKS * 4096);
    assert_eq!(disk.block_size(), 4096);

    // SAFETY: `w.guest` outlives `ram` and is accessed only through it.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(w.guest.as_mut_ptr()).unwrap(), RAM as u64) };
    let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    ram.register_at(GPA, RAM as u64).unwrap();
    let server = RefCell::new(Server::<1>::new());
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, shared, &[Window::read_write(GPA, RAM as u64)]).unwrap())
        .unwrap();
    let mut client =
        Client::with_staging(Local::new(&server, &ram, 1), shared, DATA, 4096).unwrap();
    let layout = Layout::new(16, DESC, AVAIL, USED).unwrap();
    let mut backend = BlkBackend::new();
    let mut statuses = Vec::new();
    for (n, (kind, sector, bufs, fill)) in requests.iter().enumerate() {
        let header = ReqHeader {
            kind: (*kind).into(),
            reserved: 0.into(),
            sector: (*sector).into(),
        };
        ram.write(HEADER, header.as_bytes()).unwrap();
        ram.write(STATUS, &[0xee]).unwrap();
        if !fill.is_empty() {
            ram.write(BUF, fill).unwrap();
        }
        let mut chain = vec![(HEADER, 16u32, false)];
        let mut at = BUF;
        for &(len, writable) in bufs {
            chain.push((at, len, writable));
            at += u64::from(len);
        }
        chain.push((STATUS, 1, true));
        for (i, &(gpa, len, writable)) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            let f = if writable { flags::WRITE } else { 0 } | if last { 0 } else { flags::NEXT };
            ram.write(
                DESC + 16 * i as u64,
                Desc::new(gpa, len, f, i as u16 + 1).as_bytes(),
            )
            .unwrap();
        }
        ram.write(AVAIL + 4 + 2 * (n as u64 % 16), &0u16.to_le_bytes())
            .unwrap();
        ram.write(AVAIL + 2, &(n as u16 + 1).to_le_bytes()).unwrap();
        assert_eq!(backend.process(&layout, &mut client, &mut disk), Ok(1));
        let mut s = [0u8];
        ram.read(STATUS, &mut s).unwrap();
        statuses.push(s[0]);
    }
    let mut guest = vec![0u8; 0x40000];
    ram.read(BUF, &mut guest).unwrap();
    let bell = disk.doorbell();
    (
        statuses,
        bell.device.disk.clone(),
        guest,
        bell.device.flushes,
    )
}

#[test]
fn reads_writes_and_flushes_cross_the_rings() {
    let pattern: Vec<u8> = (0..12288u32).map(|i| (i * 7 % 251) as u8).collect();
    let (statuses, disk, guest, flushes) = run(
        &[
            // Three blocks written from two guest buffers at block 5.
            (
                req::OUT,
                40,
                vec![(4096, false), (8192, false)],
                pattern.clone(),
            ),
            (req::FLUSH, 0, vec![], vec![]),
            // Read back blocks 5..8 into three buffers of odd sizes.
            (
                req::IN,
                40,
                vec![(1000, true), (7192, true), (4096, true)],
                vec![],
            ),
        ],
        |_| {},
    );
    assert_eq!(statuses, [status::OK; 3]);
    assert_eq!(&disk[5 * 4096..8 * 4096], &pattern[..]);
    assert_eq!(&guest[..12288], &pattern[..]);
    assert_eq!(flushes, 1);
    // Blocks around the write are untouched.
    assert!(disk[4 * 4096..5 * 4096].iter().all(|&b| b == 4));
    assert!(disk[8 * 4096..9 * 4096].iter().all(|&b| b == 8));
}

#[test]
fn more_than_a_window_goes_in_window_fulls() {
    // 96 KiB: the 64 KiB data region, then 32 KiB.
    let pattern: Vec<u8> = (0..96 * 1024u32).map(|i| (i % 253) as u8).collect();
    let (statuses, disk, guest, _) = run(
        &[
            (req::OUT, 8, vec![(96 * 1024, false)], pattern.clone()),
            (req::IN, 8, vec![(96 * 1024, true)], vec![0; 96 * 1024]),
        ],
        |_| {},
    );
    assert_eq!(statuses, [status::OK; 2]);
    assert_eq!(&disk[4096..4096 + 96 * 1024], &pattern[..]);
    assert_eq!(&guest[..96 * 1024], &pattern[..]);
}

#[test]
fn a_failed_device_request_is_ioerr_and_the_next_works() {
    let (statuses, _, guest, _) = run(
        &[
            (req::IN, 16, vec![(4096, true)], vec![]),
            (req::IN, 24, vec![(4096, true)], vec![]),
        ],
        |d| d.bad_sector = Some(16),
    );
    assert_eq!(statuses, [status::IOERR, status::OK]);
    assert!(guest[..4096].iter().all(|&b| b == 3));
}

#[test]
fn requests_that_are_not_whole_blocks_fail() {
    let (statuses, disk, _, _) = run(
        &[
            (req::IN, 1, vec![(4096, true)], vec![]),
            (req::OUT, 0, vec![(512, false)], vec![9; 512]),
            (req::IN, (BLOCKS - 1) * 8, vec![(8192, true)], vec![]),
        ],
        |_| {},
    );
    assert_eq!(statuses, [status::IOERR; 3]);
    assert!(disk[..4096].iter().all(|&b| b == 0));
}

#[test]
fn a_device_that_never_answers_breaks_the_disk_not_the_pd() {
    let (statuses, _, _, _) = run(
        &[
            (req::IN, 0, vec![(4096, true)], vec![]),
            (req::FLUSH, 0, vec![], vec![]),
        ],
        |d| d.dead = true,
    );
    assert_eq!(statuses, [status::IOERR, status::IOERR]);
}
