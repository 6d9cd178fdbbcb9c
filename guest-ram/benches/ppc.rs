// SPDX-License-Identifier: BSD-2-Clause
//! `make bench`: bytes/s through the copy service over the host transport
//! (client → message registers → server checks → copy → reply → client
//! copy out of its buffer), against a plain `copy_from_slice` of the same
//! size in the same run.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]
use core::cell::RefCell;
use core::ptr::NonNull;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use guest_ram::client::Client;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::transport::Local;
use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};

const GPA: u64 = 0x4000_0000;
const SIZE: usize = 1 << 20;

/// Every buffer lives in one allocation at a fixed place: page-aligned,
/// and 2 KiB apart modulo 4 KiB. On this machine class a 64 KiB memmove
/// takes 2.4 µs or 1.15 µs depending only on (dst − src) mod 4 KiB, so
/// buffers wherever the allocator puts them made runs disagree (the 25 µs
/// `client.read` of 64 KiB once reported was not reproducible).
struct Arena {
    memory: Vec<u8>,
    base: usize,
}

impl Arena {
    fn new() -> Self {
        let memory = vec![7u8; 12 << 20];
        let base = (memory.as_ptr() as usize).next_multiple_of(4096) - memory.as_ptr() as usize;
        Arena { memory, base }
    }
    /// `len` bytes at `slot` MiB + `skew` bytes from the aligned base.
    fn at(&mut self, slot: usize, skew: usize, len: usize) -> &mut [u8] {
        let start = self.base + (slot << 20) + skew;
        &mut self.memory[start..start + len]
    }
}

fn ppc(c: &mut Criterion) {
    let mut arena = Arena::new();
    let guest = arena.at(0, 0, SIZE).as_mut_ptr();
    let buffer = arena.at(2, 2048, 64 << 10).as_mut_ptr();
    let out = arena.at(4, 0, 64 << 10).as_mut_ptr();
    let plain = arena.at(6, 2048, SIZE).as_mut_ptr();
    // SAFETY: `arena` outlives everything below, and these four ranges of
    // it do not overlap.
    let (region, shared, out, plain) = unsafe {
        (
            MappedRegion::new(GPA, NonNull::new(guest).unwrap(), SIZE as u64),
            SharedBuffer::new(NonNull::new(buffer).unwrap(), 64 << 10),
            core::slice::from_raw_parts_mut(out, 64 << 10),
            core::slice::from_raw_parts_mut(plain, SIZE),
        )
    };
    let mut ram: GuestRam<1, 16> = GuestRam::new(&[region]).unwrap();
    ram.register_at(GPA, SIZE as u64).unwrap();
    let mut server: Server<1> = Server::new();
    server
        .add_client(ClientConfig::new(1, shared, &[Window::read_write(GPA, SIZE as u64)]).unwrap())
        .unwrap();
    let server = RefCell::new(server);
    let mut client = Client::new(Local::new(&server, &ram, 1), shared);
    for len in [4 << 10, 64 << 10] {
        let out = &mut out[..len];
        let mut group = c.benchmark_group("ppc_read");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("client_read", len), &len, |b, _| {
            b.iter(|| client.read(black_box(GPA + 0x1000), out).unwrap())
        });
        group.bench_with_input(
            BenchmarkId::new("client_read_in_place", len),
            &len,
            |b, _| {
                b.iter(|| black_box(client.read_in_place(black_box(GPA + 0x1000), len).unwrap()[0]))
            },
        );
        group.bench_with_input(BenchmarkId::new("baseline_memcpy", len), &len, |b, _| {
            b.iter(|| out.copy_from_slice(black_box(&plain[0x1000..0x1000 + len])))
        });
        group.finish();
        let mut group = c.benchmark_group("ppc_write");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("client_write", len), &len, |b, _| {
            b.iter(|| client.write(black_box(GPA + 0x1000), out).unwrap())
        });
        let segment = [GpaRange {
            gpa: GPA + 0x1000,
            len: len as u64,
        }];
        group.bench_with_input(
            BenchmarkId::new("client_write_in_place", len),
            &len,
            |b, _| b.iter(|| client.writev_in_place(black_box(&segment)).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("baseline_memcpy", len), &len, |b, _| {
            b.iter(|| plain[0x1000..0x1000 + len].copy_from_slice(black_box(&*out)))
        });
        group.finish();
    }
}

criterion_group!(benches, ppc);
criterion_main!(benches);
