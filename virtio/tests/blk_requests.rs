// SPDX-License-Identifier: BSD-2-Clause
//! Single requests through the virtio-blk backend, chains built by hand:
//! the framing rules a driver can get wrong (where the status byte is,
//! which way the data goes, how many segments), and the device-needs-reset
//! report for a queue refused before `DRIVER_OK`.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

mod common;

use std::cell::RefCell;
use std::ptr::NonNull;

use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion};
use virtio::blk::{req, status, BlkBackend, RamDisk, ReqHeader, SEG_MAX};
use virtio::device::{Action, BlkFrontend, BlkService};
use virtio::mmio::{self, blk_feature, reg, INT_CONFIG_CHANGE};
use virtio::queue::{flags, Desc, Layout};
use zerocopy::IntoBytes;

use common::buffer;

const GPA: u64 = 0x4000_0000;
const RAM: usize = 1 << 20;
const DESC: u64 = GPA;
const AVAIL: u64 = GPA + 0x1000;
const USED: u64 = GPA + 0x2000;
const HEADER: u64 = GPA + 0x3000;
const STATUS: u64 = GPA + 0x3100;
const DATA: u64 = GPA + 0x1_0000;
const SIZE: u16 = 256;

/// One buffer of a hand-built chain.
#[derive(Clone, Copy)]
struct B {
    gpa: u64,
    len: u32,
    writable: bool,
}

fn r(gpa: u64, len: u32) -> B {
    B {
        gpa,
        len,
        writable: false,
    }
}

fn w(gpa: u64, len: u32) -> B {
    B {
        gpa,
        len,
        writable: true,
    }
}

/// What one request left behind.
struct Outcome {
    used_len: u32,
    status: u8,
    /// The first 64 KiB of the data area after the request.
    data: Vec<u8>,
}

/// Serves one request of type `kind` at `sector`, framed by `chain` (the
/// header and status buffers included), from a 256 KiB disk of `0x5a`s;
/// the data area starts as `0xa5`s and the status byte as `0xee`.
fn serve(kind: u32, sector: u64, chain: &[B]) -> Outcome {
    let mut guest = vec![0u8; RAM];
    let mut staging = vec![0u8; 64 << 10];
    let mut disk = vec![0x5au8; 256 << 10];
    let shared = buffer(&mut staging);
    // SAFETY: `guest` outlives `ram` and is accessed only through it.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), RAM as u64) };
    let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    ram.register_at(GPA, RAM as u64).unwrap();
    let header = ReqHeader {
        kind: kind.into(),
        reserved: 0.into(),
        sector: sector.into(),
    };
    ram.write(HEADER, header.as_bytes()).unwrap();
    ram.write(STATUS, &[0xee]).unwrap();
    ram.fill(DATA, 64 << 10, 0xa5).unwrap();
    for (i, b) in chain.iter().enumerate() {
        let last = i + 1 == chain.len();
        let f = if b.writable { flags::WRITE } else { 0 } | if last { 0 } else { flags::NEXT };
        let d = Desc::new(b.gpa, b.len, f, i as u16 + 1);
        ram.write(DESC + 16 * i as u64, d.as_bytes()).unwrap();
    }
    ram.write(AVAIL + 2, &1u16.to_le_bytes()).unwrap();
    let server = RefCell::new(Server::<1>::new());
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, shared, &[Window::read_write(GPA, RAM as u64)]).unwrap())
        .unwrap();
    let mut client = Client::new(Local::new(&server, &ram, 1), shared);
    let mut disk = RamDisk::new(buffer(&mut disk));
    let layout = Layout::new(SIZE, DESC, AVAIL, USED).unwrap();
    let mut backend = BlkBackend::new();
    assert_eq!(backend.process(&layout, &mut client, &mut disk), Ok(1));
    let mut elem = [0u8; 8];
    ram.read(USED + 4, &mut elem).unwrap();
    let mut s = [0u8];
    ram.read(STATUS, &mut s).unwrap();
    let mut data = vec![0u8; 64 << 10];
    ram.read(DATA, &mut data).unwrap();
    Outcome {
        used_len: u32::from_le_bytes(elem[4..].try_into().unwrap()),
        status: s[0],
        data,
    }
}

#[test]
fn an_honest_read_and_write() {
    let o = serve(req::IN, 0, &[r(HEADER, 16), w(DATA, 1024), w(STATUS, 1)]);
    assert_eq!((o.status, o.used_len), (status::OK, 1025));
    assert!(o.data[..1024].iter().all(|&b| b == 0x5a));
    let o = serve(req::OUT, 0, &[r(HEADER, 16), r(DATA, 1024), w(STATUS, 1)]);
    assert_eq!((o.status, o.used_len), (status::OK, 1));
}

#[test]
fn a_status_descriptor_of_length_zero_is_used_with_length_zero_and_nothing_written() {
    // (b): the chain's final descriptor is empty, so there is no status
    // byte. The data buffer's last byte is not one either.
    let o = serve(req::IN, 0, &[r(HEADER, 16), w(DATA, 512), w(STATUS, 0)]);
    assert_eq!(o.used_len, 0);
    assert_eq!(o.status, 0xee);
    assert!(o.data.iter().all(|&b| b == 0xa5), "nothing may be written");
    // A chain with no writable descriptor at all: the same.
    let o = serve(req::OUT, 0, &[r(HEADER, 16), r(DATA, 512)]);
    assert_eq!((o.used_len, o.status), (0, 0xee));
}

#[test]
fn a_read_into_a_device_readable_buffer_fails() {
    // (c): the only data buffer of an IN is device-readable.
    let o = serve(req::IN, 0, &[r(HEADER, 16), r(DATA, 512), w(STATUS, 1)]);
    assert_eq!((o.status, o.used_len), (status::IOERR, 1));
    assert!(o.data.iter().all(|&b| b == 0xa5));
    // Mixed: a readable data buffer beside a writable one.
    let o = serve(
        req::IN,
        0,
        &[
            r(HEADER, 16),
            r(DATA, 512),
            w(DATA + 512, 512),
            w(STATUS, 1),
        ],
    );
    assert_eq!(o.status, status::IOERR);
    assert!(o.data.iter().all(|&b| b == 0xa5));
    // A read with no data at all transfers nothing: also an error.
    let o = serve(req::IN, 0, &[r(HEADER, 16), w(STATUS, 1)]);
    assert_eq!(o.status, status::IOERR);
    // And a write whose data buffer is device-writable.
    let o = serve(req::OUT, 0, &[r(HEADER, 16), w(DATA, 512), w(STATUS, 1)]);
    assert_eq!(o.status, status::IOERR);
}

fn segments(n: usize, writable: bool) -> Vec<B> {
    let mut chain = vec![r(HEADER, 16)];
    chain.extend((0..n as u64).map(|i| B {
        gpa: DATA + 512 * i,
        len: 512,
        writable,
    }));
    chain.push(w(STATUS, 1));
    chain
}

#[test]
fn seg_max_is_offered_and_enforced() {
    // (d): the limit the device offers is the one it enforces.
    let dev = mmio::MmioDevice::new(mmio::BlkConfig::new(8));
    assert_ne!(dev.device_features() & blk_feature::SEG_MAX, 0);
    assert_eq!(dev.read(reg::CONFIG + 12, 4).value(), SEG_MAX as u64);
    for writable in [true, false] {
        let kind = if writable { req::IN } else { req::OUT };
        let o = serve(kind, 0, &segments(SEG_MAX, writable));
        assert_eq!(o.status, status::OK, "{SEG_MAX} segments");
        for n in [SEG_MAX + 1, usize::from(SIZE) - 2] {
            let o = serve(kind, 0, &segments(n, writable));
            assert_eq!(o.status, status::IOERR, "{n} segments");
            assert!(o.data.iter().all(|&b| b == 0xa5));
        }
    }
}

#[test]
fn a_queue_refused_before_driver_ok_raises_device_needs_reset() {
    // (a): the rings are outside RAM; the backend finds out when the queue
    // becomes ready, before DRIVER_OK, and the device must still say so.
    let mut page_memory = vec![0u8; 4096];
    let page = buffer(&mut page_memory);
    let mut guest = vec![0u8; RAM];
    let mut staging = vec![0u8; 4096];
    let shared = buffer(&mut staging);
    let mut disk = vec![0u8; 4096];
    // SAFETY: `guest` outlives `ram` and is accessed only through it.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), RAM as u64) };
    let mut ram = GuestRam::<1, 8>::new(&[region]).unwrap();
    ram.register_at(GPA, RAM as u64).unwrap();
    let server = RefCell::new(Server::<1>::new());
    server
        .borrow_mut()
        .add_client(ClientConfig::new(1, shared, &[Window::read_write(GPA, RAM as u64)]).unwrap())
        .unwrap();
    let mut client = Client::new(Local::new(&server, &ram, 1), shared);
    let mut frontend = BlkFrontend::new(page);
    let mut service = BlkService::new(page, RamDisk::new(buffer(&mut disk)));
    let mut write = |frontend: &mut BlkFrontend, offset: u64, value: u64| {
        if frontend.access(offset, 4, Some(value)).1 == Action::SignalBackend
            && service.notified(&mut client)
        {
            frontend.backend_signalled();
        }
    };
    use virtio::mmio::status as st;
    let s = st::ACKNOWLEDGE | st::DRIVER | st::FEATURES_OK;
    write(
        &mut frontend,
        reg::STATUS,
        u64::from(st::ACKNOWLEDGE | st::DRIVER),
    );
    write(&mut frontend, reg::DRIVER_FEATURES_SEL, 1);
    write(&mut frontend, reg::DRIVER_FEATURES, 1);
    write(&mut frontend, reg::STATUS, u64::from(s));
    write(&mut frontend, reg::QUEUE_SEL, 0);
    write(&mut frontend, reg::QUEUE_NUM, 16);
    let outside = 0x8000_0000u64;
    write(&mut frontend, reg::QUEUE_DESC_LOW, outside);
    write(&mut frontend, reg::QUEUE_DRIVER_LOW, outside + 0x1000);
    write(&mut frontend, reg::QUEUE_DEVICE_LOW, outside + 0x2000);
    write(&mut frontend, reg::QUEUE_READY, 1);
    let status = frontend.access(reg::STATUS, 4, None).0 as u32;
    assert_ne!(status & st::DEVICE_NEEDS_RESET, 0, "{status:#x}");
    write(&mut frontend, reg::STATUS, u64::from(s | st::DRIVER_OK));
    let status = frontend.access(reg::STATUS, 4, None).0 as u32;
    assert_ne!(status & st::DEVICE_NEEDS_RESET, 0, "{status:#x}");
    assert_ne!(status & st::DRIVER_OK, 0);
    let interrupt = frontend.access(reg::INTERRUPT_STATUS, 4, None).0 as u32;
    assert_ne!(interrupt & INT_CONFIG_CHANGE, 0);
    // A notification on the broken queue does nothing; a reset clears it.
    write(&mut frontend, reg::QUEUE_NOTIFY, 0);
    write(&mut frontend, reg::STATUS, 0);
    assert_eq!(frontend.access(reg::STATUS, 4, None).0, 0);
}

#[test]
fn event_idx_is_offered_and_reaches_the_backend_only_if_accepted() {
    use virtio::mmio::{feature, status as st};
    use virtio::shared;
    for accept in [false, true] {
        let mut page_memory = vec![0u8; 4096];
        let page = buffer(&mut page_memory);
        let mut frontend = BlkFrontend::new(page);
        let w = |frontend: &mut BlkFrontend, offset: u64, value: u64| {
            frontend.access(offset, 4, Some(value)).1
        };
        w(
            &mut frontend,
            reg::STATUS,
            u64::from(st::ACKNOWLEDGE | st::DRIVER),
        );
        w(&mut frontend, reg::DEVICE_FEATURES_SEL, 0);
        let low = frontend.access(reg::DEVICE_FEATURES, 4, None).0;
        assert_ne!(low & feature::RING_EVENT_IDX, 0);
        let low = if accept {
            low
        } else {
            low & !feature::RING_EVENT_IDX
        };
        w(&mut frontend, reg::DRIVER_FEATURES_SEL, 0);
        w(&mut frontend, reg::DRIVER_FEATURES, low);
        w(&mut frontend, reg::DRIVER_FEATURES_SEL, 1);
        w(&mut frontend, reg::DRIVER_FEATURES, 1);
        let s = st::ACKNOWLEDGE | st::DRIVER | st::FEATURES_OK;
        w(&mut frontend, reg::STATUS, u64::from(s));
        assert_ne!(
            frontend.access(reg::STATUS, 4, None).0 as u32 & st::FEATURES_OK,
            0
        );
        w(&mut frontend, reg::QUEUE_SEL, 0);
        w(&mut frontend, reg::QUEUE_NUM, 16);
        w(&mut frontend, reg::QUEUE_DESC_LOW, GPA);
        w(&mut frontend, reg::QUEUE_DRIVER_LOW, GPA + 0x1000);
        w(&mut frontend, reg::QUEUE_DEVICE_LOW, GPA + 0x2000);
        assert_eq!(w(&mut frontend, reg::QUEUE_READY, 1), Action::SignalBackend);
        let state = shared::read_queue(&page).unwrap();
        assert_eq!(state.event_idx(), accept);
        let layout = state.layout().unwrap().unwrap();
        assert_eq!(layout.event_idx(), accept);
        // A reset forgets it.
        w(&mut frontend, reg::STATUS, 0);
        assert!(!shared::read_queue(&page).unwrap().event_idx());
    }
}
