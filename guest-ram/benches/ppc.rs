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
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};

const GPA: u64 = 0x4000_0000;
const SIZE: usize = 1 << 20;

fn ppc(c: &mut Criterion) {
    let mut guest = vec![7u8; SIZE];
    let mut plain = vec![7u8; SIZE];
    let mut buffer = vec![0u8; 64 << 10];
    // SAFETY: both vectors outlive everything below.
    let (region, shared) = unsafe {
        (
            MappedRegion::new(GPA, NonNull::new(guest.as_mut_ptr()).unwrap(), SIZE as u64),
            SharedBuffer::new(NonNull::new(buffer.as_mut_ptr()).unwrap(), buffer.len()),
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
        let mut out = vec![0u8; len];
        let mut group = c.benchmark_group("ppc_read");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("client_read", len), &len, |b, _| {
            b.iter(|| client.read(black_box(GPA + 0x1000), &mut out).unwrap())
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
            b.iter(|| client.write(black_box(GPA + 0x1000), &out).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("baseline_memcpy", len), &len, |b, _| {
            b.iter(|| plain[0x1000..0x1000 + len].copy_from_slice(black_box(&out)))
        });
        group.finish();
    }
}

criterion_group!(benches, ppc);
criterion_main!(benches);
