// SPDX-License-Identifier: BSD-2-Clause
//! The host "system": the VMM's and the driver PD's library code wired
//! together in one address space, signals as direct calls.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::cell::RefCell;
use std::ptr::NonNull;

use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use virtio::blk::RamDisk;
use virtio::device::{Action, BlkFrontend, BlkService};
use virtio_blk_guest::{run, Platform, Setup, DMA_LEN};

const RAM_GPA: u64 = 0x4000_0000;
const RAM_LEN: u64 = 16 << 20;
const DMA_GPA: u64 = RAM_GPA + (8 << 20);
const CHANNEL: usize = 1;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: the test keeps `memory` alive and unborrowed while it is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

pub struct Host<'a> {
    ram: &'a GuestRam<1, 16>,
    frontend: BlkFrontend,
    service: BlkService<RamDisk>,
    client: Client<Local<'a, 1, 16, 2>>,
    clock: u64,
    printed: Vec<String>,
}

impl Platform for Host<'_> {
    fn mmio_read(&mut self, offset: u64, width: u8) -> u64 {
        self.frontend.access(offset, width, None).0
    }
    fn mmio_write(&mut self, offset: u64, width: u8, value: u64) {
        if self.frontend.access(offset, width, Some(value)).1 == Action::SignalBackend
            && self.service.notified(&mut self.client)
        {
            self.frontend.backend_signalled();
        }
    }
    fn read(&mut self, gpa: u64, dst: &mut [u8]) {
        self.ram.read(gpa, dst).unwrap();
    }
    fn write(&mut self, gpa: u64, src: &[u8]) {
        self.ram.write(gpa, src).unwrap();
    }
    fn fence(&mut self) {}
    fn now(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
    fn frequency(&mut self) -> u64 {
        1
    }
    fn print(&mut self, line: &str) {
        self.printed.push(line.to_string());
    }
}

/// How the blk PD moves data.
#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// The disk is a region of its own; data goes through a staging buffer
    /// of this many bytes (two copies).
    TwoCopies(usize),
    /// The disk is the client's shared buffer, followed by a staging area
    /// of this many bytes for headers and ring traffic (one copy).
    OneCopy(usize),
}

const DISK_LEN: usize = 1 << 20;

/// Builds the host system with the blk PD's data path `path` and runs `f`
/// as the guest. Returns what `f` returned, the lines the guest printed,
/// and how many requests the copy server refused.
pub fn with_host<R>(
    path: Path,
    f: impl FnOnce(&mut Host<'_>, Setup) -> R,
) -> (R, Vec<String>, u64) {
    let mut guest_memory = vec![0u8; RAM_LEN as usize];
    let mut page_memory = vec![0u8; 4096];
    let (disk_in_buffer, staging_len) = match path {
        Path::TwoCopies(n) => (false, n),
        Path::OneCopy(n) => (true, n),
    };
    // The client's shared buffer (with one copy, the disk and then the
    // staging area), and with two copies a disk of its own.
    let mut shared_memory = vec![0u8; staging_len + if disk_in_buffer { DISK_LEN } else { 0 }];
    let mut own_disk = vec![0u8; if disk_in_buffer { 0 } else { DISK_LEN }];
    // Each mapping is made once and copied to both sides, as both PDs map
    // one region: two `&mut` borrows would invalidate each other.
    let shared = buffer(&mut shared_memory);
    let page = buffer(&mut page_memory);
    // SAFETY: `guest_memory` outlives `ram` and is only accessed through it.
    let region = unsafe {
        MappedRegion::new(
            RAM_GPA,
            NonNull::new(guest_memory.as_mut_ptr()).unwrap(),
            RAM_LEN,
        )
    };
    let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
    ram.register_at(RAM_GPA, RAM_LEN).unwrap();
    let server = RefCell::new(Server::<2>::new());
    let window = Window::read_write(DMA_GPA, DMA_LEN);
    server
        .borrow_mut()
        .add_client(ClientConfig::new(CHANNEL, shared, &[window]).unwrap())
        .unwrap();
    let transport = Local::new(&server, &ram, CHANNEL);
    let (disk, client) = if disk_in_buffer {
        (
            RamDisk::in_buffer(shared.sub(0, DISK_LEN).unwrap(), 0),
            Client::with_staging(transport, shared, DISK_LEN, staging_len).unwrap(),
        )
    } else {
        (
            RamDisk::new(buffer(&mut own_disk)),
            Client::new(transport, shared),
        )
    };
    let mut host = Host {
        ram: &ram,
        frontend: BlkFrontend::new(page),
        service: BlkService::new(page, disk),
        client,
        clock: 0,
        printed: Vec::new(),
    };
    let setup = Setup {
        dma: DMA_GPA,
        outside_window: RAM_GPA + 0x1000,
        not_ram: 0x8000_0000,
    };
    let result = f(&mut host, setup);
    let refusals = server.borrow().refusals(CHANNEL).unwrap();
    (result, host.printed, u64::from(refusals))
}

/// The guest's whole suite.
pub fn suite(path: Path) -> (virtio_blk_guest::Summary, Vec<String>, u64) {
    with_host(path, |host, setup| run(host, setup))
}
