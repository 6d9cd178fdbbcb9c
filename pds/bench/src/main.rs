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
fn enable_cycles(_: bool) {}

/// Enables the cycle counter (PMCR.E, PMCNTENSET.C). It counts at EL0 and
/// EL1 (the PDs); with `kernel`, at EL2 too (PMCCFILTR_EL0.NSH): seL4 runs
/// at EL2 when it is a hypervisor, and the reset filter leaves it out.
#[cfg(target_arch = "aarch64")]
fn enable_cycles(kernel: bool) {
    let filter: u64 = if kernel { 1 << 27 } else { 0 };
    // SAFETY: writes PMU control registers, which EL0 may write in the
    // benchmark config; no memory is touched.
    unsafe {
        core::arch::asm!(
            "msr pmccfiltr_el0, {f}",
            "mrs {t}, pmcr_el0", "orr {t}, {t}, #1", "msr pmcr_el0, {t}",
            "mov {t}, #(1 << 31)", "msr pmcntenset_el0, {t}", "isb",
            f = in(reg) filter, t = out(reg) _, options(nostack)
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
    // Word-aligned, as a caller's buffer usually is: compiler-builtins'
    // memcpy copies misaligned buffers byte by byte on a strict-alignment
    // target, several times slower.
    #[repr(align(64))]
    struct Scratch([u8; 64 << 10]);
    let mut scratch = Scratch([0; 64 << 10]);
    let scratch = &mut scratch.0;
    let mut failed = 0;
    // First the PDs' instructions alone (EL0/EL1), then with seL4's (EL2).
    for (kernel, what) in [
        (false, "PDs only (EL0/EL1)"),
        (true, "PDs and seL4 (EL0/EL1/EL2)"),
    ] {
        enable_cycles(kernel);
        let _ = writeln!(uart, "bench-qemu: counting {what}");
        let _ = writeln!(
            uart,
            "bench-qemu: operation         size      cycles per op"
        );
        failed += benchmark::run(&mut client, BENCH_GPA, scratch, &a, &b, cycles, |row| {
            let _ = writeln!(uart, "bench-qemu: {row}");
        });
    }
    let _ = writeln!(uart, "bench-qemu: done ({failed} failed)");
    NullHandler::new()
}
