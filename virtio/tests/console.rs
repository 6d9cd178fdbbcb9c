// SPDX-License-Identifier: BSD-2-Clause
//! virtio-console end to end on the host: the VMM's `ConsoleFrontend`
//! (driven through its registers) and `guest_ram::Server`, the serial
//! PD's `ConsoleService` with a copy-service `Client` over
//! `transport::Local`, and a simulated driver posting transmit and
//! receive chains in guest RAM. Signals are direct calls.
//!
//! The proptest checks against a model (two byte streams) that random
//! guest writes, split into random chains, and random sink room and input
//! deliver exactly the bytes, in order, none lost, none duplicated.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ptr::NonNull;

use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GuestRam, MappedRegion};
use proptest::prelude::*;
use virtio::console::{ConsoleFrontend, ConsoleService, ConsoleSink, RECEIVEQ, TRANSMITQ};
use virtio::device::Action;
use virtio::mmio::{feature, reg, status, INT_USED_BUFFER};
use virtio::queue::{flags, Desc};
use zerocopy::IntoBytes;

use common::{buffer, DriverQueue};

const RAM_GPA: u64 = 0x4000_0000;
const RAM_LEN: u64 = 1 << 20;
/// The serial PD's window: all it may touch of the guest.
const WINDOW: u64 = RAM_GPA + 0x8_0000;
const WINDOW_LEN: u64 = 0x4_0000;
const SIZE: u16 = 16;
/// Bytes of guest buffer behind each descriptor.
const SLOT: u64 = 64;
const CHANNEL: usize = 1;

/// The driver's side of queue `n`, in the serial PD's window.
fn driver_queue(n: usize) -> DriverQueue {
    DriverQueue::new(WINDOW + 0x1_0000 * n as u64, SIZE, SLOT)
}

struct Uart {
    out: Vec<u8>,
    room: usize,
}

impl ConsoleSink for Uart {
    fn room(&self) -> usize {
        self.room
    }
    fn write(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room, "sink overfilled");
        self.room -= bytes.len();
        self.out.extend_from_slice(bytes);
    }
}

struct System<'a> {
    ram: &'a GuestRam<1, 16>,
    frontend: ConsoleFrontend,
    service: ConsoleService,
    client: Client<Local<'a, 1, 16, 1>>,
    uart: Uart,
    tx: DriverQueue,
    rx: DriverQueue,
    interrupts: u32,
}

impl System<'_> {
    fn w(&mut self, offset: u64, value: u32) -> Action {
        self.frontend.access(offset, 4, Some(u64::from(value))).1
    }

    fn r(&mut self, offset: u64) -> u32 {
        self.frontend.access(offset, 4, None).0 as u32
    }

    /// The driver's initialisation (§3.1.1), both queues, `DRIVER_OK`.
    fn start(&mut self) {
        self.w(reg::STATUS, 0);
        let mut s = status::ACKNOWLEDGE | status::DRIVER;
        self.w(reg::STATUS, s);
        assert_eq!(self.r(reg::DEVICE_ID), 3);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (feature::VERSION_1 >> 32) as u32);
        s |= status::FEATURES_OK;
        self.w(reg::STATUS, s);
        assert_ne!(self.r(reg::STATUS) & status::FEATURES_OK, 0);
        for (n, q) in [(RECEIVEQ, 0), (TRANSMITQ, 1)] {
            let layout = if q == 0 {
                self.rx.layout
            } else {
                self.tx.layout
            };
            self.w(reg::QUEUE_SEL, n as u32);
            self.w(reg::QUEUE_NUM, u32::from(SIZE));
            for (low, gpa) in [
                (reg::QUEUE_DESC_LOW, layout.desc_table().gpa),
                (reg::QUEUE_DRIVER_LOW, layout.avail_flags_gpa()),
                (reg::QUEUE_DEVICE_LOW, layout.used_idx_gpa() - 2),
            ] {
                self.w(low, gpa as u32);
                self.w(low + 4, (gpa >> 32) as u32);
            }
            assert_eq!(self.w(reg::QUEUE_READY, 1), Action::SignalBackend);
            self.signal_backend(&[]);
        }
        self.w(reg::STATUS, s | status::DRIVER_OK);
    }

    /// The backend PD's signal handler: transmit, and receive `input`;
    /// returns the input bytes consumed.
    fn signal_backend(&mut self, input: &[u8]) -> usize {
        let tx = self.service.transmit(&mut self.client, &mut self.uart);
        let rx = self.service.receive(&mut self.client, input);
        if tx.signal || rx.signal {
            self.frontend.backend_signalled();
        }
        let pending = self.r(reg::INTERRUPT_STATUS);
        if pending & INT_USED_BUFFER != 0 {
            self.interrupts += 1;
            self.w(reg::INTERRUPT_ACK, pending);
        }
        rx.consumed
    }

    fn notify(&mut self, queue: usize, input: &[u8]) -> usize {
        match self.w(reg::QUEUE_NOTIFY, queue as u32) {
            Action::SignalBackend => self.signal_backend(input),
            Action::None => 0,
        }
    }
}

fn with_system<R>(staging: usize, f: impl FnOnce(&mut System<'_>) -> R) -> R {
    let mut guest = vec![0u8; RAM_LEN as usize];
    let mut page_memory = vec![0u8; 4096];
    let mut shared_memory = vec![0u8; staging];
    let page = buffer(&mut page_memory);
    let shared = buffer(&mut shared_memory);
    // SAFETY: `guest` outlives `ram` and is only accessed through it.
    let region =
        unsafe { MappedRegion::new(RAM_GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), RAM_LEN) };
    let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
    ram.register_at(RAM_GPA, RAM_LEN).unwrap();
    let server = RefCell::new(Server::<1>::new());
    server
        .borrow_mut()
        .add_client(
            ClientConfig::new(CHANNEL, shared, &[Window::read_write(WINDOW, WINDOW_LEN)]).unwrap(),
        )
        .unwrap();
    let mut system = System {
        ram: &ram,
        frontend: ConsoleFrontend::new(page),
        service: ConsoleService::new(page),
        client: Client::new(Local::new(&server, &ram, CHANNEL), shared),
        uart: Uart {
            out: Vec::new(),
            room: 1 << 20,
        },
        tx: driver_queue(TRANSMITQ),
        rx: driver_queue(RECEIVEQ),
        interrupts: 0,
    };
    system.start();
    f(&mut system)
}

#[test]
fn the_guest_writes_and_reads_through_the_copy_service() {
    with_system(4096, |sys| {
        assert!(sys.tx.post(sys.ram, &[b"hello ".to_vec()], false));
        assert!(sys.tx.post(
            sys.ram,
            &[b"from ".to_vec(), b"the guest\n".to_vec()],
            false
        ));
        let before = sys.service.stats().calls;
        sys.notify(TRANSMITQ, &[]);
        assert_eq!(sys.uart.out, b"hello from the guest\n");
        assert_eq!(sys.interrupts, 1);
        assert_eq!(sys.tx.reclaim(sys.ram), [vec![], vec![]]);
        let stats = sys.service.stats();
        // 3 calls for the two chains: snapshot, one gather, used ring.
        assert_eq!((stats.chains_out, stats.bytes_out), (2, 21));
        assert_eq!(stats.calls - before, 3);

        assert!(sys.rx.post(sys.ram, &[vec![0; 4]], true));
        assert!(sys.rx.post(sys.ram, &[vec![0; 2], vec![0; 8]], true));
        let consumed = sys.notify(RECEIVEQ, b"ls -l\n");
        assert_eq!(consumed, 6);
        assert_eq!(sys.rx.reclaim(sys.ram), [b"ls -".to_vec(), b"l\n".to_vec()]);
        assert_eq!(sys.interrupts, 2);
        assert_eq!(sys.service.stats().dropped, 0);
    });
}

#[test]
fn a_full_uart_holds_chains_back_until_it_drains() {
    with_system(4096, |sys| {
        sys.uart.room = 4;
        for piece in [b"abc".as_slice(), b"def", b"g"] {
            assert!(sys.tx.post(sys.ram, &[piece.to_vec()], false));
        }
        sys.notify(TRANSMITQ, &[]);
        assert_eq!(sys.uart.out, b"abc");
        assert_eq!(sys.tx.reclaim(sys.ram).len(), 1);
        // The serial PD drained and signals itself.
        sys.uart.room = 100;
        sys.signal_backend(&[]);
        assert_eq!(sys.uart.out, b"abcdefg");
        assert_eq!(sys.tx.reclaim(sys.ram).len(), 2);
    });
}

#[test]
fn setting_up_a_queue_again_restarts_it_and_not_the_other() {
    with_system(4096, |sys| {
        assert!(sys.tx.post(sys.ram, &[b"one".to_vec()], false));
        sys.notify(TRANSMITQ, &[]);
        sys.tx.reclaim(sys.ram);
        // A reset and a fresh setup start both queues at index 0.
        sys.tx = driver_queue(TRANSMITQ);
        sys.rx = driver_queue(RECEIVEQ);
        for q in [&sys.tx, &sys.rx] {
            for part in [q.layout.avail_idx_gpa(), q.layout.used_idx_gpa()] {
                sys.ram.write(part, &[0, 0]).unwrap();
            }
        }
        sys.start();
        assert!(sys.tx.post(sys.ram, &[b"two".to_vec()], false));
        sys.notify(TRANSMITQ, &[]);
        assert_eq!(sys.uart.out, b"onetwo");
        assert_eq!(sys.tx.reclaim(sys.ram).len(), 1);
        assert_eq!(sys.service.stats().broken, 0);
    });
}

#[test]
fn a_descriptor_loop_makes_the_device_need_a_reset() {
    with_system(4096, |sys| {
        let table = sys.tx.layout.desc_table().gpa;
        sys.ram
            .write(table, Desc::new(WINDOW, 1, flags::NEXT, 0).as_bytes())
            .unwrap();
        let ring = sys.tx.layout.avail_ring().gpa;
        sys.ram.write(ring, &0u16.to_le_bytes()).unwrap();
        sys.ram
            .write(sys.tx.layout.avail_idx_gpa(), &1u16.to_le_bytes())
            .unwrap();
        sys.notify(TRANSMITQ, &[]);
        assert_ne!(sys.r(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(sys.service.stats().broken, 1);
    });
}

#[derive(Clone, Debug)]
enum Op {
    /// The guest writes these bytes, split into chains and buffers at
    /// these points, and notifies.
    Write(Vec<u8>, Vec<usize>),
    /// The UART drains: this much room, and the serial PD signals itself.
    Drain(usize),
    /// The guest posts receive chains of these buffer lengths and
    /// notifies.
    Post(Vec<Vec<u8>>),
    /// Input arrives at the serial PD.
    Input(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 1..200),
            proptest::collection::vec(0usize..1000, 0..8)
        )
            .prop_map(|(b, s)| Op::Write(b, s)),
        (0usize..300).prop_map(Op::Drain),
        proptest::collection::vec(proptest::collection::vec(0u8..1, 1..64), 1..4)
            .prop_map(Op::Post),
        proptest::collection::vec(any::<u8>(), 1..100).prop_map(Op::Input),
    ]
}

/// Splits `bytes` at `cuts` into chains of at most 4 buffers of at most
/// `SLOT` bytes.
fn chains(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<Vec<u8>>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % bytes.len()).collect();
    let mut at = 0;
    while at < bytes.len() {
        at += SLOT as usize;
        points.push(at.min(bytes.len()));
    }
    points.push(bytes.len());
    points.sort();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points {
        if p > start {
            pieces.push(bytes[start..p].to_vec());
            start = p;
        }
    }
    pieces
        .chunks(1 + cuts.len() % 4)
        .map(|c| c.to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 }))]
    #[test]
    fn bytes_arrive_once_and_in_order(ops in proptest::collection::vec(op(), 1..40)) {
        with_system(512, |sys| {
            sys.uart.room = 0;
            // The model: what the guest wrote, what the host typed.
            let mut written = Vec::new();
            let mut typed = Vec::new();
            let mut input: VecDeque<u8> = VecDeque::new();
            let mut received = Vec::new();
            // Chains the guest could not post yet (out of descriptors).
            let mut backlog: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Write(bytes, cuts) => {
                        written.extend_from_slice(&bytes);
                        backlog.extend(chains(&bytes, &cuts));
                    }
                    Op::Drain(n) => sys.uart.room += n,
                    Op::Post(buffers) => {
                        if sys.rx.post(sys.ram, &buffers, true) {
                            let pending: Vec<u8> = input.iter().copied().collect();
                            let n = sys.notify(RECEIVEQ, &pending);
                            input.drain(..n);
                        }
                    }
                    Op::Input(bytes) => {
                        typed.extend_from_slice(&bytes);
                        input.extend(bytes);
                    }
                }
                while let Some(chain) = backlog.front() {
                    if !sys.tx.post(sys.ram, chain, false) {
                        break;
                    }
                    backlog.pop_front();
                }
                let pending: Vec<u8> = input.iter().copied().collect();
                let n = sys.notify(TRANSMITQ, &pending);
                input.drain(..n);
                sys.tx.reclaim(sys.ram);
                for chain in sys.rx.reclaim(sys.ram) {
                    received.extend(chain);
                }
                // Never more than was written, always a prefix.
                prop_assert!(written.starts_with(&sys.uart.out));
                prop_assert!(typed.starts_with(&received));
                prop_assert_eq!(received.len() + input.len(), typed.len());
            }
            // Drain everything: every byte arrives.
            sys.uart.room = usize::MAX / 2;
            while let Some(chain) = backlog.pop_front() {
                sys.signal_backend(&[]);
                sys.tx.reclaim(sys.ram);
                prop_assert!(sys.tx.post(sys.ram, &chain, false));
            }
            sys.signal_backend(&[]);
            sys.tx.reclaim(sys.ram);
            prop_assert_eq!(&sys.uart.out, &written);
            prop_assert_eq!(sys.service.stats().dropped, 0);
            Ok(())
        })?;
    }
}
