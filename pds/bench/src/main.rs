// SPDX-License-Identifier: BSD-2-Clause
//! The benchmark PD of `make bench-qemu` (Microkit `benchmark` config, no
//! kernel printing): runs `guest_ram::benchmark` over real PPC with the
//! cycle counter and writes the table to the PL011 UART it maps. Glue only.
#![allow(
    unsafe_code,
    reason = "maps its buffer, scratch regions and the UART that system.xml gives it, and reads the cycle counter"
)]
#![no_std]
#![no_main]

use core::fmt::Write;

use common::Ppc;
use guest_ram::benchmark;
use guest_ram::client::Client;
use guest_ram::SharedBuffer;
use sel4_microkit::{memory_region_symbol, protection_domain, var, Channel, NullHandler};

/// The guest RAM this client's window covers (`pds/vmm`: `BENCH_OFFSET`).
const BENCH_GPA: u64 = common::LAYOUT.gpa + common::BENCH_OFFSET;

/// The QEMU virt PL011: data register at 0, flags at 0x18 (bit 5: TX full).
struct Uart(*mut u32);

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            // SAFETY: `system.xml` maps the UART's page here, uncached.
            unsafe {
                while core::ptr::read_volatile(self.0.add(0x18 / 4)) & (1 << 5) != 0 {}
                core::ptr::write_volatile(self.0, u32::from(byte));
            }
        }
        Ok(())
    }
}

/// The PMU cycle counter (Microkit's benchmark config lets EL0 use it).
/// `make bench-qemu` is AArch64 only; elsewhere this PD is built (one cargo
/// run builds every PD) but never part of a system.
#[cfg(target_arch = "aarch64")]
fn cycles() -> u64 {
    let value: u64;
    // SAFETY: reads a counter register; no memory is touched.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", out(reg) value, options(nostack)) };
    value
}

#[cfg(not(target_arch = "aarch64"))]
fn cycles() -> u64 {
    0
}

#[cfg(not(target_arch = "aarch64"))]
fn enable_cycles() {}

#[cfg(target_arch = "aarch64")]
fn enable_cycles() {
    // SAFETY: enables the cycle counter (PMCR.E, PMCNTENSET.C); EL0 may
    // write these registers in the benchmark config.
    unsafe {
        core::arch::asm!(
            "mrs {t}, pmcr_el0", "orr {t}, {t}, #1", "msr pmcr_el0, {t}",
            "mov {t}, #(1 << 31)", "msr pmcntenset_el0, {t}", "isb",
            t = out(reg) _, options(nostack)
        );
    }
}

#[protection_domain]
fn init() -> NullHandler {
    let mut uart = Uart(memory_region_symbol!(uart_vaddr: *mut u32).as_ptr());
    // SAFETY: `system.xml` maps these regions here, read-write, for the
    // PD's whole life.
    let (buffer, a, b) = unsafe {
        (
            SharedBuffer::new(
                memory_region_symbol!(buffer_vaddr: *mut u8),
                *var!(buffer_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(scratch_a_vaddr: *mut u8),
                *var!(scratch_a_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(scratch_b_vaddr: *mut u8),
                *var!(scratch_b_size: usize = 0),
            ),
        )
    };
    let mut client = Client::new(Ppc(Channel::new(*var!(vmm_channel: usize = 0))), buffer);
    enable_cycles();
    let mut scratch = [0u8; 64 << 10];
    let _ = writeln!(
        uart,
        "bench-qemu: operation         size      cycles per op"
    );
    let failed = benchmark::run(
        &mut client,
        BENCH_GPA,
        &mut scratch,
        &a,
        &b,
        cycles,
        |row| {
            let _ = writeln!(uart, "bench-qemu: {row}");
        },
    );
    let _ = writeln!(uart, "bench-qemu: done ({failed} failed)");
    NullHandler::new()
}
