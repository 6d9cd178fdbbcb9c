// SPDX-License-Identifier: BSD-2-Clause
//! The bare-metal guest: AArch64, EL1, loaded by the VMM at the start of
//! guest RAM and started with
//!
//! - `x0`: the gpa of its DMA area (the part of guest RAM the device PD may
//!   touch), `x1` its length;
//! - `x2`: the gpa of the virtio-mmio window of the block device.
//!
//! It runs with the MMU and caches off, as the vCPU starts: every data
//! access is then Device-nGnRnE, which requires aligned accesses (the
//! `aarch64-unknown-none-softfloat` target is built with `+strict-align`)
//! and forbids exclusives (nothing here uses atomics), and it needs no FP
//! or SIMD (soft-float). The price is speed, which this guest does not
//! need; a Linux guest turns its MMU on within its first instructions.
//! The VMM's caches are coherent with these uncached accesses on QEMU,
//! which does not model caches; on hardware the VMM and device PD would
//! have to clean to the point of coherency, or the guest map RAM as
//! Normal cacheable memory.
//!
//! It reports through hypercalls (`vcpu_fault::hvc`'s ABI, `x7 = 0`):
//! every check as a printed line, the result as
//! `guest: virtio-blk N/M passed`, then exit.
#![allow(
    unsafe_code,
    reason = "a bare-metal guest: its entry, hypercalls and device accesses are assembly and volatile accesses to physical addresses"
)]
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::{asm, global_asm};
use core::fmt::Write;

use virtio_blk_guest::{run, Line, Platform, Setup};

// Entry: a stack, a zeroed .bss, then Rust. x0..x2 pass through.
global_asm!(
    ".section .text.entry, \"ax\"",
    ".global _start",
    "_start:",
    "    ldr x9, =__stack_top",
    "    mov sp, x9",
    "    ldr x9, =__bss_start",
    "    ldr x10, =__bss_end",
    "1:  cmp x9, x10",
    "    b.hs 2f",
    "    str xzr, [x9], #8",
    "    b 1b",
    "2:  bl guest_main",
    "3:  wfe",
    "    b 3b",
);

use vcpu_fault::hvc::{ABI, EXIT as HVC_EXIT, PRINT as HVC_PRINT, RESULT as HVC_RESULT};

fn hvc(function: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> u64 {
    let ret;
    // SAFETY: `hvc #0` traps to the VMM, which reads x0..x7 and resumes
    // after the instruction with x0 set; no memory is touched here.
    unsafe {
        asm!("hvc #0", inlateout("x0") function => ret, in("x1") a1, in("x2") a2,
             in("x3") a3, in("x4") a4, in("x7") ABI, options(nostack));
    }
    ret
}

struct Guest {
    mmio: u64,
}

impl Platform for Guest {
    fn mmio_read(&mut self, offset: u64, width: u8) -> u64 {
        let at = self.mmio + offset;
        // SAFETY: the device window is the device's register page, mapped
        // read-only (or, without one, unmapped: the load traps to the VMM,
        // which emulates it); volatile, since the VMM changes it.
        unsafe {
            match width {
                1 => u64::from(core::ptr::read_volatile(at as *const u8)),
                2 => u64::from(core::ptr::read_volatile(at as *const u16)),
                8 => core::ptr::read_volatile(at as *const u64),
                _ => u64::from(core::ptr::read_volatile(at as *const u32)),
            }
        }
    }

    fn mmio_write(&mut self, offset: u64, width: u8, value: u64) {
        let at = self.mmio + offset;
        // SAFETY: the window is read-only or unmapped: every store traps to
        // the VMM, which emulates it; nothing real is written.
        unsafe {
            match width {
                1 => core::ptr::write_volatile(at as *mut u8, value as u8),
                2 => core::ptr::write_volatile(at as *mut u16, value as u16),
                8 => core::ptr::write_volatile(at as *mut u64, value),
                _ => core::ptr::write_volatile(at as *mut u32, value as u32),
            }
        }
    }

    fn read(&mut self, gpa: u64, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: the suite only reads its own DMA area, which is guest
            // RAM, identity-mapped with the MMU off. Byte accesses are
            // always aligned, as Device memory requires.
            *b = unsafe { core::ptr::read_volatile((gpa as usize + i) as *const u8) };
        }
    }

    fn write(&mut self, gpa: u64, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: as for `read`.
            unsafe { core::ptr::write_volatile((gpa as usize + i) as *mut u8, *b) };
        }
    }

    fn fence(&mut self) {
        // SAFETY: a barrier; no memory or register effects.
        unsafe { asm!("dmb sy", options(nostack)) };
    }

    fn now(&mut self) -> u64 {
        let ticks: u64;
        // SAFETY: reads the virtual counter, always accessible at EL1.
        unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nostack)) };
        ticks
    }

    fn frequency(&mut self) -> u64 {
        let hz: u64;
        // SAFETY: reads the counter frequency register.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nostack)) };
        hz
    }

    fn print(&mut self, line: &str) {
        hvc(HVC_PRINT, line.as_ptr() as u64, line.len() as u64, 0, 0);
    }
}

extern "C" {
    static _start: u8;
}

#[no_mangle]
extern "C" fn guest_main(dma: u64, dma_len: u64, mmio: u64) -> ! {
    let mut guest = Guest { mmio };
    // The image sits at the start of guest RAM: in RAM, outside the
    // device PD's window.
    let image = core::ptr::addr_of!(_start) as u64;
    let setup = Setup {
        dma,
        outside_window: image,
        not_ram: 0x1_0000_0000,
    };
    if dma_len < virtio_blk_guest::DMA_LEN {
        guest.print("DMA area too small");
        hvc(HVC_EXIT, 1, 0, 0, 0);
    }
    let summary = run(&mut guest, setup);
    let hz = guest.frequency();
    let mut line = Line::new();
    let _ = write!(
        line,
        "read 1 MiB through virtio-blk: {} ticks at {} Hz ({} us)",
        summary.read_1mib_ticks,
        hz,
        summary.read_1mib_ticks * 1_000_000 / hz.max(1)
    );
    guest.print(line.as_str());
    let name = "virtio-blk";
    hvc(
        HVC_RESULT,
        u64::from(summary.passed),
        u64::from(summary.total),
        name.as_ptr() as u64,
        name.len() as u64,
    );
    hvc(
        HVC_EXIT,
        u64::from(summary.passed != summary.total),
        0,
        0,
        0,
    );
    loop {
        // SAFETY: waits for an event; the VMM has stopped the vCPU anyway.
        unsafe { asm!("wfe", options(nostack)) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    hvc(HVC_PRINT, "panic".as_ptr() as u64, 5, 0, 0);
    hvc(HVC_EXIT, 2, 0, 0, 0);
    loop {
        // SAFETY: as in `guest_main`.
        unsafe { asm!("wfe", options(nostack)) };
    }
}
