// SPDX-License-Identifier: BSD-2-Clause
//! `make bench`: guest-ram's costs against plain baselines measured in the
//! same run. Compare each `guest_ram` line with its `baseline` line.
//!
//! - read/write of 4 KiB, 64 KiB, 1 MiB vs `copy_from_slice` (target ≥ 0.9×)
//! - touch per 4 KiB page (target ≤ 10 ns): `touch_1mib` / 256 pages
//! - allocate + free with 64 live allocations (target ≤ 60 ns), and a
//!   sweep over 16 … 4,096 live allocations (target ≤ 150 ns at 4,096) of
//!   the tree `GuestRam` uses against the sorted table it replaced
//!   (`bookkeeping::{Tree, Table}`, the same first-fit/free sequence)
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: the constructors' obligations are met by keeping it alive"
)]
use core::ptr::NonNull;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use guest_ram::{GuestRam, MappedRegion};

const GPA: u64 = 0x4000_0000;
const SIZE: usize = 4 << 20;

fn ram(backing: &mut [u8]) -> GuestRam<1, 256> {
    // SAFETY: `backing` outlives the returned value in every benchmark.
    let region = unsafe {
        MappedRegion::new(
            GPA,
            NonNull::new(backing.as_mut_ptr()).unwrap(),
            backing.len() as u64,
        )
    };
    let mut ram = GuestRam::new(&[region]).unwrap();
    ram.register_at(GPA, backing.len() as u64).unwrap();
    ram
}

fn copies(c: &mut Criterion) {
    let mut backing = vec![1u8; SIZE];
    let mut plain = vec![1u8; SIZE];
    let ram = ram(&mut backing);
    for len in [4 << 10, 64 << 10, 1 << 20] {
        let mut buf = vec![0u8; len];
        let mut group = c.benchmark_group("read");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("guest_ram", len), &len, |b, _| {
            b.iter(|| ram.read(black_box(GPA + 0x1000), &mut buf).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("baseline", len), &len, |b, _| {
            b.iter(|| buf.copy_from_slice(black_box(&plain[0x1000..0x1000 + len])))
        });
        group.finish();
        let mut group = c.benchmark_group("write");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("guest_ram", len), &len, |b, _| {
            b.iter(|| ram.write(black_box(GPA + 0x1000), &buf).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("baseline", len), &len, |b, _| {
            b.iter(|| plain[0x1000..0x1000 + len].copy_from_slice(black_box(&buf)))
        });
        group.finish();
    }
    drop(ram);
}

fn touch(c: &mut Criterion) {
    let mut backing = vec![0u8; SIZE];
    let ram = ram(&mut backing);
    // 1 MiB = 256 pages: divide the time by 256 for ns per page.
    c.bench_function("touch_1mib_256_pages", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            ram.touch(black_box(GPA), 1 << 20, |chunk| {
                sum = sum.wrapping_add(chunk.len);
                Ok::<(), ()>(())
            })
            .unwrap();
            sum
        })
    });
}

fn allocator(c: &mut Criterion) {
    let mut backing = vec![0u8; SIZE];
    let mut ram = ram(&mut backing);
    // 128 blocks, every other one freed: 64 live allocations, 64 holes.
    let blocks: Vec<u64> = (0..128).map(|_| ram.allocate(4096).unwrap()).collect();
    for gpa in blocks.iter().step_by(2) {
        ram.free(*gpa, 4096).unwrap();
    }
    assert_eq!(ram.extents().filter(|e| e.allocated).count(), 64);
    c.bench_function("allocate_free_64_live", |b| {
        b.iter(|| {
            let gpa = ram.allocate(black_box(4096)).unwrap();
            ram.free(gpa, 4096).unwrap();
        })
    });
    c.bench_function("allocate_free_64_live_last_hole", |b| {
        // First fit has to walk past every live allocation.
        b.iter(|| {
            let gpa = ram.allocate(black_box(8192)).unwrap();
            ram.free(gpa, 8192).unwrap();
        })
    });
}

/// The allocate/free sequence `GuestRam` runs on the tree.
macro_rules! alloc_free {
    ($x:expr) => {{
        let gpa = $x.allocate(black_box(4096), 1).unwrap();
        $x.flip_within(gpa, gpa + 4096, false).unwrap().unwrap();
        gpa
    }};
}

fn sweep(c: &mut Criterion) {
    use guest_ram::bookkeeping::{Table, Tree};
    const CAP: usize = 2 * 4096 + 4;
    let mut group = c.benchmark_group("alloc_free_sweep");
    for live in [16u64, 64, 256, 1024, 4096] {
        // `live` allocations of 4 KiB with a 4 KiB hole before each: the
        // first fit is the first hole, the tree's worst case is its depth.
        let mut tree: Box<Tree<CAP>> = Box::default();
        let mut table: Box<Table<CAP>> = Box::default();
        tree.register(GPA, GPA + (2 * live + 2) * 4096).unwrap();
        table
            .paint(GPA, GPA + (2 * live + 2) * 4096, Some(false))
            .unwrap();
        for k in 0..live {
            let at = GPA + (2 * k + 1) * 4096;
            tree.paint(at, at + 4096, true).unwrap();
            table.paint(at, at + 4096, Some(true)).unwrap();
        }
        group.bench_with_input(BenchmarkId::new("tree", live), &live, |b, _| {
            b.iter(|| alloc_free!(tree))
        });
        group.bench_with_input(BenchmarkId::new("table", live), &live, |b, _| {
            b.iter(|| {
                let gpa = table.first_fit(black_box(4096), 1).unwrap();
                table.paint(gpa, gpa + 4096, Some(true)).unwrap();
                table.paint(gpa, gpa + 4096, Some(false)).unwrap();
                gpa
            })
        });
    }
    group.finish();
}

fn allocator_4096(c: &mut Criterion) {
    let mut backing = vec![0u8; 40 << 20];
    // SAFETY: `backing` outlives `ram`.
    let region = unsafe {
        MappedRegion::new(
            GPA,
            NonNull::new(backing.as_mut_ptr()).unwrap(),
            backing.len() as u64,
        )
    };
    let mut ram: Box<GuestRam<1, 8200>> = Box::new(GuestRam::new(&[region]).unwrap());
    ram.register_at(GPA, 40 << 20).unwrap();
    let blocks: Vec<u64> = (0..8192).map(|_| ram.allocate(4096).unwrap()).collect();
    for gpa in blocks.iter().step_by(2) {
        ram.free(*gpa, 4096).unwrap();
    }
    c.bench_function("allocate_free_4096_live", |b| {
        b.iter(|| {
            let gpa = ram.allocate(black_box(4096)).unwrap();
            ram.free(gpa, 4096).unwrap();
        })
    });
}

criterion_group!(benches, copies, touch, allocator, allocator_4096, sweep);
criterion_main!(benches);
