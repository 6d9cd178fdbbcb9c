// SPDX-License-Identifier: BSD-2-Clause
//! What the demo system's PDs share: the guest RAM layout of the board
//! file, a `log` logger on the debug console, and the PPC transport for
//! `guest_ram::client`. Glue only; the logic is in `guest-ram`.
//!
//! Buffer sizes and channel ids are not here: each PD reads them from
//! symbols that the microkit tool sets from `system.xml` (`setvar_size`,
//! `setvar_id`), so that file is their one source.
#![allow(
    unsafe_code,
    reason = "reads the generic timer's system registers (inline assembly)"
)]
#![no_std]

// Every PD links common: with feature `wide-memcpy`, every PD gets
// pd-memcpy's `memcpy` and `memmove` (AArch64) in place of
// compiler-builtins' weak ones. The selftest PD checks its routines either way.
pub use pd_memcpy;

use guest_ram::client::Transport;
use guest_ram::protocol::MSG_WORDS;
use guest_ram::selftest::Layout;
use sel4_microkit::{debug_println, with_msg_regs, with_msg_regs_mut, Channel, MessageInfo};
use virtio::net::Mtu;

/// The value of `digits[start..]` in base `radix` (10 or 16), at compile
/// time; anything else there fails the build.
const fn parse(digits: &[u8], start: usize, radix: u64) -> u64 {
    let mut i = start;
    let mut v: u64 = 0;
    while i < digits.len() {
        let d = match digits[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a number"),
        } as u64;
        assert!(d < radix, "a digit outside the number's base");
        v = v * radix + d;
        i += 1;
    }
    v
}

/// Parses the board file's hex constants (`0x` optional) at compile time.
const fn hex(s: &str) -> u64 {
    let b = s.as_bytes();
    let prefixed = b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X');
    parse(b, if prefixed { 2 } else { 0 }, 16)
}

/// Parses a decimal constant at compile time.
const fn dec(s: &str) -> u64 {
    parse(s.as_bytes(), 0, 10)
}

/// The VM network's MTU (make's `NET_MTU`; [`Mtu::JUMBO`], 65,510, without
/// it): what every VM's virtio-net device reports (`VIRTIO_NET_F_MTU`) and
/// the `net` PD's switch forwards, the same for every port. 68 to 65535
/// are taken (checked when the PDs are built).
pub const NET_MTU: Mtu = match option_env!("NET_MTU") {
    None => Mtu::JUMBO,
    Some(s) => {
        let mtu = dec(s);
        assert!(mtu <= u16::MAX as u64, "NET_MTU: 68 to 65535");
        match Mtu::new(mtu as u16) {
            Some(mtu) => mtu,
            None => panic!("NET_MTU: 68 to 65535"),
        }
    }
};

/// Guest RAM as the guest sees it (board file: `GUEST_RAM_GPA`, `GUEST_RAM_SIZE`).
pub const LAYOUT: Layout = Layout {
    gpa: hex(match option_env!("GUEST_RAM_GPA") {
        Some(s) => s,
        None => "0x40000000",
    }),
    size: hex(match option_env!("GUEST_RAM_SIZE") {
        Some(s) => s,
        None => "0x1000000",
    }),
};

/// Guest-physical address of the virtio-blk device's MMIO window. The
/// system description maps the device's register page there read-only
/// (`virtio_blk_regs`), so the guest's loads read it and its stores fault
/// to the VMM; without a page, every access faults.
pub const VIRTIO_BLK_GPA: u64 = 0x0a00_0000;

/// Guest-physical address of the virtio console's window (the N-VM Linux
/// system): a page of its own, so that it can have its own register page.
pub const VIRTIO_CONSOLE_GPA: u64 = 0x0a00_1000;

/// Guest-physical address of the virtio-net device's window (the N-VM
/// Linux system), the page after the console's.
pub const VIRTIO_NET_GPA: u64 = 0x0a00_2000;

/// The MAC address of port `n` of the `net` PD's switch, which is VM n's
/// virtio-net device: `02:00:00:00:00:<n+1>` (locally administered,
/// unicast). The VMM (for the device's configuration space) and the `net`
/// PD (for the switch's port table) both derive it from the VM's index,
/// which the system description gives each of them: the VMM's name
/// (`vmm<n>`) and the `net` PD's channel id of that VM's port (`n`).
pub const fn net_mac(n: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, (n as u8).wrapping_add(1)]
}

/// Where the benchmark PD's read-write window starts, from the start of
/// guest RAM (`make bench-qemu`): past the self-test's windows, 1 MiB.
pub const BENCH_OFFSET: u64 = 12 << 20;

/// Bytes of guest RAM the VMM sets aside as the guest's DMA area: the only
/// part of guest RAM the blk PD's window covers (like a restricted DMA pool
/// behind an IOMMU). The guest learns it in x0/x1.
pub const DMA_LEN: u64 = 0x30_0000;

/// Bytes from the start of guest RAM that the bare-metal guest occupies:
/// its image, BSS and stack. Its linker script (`guests/virtio-blk/link.x`)
/// fails the link if they do not fit, so the VMM can reserve this much
/// rather than the image file's length (which leaves out BSS and stack).
pub const GUEST_FOOTPRINT: u64 = 0x10_0000;

/// A `log` logger on the seL4 debug console.
struct Console;

impl log::Log for Console {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        debug_println!("{}: {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

static CONSOLE: Console = Console;

/// Sends `log` records to the debug console.
pub fn init_logging(level: log::LevelFilter) {
    let _ = log::set_logger(&CONSOLE);
    log::set_max_level(level);
}

/// The generic timer's counter and its frequency, readable from a PD on
/// AArch64 (Microkit exports the physical counter to user level).
#[cfg(target_arch = "aarch64")]
pub fn counter() -> (u64, u64) {
    let (ticks, hz): (u64, u64);
    // SAFETY: reads two system registers; no memory is touched.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", "mrs {}, cntfrq_el0",
                         out(reg) ticks, out(reg) hz, options(nostack));
    }
    (ticks, hz)
}

/// No counter is read on other architectures.
#[cfg(not(target_arch = "aarch64"))]
pub fn counter() -> (u64, u64) {
    (0, 1)
}

/// The EL1 physical timer, which seL4 (a hypervisor, keeping the EL2 timer
/// for itself) exports to user level on qemu_virt_aarch64: its interrupt is
/// PPI 30. The one-VM VMM arms it to wake its idle guest; in the N-VM
/// system the timer PD owns it and multiplexes it for every VMM.
#[cfg(target_arch = "aarch64")]
pub mod el1_timer {
    /// Fire when the physical counter reaches `at`.
    pub fn arm(at: u64) {
        // SAFETY: writes the EL1 physical timer's registers, which seL4
        // lets user level use here (KernelArmExportPTMRUser); no memory.
        unsafe {
            core::arch::asm!(
                "msr cntp_cval_el0, {at}", "msr cntp_ctl_el0, {on}", "isb",
                at = in(reg) at, on = in(reg) 1u64, options(nostack)
            );
        }
    }

    /// Off (and its interrupt line low).
    pub fn disarm() {
        // SAFETY: as in `arm`.
        unsafe {
            core::arch::asm!("msr cntp_ctl_el0, xzr", "isb", options(nostack));
        }
    }
}

/// No EL1 physical timer elsewhere: the N-VM system is AArch64's (the
/// timer PD is built on every architecture with the workspace, and does
/// nothing there).
#[cfg(not(target_arch = "aarch64"))]
pub mod el1_timer {
    /// Nothing to arm.
    pub fn arm(_at: u64) {}
    /// Nothing to disarm.
    pub fn disarm() {}
}

/// PSCI is AArch64's: elsewhere the call is refused.
#[cfg(not(target_arch = "aarch64"))]
pub fn system_off() -> Result<(), sel4::Error> {
    Err(sel4::Error::IllegalOperation)
}

/// This PD's name in the system description (`vmm`, or `vmm1` in the N-VM
/// system): `Display`s as the name, for log lines that must say which of
/// several PDs built from one binary speaks.
#[derive(Clone, Copy)]
pub struct PdName;

impl core::fmt::Display for PdName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(sel4_microkit::pd_name().unwrap_or("?"))
    }
}

/// PSCI SYSTEM_OFF to the firmware through seL4's SMC forwarding: the
/// machine powers off (QEMU exits). Needs `smc="true"` on the PD in the
/// system description; returns only if the call failed.
#[cfg(target_arch = "aarch64")]
pub fn system_off() -> Result<(), sel4::Error> {
    /// Microkit's slot for the SMC capability (libmicrokit's ARM_SMC_CAP).
    const ARM_SMC_CAP: u64 = 7;
    /// PSCI 0.2 SYSTEM_OFF.
    const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
    /// seL4_ARM_SMC_Call takes x0..x7.
    const SMC_REGS: usize = 8;
    sel4::with_ipc_buffer_mut(|ipc| {
        let regs = ipc.msg_regs_mut();
        regs[..SMC_REGS].fill(0);
        regs[0] = PSCI_SYSTEM_OFF;
    });
    let info = sel4::MessageInfoBuilder::default()
        .label(sel4::sys::invocation_label::ARMSMCCall.into())
        .length(SMC_REGS)
        .build();
    let reply = sel4::cap::Endpoint::from_bits(ARM_SMC_CAP).call(info);
    match sel4::Error::from_sys(reply.label() as _) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A [`Ppc`] that counts its calls, for measurements.
pub struct CountingPpc {
    /// The transport.
    pub ppc: Ppc,
    /// Calls made.
    pub calls: u64,
    /// Counter ticks spent in them (the copy server's work included).
    pub ticks: u64,
}

impl Transport for CountingPpc {
    fn call(&mut self, label: u64, words: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
        self.calls += 1;
        let (start, _) = counter();
        let reply = self.ppc.call(label, words, msg);
        self.ticks += counter().0.wrapping_sub(start);
        reply
    }
}

/// The copy-service transport: one `pp_call` on a channel.
pub struct Ppc(pub Channel);

impl Transport for Ppc {
    fn call(&mut self, label: u64, words: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
        let words = words.min(MSG_WORDS);
        with_msg_regs_mut(|regs| copy_words(&msg[..words], regs));
        let reply = self.0.pp_call(MessageInfo::new(label, words));
        let reply_words = reply.count().min(MSG_WORDS);
        with_msg_regs(|regs| copy_words(&regs[..reply_words.min(regs.len())], msg));
        (reply.label(), reply_words)
    }
}

/// Copies `src` to the start of `dst`. Most messages are at most 4 words
/// (what seL4 passes in registers on its fast path): those go word by
/// word, as a `memcpy` call would cost more than the copy.
fn copy_words(src: &[u64], dst: &mut [u64]) {
    const INLINE: usize = 4;
    for i in 0..INLINE {
        if let (Some(s), Some(d)) = (src.get(i), dst.get_mut(i)) {
            *d = *s;
        }
    }
    if let (Some(s), Some(d)) = (src.get(INLINE..), dst.get_mut(INLINE..src.len())) {
        d.copy_from_slice(s);
    }
}
