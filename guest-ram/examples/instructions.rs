// SPDX-License-Identifier: BSD-2-Clause
//! Key operations, repeated, for instruction counts that do not depend on
//! machine noise: `make bench-instructions` runs this under
//! `valgrind --tool=callgrind` with `N` and `2N` repetitions and reports
//! (count(2N) − count(N)) / N, so setup costs cancel.
//!
//! `instructions <op> <repetitions>`; `instructions list` prints the ops.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]

use std::hint::black_box;
use std::ptr::NonNull;

use guest_ram::bookkeeping::{Table, Tree};
use guest_ram::client::Client;
use guest_ram::protocol::{self, Op, Segment, MSG_WORDS};
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};

const GPA: u64 = 0x4000_0000;
const CAP: usize = 2 * 4096 + 4;

const OPS: &[&str] = &[
    "tree_alloc_free_64",
    "tree_alloc_free_4096",
    "table_alloc_free_64",
    "table_alloc_free_4096",
    "tree_largest_free_4096",
    "table_largest_free_4096",
    "ram_read_4k",
    "ram_write_4k",
    "memcpy_4k",
    "ram_check_ram",
    "ping",
    "read_in_place_4k",
    "writev_in_place_4k",
    "server_read_4k",
];

fn holes<T>(
    live: u64,
    x: &mut T,
    register: impl Fn(&mut T, u64, u64),
    alloc: impl Fn(&mut T, u64, u64),
) {
    register(x, GPA, GPA + (2 * live + 2) * 4096);
    for k in 0..live {
        let at = GPA + (2 * k + 1) * 4096;
        alloc(x, at, at + 4096);
    }
}

fn tree(live: u64) -> Box<Tree<CAP>> {
    let mut t: Box<Tree<CAP>> = Box::default();
    holes(
        live,
        &mut *t,
        |t, a, b| t.register(a, b).unwrap(),
        |t, a, b| t.paint(a, b, true).unwrap(),
    );
    t
}

fn table(live: u64) -> Box<Table<CAP>> {
    let mut t: Box<Table<CAP>> = Box::default();
    holes(
        live,
        &mut *t,
        |t, a, b| t.paint(a, b, Some(false)).unwrap(),
        |t, a, b| t.paint(a, b, Some(true)).unwrap(),
    );
    t
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("list");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    if op == "list" {
        println!("{}", OPS.join(" "));
        return;
    }
    let mut backing = vec![1u8; 1 << 20];
    let mut buf = vec![0u8; 4096];
    // SAFETY: `backing` outlives `ram`.
    let region =
        unsafe { MappedRegion::new(GPA, NonNull::new(backing.as_mut_ptr()).unwrap(), 1 << 20) };
    let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
    ram.register_at(GPA, 1 << 20).unwrap();
    match op {
        "tree_alloc_free_64" | "tree_alloc_free_4096" => {
            let mut t = tree(if op.ends_with("4096") { 4096 } else { 64 });
            for _ in 0..n {
                // What `GuestRam::allocate` and `free` run.
                let gpa = t.allocate(black_box(4096), 1).unwrap();
                t.flip_within(gpa, gpa + 4096, false).unwrap().unwrap();
            }
        }
        "table_alloc_free_64" | "table_alloc_free_4096" => {
            let mut t = table(if op.ends_with("4096") { 4096 } else { 64 });
            for _ in 0..n {
                let gpa = t.first_fit(black_box(4096), 1).unwrap();
                t.paint(gpa, gpa + 4096, Some(true)).unwrap();
                t.paint(gpa, gpa + 4096, Some(false)).unwrap();
            }
        }
        "tree_largest_free_4096" => {
            let t = tree(4096);
            for _ in 0..n {
                black_box(t.largest_free());
            }
        }
        "table_largest_free_4096" => {
            let t = table(4096);
            for _ in 0..n {
                black_box(t.largest_free());
            }
        }
        "ram_read_4k" => {
            for _ in 0..n {
                ram.read(black_box(GPA + 0x1000), &mut buf).unwrap();
            }
        }
        "ram_write_4k" => {
            for _ in 0..n {
                ram.write(black_box(GPA + 0x1000), &buf).unwrap();
            }
        }
        "memcpy_4k" => {
            let plain = vec![1u8; 1 << 20];
            for _ in 0..n {
                buf.copy_from_slice(black_box(&plain[0x1000..0x2000]));
            }
        }
        "ram_check_ram" => {
            for _ in 0..n {
                black_box(ram.check_ram(black_box(GPA + 0x1000), 4096).unwrap());
            }
        }
        // The copy service's fixed cost: a client and the server in one
        // address space (`transport::Local`, which copies the message
        // words as the kernel would), 4 KiB through a 64 KiB buffer.
        "ping" | "read_in_place_4k" | "writev_in_place_4k" | "server_read_4k" => {
            let mut shared_memory = vec![0u8; 64 << 10];
            // SAFETY: `shared_memory` outlives the buffer's users below.
            let shared = unsafe {
                SharedBuffer::new(NonNull::new(shared_memory.as_mut_ptr()).unwrap(), 64 << 10)
            };
            let server = std::cell::RefCell::new(Server::<2>::new());
            let window = [Window::read_write(GPA, 1 << 20)];
            server
                .borrow_mut()
                .add_client(ClientConfig::new(1, shared, &window).unwrap())
                .unwrap();
            let mut client = Client::new(Local::new(&server, &ram, 1), shared);
            let segment = [GpaRange {
                gpa: GPA + 0x1000,
                len: 4096,
            }];
            let mut msg = [0u64; MSG_WORDS];
            let (label, words) =
                protocol::encode_copy(Op::Read, &[Segment::new(GPA + 0x1000, 4096, 0)], &mut msg)
                    .unwrap();
            for _ in 0..n {
                match op {
                    "ping" => client.ping().unwrap(),
                    "read_in_place_4k" => {
                        black_box(client.read_in_place(black_box(GPA + 0x1000), 4096).unwrap());
                    }
                    "writev_in_place_4k" => {
                        client.writev_in_place(black_box(&segment)).unwrap();
                    }
                    _ => {
                        let mut regs = msg;
                        black_box(server.borrow_mut().handle(
                            &ram,
                            1,
                            label,
                            words,
                            black_box(&mut regs),
                        ));
                    }
                }
            }
        }
        other => {
            eprintln!("unknown op {other}; ops: {}", OPS.join(" "));
            std::process::exit(2);
        }
    }
    black_box((&buf, &ram));
}
