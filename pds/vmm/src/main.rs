// SPDX-License-Identifier: BSD-2-Clause
//! The VMM PD: owns guest RAM (pre-mapped by `system.xml`), keeps its
//! bookkeeping, serves copies to client PDs over PPC, and on boards with a
//! virtual machine (feature `vm`) runs the guest. Glue only: the
//! bookkeeping is `GuestRam`, the request handling `Server::handle`, the
//! guest's device `virtio::device`.
#![allow(
    unsafe_code,
    reason = "maps guest RAM, the clients' buffers and the guest's images, as system.xml gives them"
)]
#![no_std]
#![no_main]

#[cfg(feature = "vm")]
mod vm;

use common::LAYOUT;

/// This VMM's name in log lines (`vmm`, or `vmm<n>` with several VMs).
const PD: common::PdName = common::PdName;
use guest_ram::server::{ClientConfig, Server};
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, with_msg_regs_mut, Channel, ChannelSet, Child,
    Handler, Infallible, MessageInfo,
};

/// One backing region; up to 64 RAM extents.
type Ram = GuestRam<1, 64>;

/// The size of the guest RAM mapping, from `system.xml` (`setvar_size`).
/// The board file's `GUEST_RAM_SIZE` made both; if they ever disagree the
/// mapping is the truth, and the VMM says so.
fn guest_ram_size() -> u64 {
    let mapped = *var!(guest_ram_size: usize = 0) as u64;
    if mapped != LAYOUT.size {
        log::warn!(
            "{PD}: guest RAM is {mapped:#x} bytes in system.xml, {:#x} in the board file",
            LAYOUT.size
        );
    }
    mapped
}

/// A channel id no `setvar_id` wrote: the system description gives this
/// VMM no such channel.
#[cfg(feature = "vm")]
const NOT_GIVEN: usize = usize::MAX;

/// The VMM's end of the channel to the serial PD, which serves the
/// guest's virtio console (the N-VM system; `setvar_id`).
#[cfg(feature = "vm")]
fn console_channel() -> usize {
    *var!(console_channel: usize = NOT_GIVEN)
}

/// The VMM's end of the channel to the `net` PD, which serves the guest's
/// virtio-net device (the N-VM system; `setvar_id`).
#[cfg(feature = "vm")]
fn net_channel() -> usize {
    *var!(net_channel: usize = NOT_GIVEN)
}

/// The VMM's end of the channel to the blk PD (`setvar_id`).
#[cfg(feature = "vm")]
fn blk_channel() -> usize {
    *var!(blk_channel: usize = 0)
}

struct Vmm {
    ram: Ram,
    server: Server<5>,
    #[cfg(feature = "vm")]
    vm: Option<vm::Vm>,
}

#[protection_domain]
fn init() -> Vmm {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps guest RAM into this PD for its whole life,
    // at the address the microkit tool writes into this symbol.
    let region = unsafe {
        MappedRegion::new(
            LAYOUT.gpa,
            memory_region_symbol!(guest_ram_vaddr: *mut u8),
            guest_ram_size(),
        )
    };
    let mut ram = Ram::new(&[region]).expect("guest RAM backing");
    let mut server = Server::new();
    #[cfg(not(feature = "linux"))]
    add_demo_clients(&mut ram, &mut server);
    #[cfg(feature = "linux")]
    ram.register_at(LAYOUT.gpa, LAYOUT.size)
        .expect("register guest RAM");

    #[cfg(feature = "vm")]
    let vm = start_vm(&mut ram, &mut server);
    #[cfg(not(feature = "vm"))]
    place_images(&mut ram);

    for extent in ram.extents() {
        let r = extent.range;
        let state = if extent.allocated {
            "allocated"
        } else {
            "free"
        };
        log::info!("guest-ram: {:#x}..{:#x} {state}", r.gpa, r.gpa + r.len);
    }
    if let Ok(largest) = ram.find_largest_free_region() {
        log::info!(
            "guest-ram: largest free region {:#x} ({} KiB)",
            largest.gpa,
            largest.len >> 10
        );
    }
    Vmm {
        ram,
        server,
        #[cfg(feature = "vm")]
        vm,
    }
}

/// The demo system's clients: the self-test, guest-view and C client PDs
/// (and the benchmark PD in `make bench-qemu`), each with its buffer and
/// windows. Guest RAM stops half a MiB short of the mapping, so that the
/// self-test can check a window over memory that is not RAM. A Linux
/// system has none of them: they write guest RAM that Linux owns.
#[cfg(not(feature = "linux"))]
fn add_demo_clients(ram: &mut Ram, server: &mut Server<5>) {
    ram.register_at(LAYOUT.gpa, LAYOUT.ram_len())
        .expect("register guest RAM");
    // SAFETY: `system.xml` maps these regions into this PD for its whole
    // life, at the addresses the microkit tool writes into these symbols.
    let (selftest_buffer, guest_view_buffer, c_client_buffer) = unsafe {
        (
            SharedBuffer::new(
                memory_region_symbol!(selftest_buffer_vaddr: *mut u8),
                *var!(selftest_buffer_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(guest_view_buffer_vaddr: *mut u8),
                *var!(guest_view_buffer_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(c_client_buffer_vaddr: *mut u8),
                *var!(c_client_buffer_size: usize = 0),
            ),
        )
    };
    let clients = [
        ClientConfig::new(
            *var!(selftest_channel: usize = 0),
            selftest_buffer,
            &LAYOUT.selftest_windows(),
        ),
        ClientConfig::new(
            *var!(guest_view_channel: usize = 0),
            guest_view_buffer,
            &LAYOUT.guest_view_windows(),
        ),
        // The C client runs the C self-test: the self-test's windows.
        ClientConfig::new(
            *var!(c_client_channel: usize = 0),
            c_client_buffer,
            &LAYOUT.selftest_windows(),
        ),
    ];
    for client in clients {
        server
            .add_client(client.expect("client windows"))
            .expect("client table");
    }

    #[cfg(feature = "bench")]
    {
        use guest_ram::server::Window;
        // SAFETY: as above (`make bench-qemu`'s system maps it).
        let buffer = unsafe {
            SharedBuffer::new(
                memory_region_symbol!(bench_buffer_vaddr: *mut u8),
                *var!(bench_buffer_size: usize = 0),
            )
        };
        let window = [Window::read_write(
            LAYOUT.gpa + common::BENCH_OFFSET,
            1 << 20,
        )];
        let client = ClientConfig::new(*var!(bench_channel: usize = 0), buffer, &window);
        server
            .add_client(client.expect("bench window"))
            .expect("client table");
    }
}

/// Without a VM: what a VMM does before it starts a Linux guest, as a
/// demonstration of the bookkeeping: place the kernel where the guest
/// expects it, find room for the rest.
#[cfg(not(feature = "vm"))]
fn place_images(ram: &mut Ram) {
    const KERNEL_SIZE: u64 = 2 << 20;
    const DTB_SIZE: u64 = 64 << 10;
    const INITRD_SIZE: u64 = 1 << 20;
    ram.mark_allocated(LAYOUT.gpa, KERNEL_SIZE)
        .expect("kernel image");
    let dtb = ram.allocate_aligned(DTB_SIZE, 0x1000).expect("device tree");
    let initrd = ram.allocate_aligned(INITRD_SIZE, 2 << 20).expect("initrd");
    log::info!(
        "guest-ram: kernel at {:#x}, dtb at {dtb:#x}, initrd at {initrd:#x}",
        LAYOUT.gpa
    );
}

/// The Linux guest's images: the kernel and initrd from the boot bundle
/// (each exactly its file's bytes), and the device tree's region, mapped
/// only here.
#[cfg(feature = "linux")]
pub struct LinuxImages {
    kernel: SharedBuffer<guest_ram::ReadOnly>,
    initrd: SharedBuffer<guest_ram::ReadOnly>,
    dtb: &'static mut [u8],
}

/// With a VM: load and start the guest, and add the blk PD as a client
/// whose window the guest's loader chose.
#[cfg(feature = "vm")]
fn start_vm(ram: &mut Ram, server: &mut Server<5>) -> Option<vm::Vm> {
    use guest_ram::server::Window;
    // The blk PD's copy buffer: with one copy, its disk region and the
    // staging region `system.xml` maps right after it, as one buffer; with
    // two copies (no staging region), a staging buffer of its own.
    let blk_vaddr = memory_region_symbol!(blk_buffer_vaddr: *mut u8);
    let (blk_len, staging_vaddr, staging_len) = (
        *var!(blk_buffer_size: usize = 0),
        *var!(blk_staging_vaddr: usize = 0),
        *var!(blk_staging_size: usize = 0),
    );
    let follows = staging_vaddr == blk_vaddr.as_ptr() as usize + blk_len;
    if staging_len > 0 && !follows {
        log::error!("{PD}: the blk staging region does not follow the disk region; not using it");
    }
    let blk_len = blk_len + if follows { staging_len } else { 0 };
    // SAFETY: as above: regions `system.xml` maps here for good (the two
    // blk regions back to back, checked above).
    let (blk_buffer, page) = unsafe {
        (
            SharedBuffer::new(blk_vaddr, blk_len),
            SharedBuffer::new(
                memory_region_symbol!(blk_device_vaddr: *mut u8),
                *var!(blk_device_size: usize = 0),
            ),
        )
    };
    let blk = Channel::new(blk_channel());
    #[cfg(not(feature = "linux"))]
    let started = {
        // SAFETY: as above; `guest_image_size` is the image region's size
        // and `guest_image_prefill_size` the image file's length, which
        // the microkit tool writes (`setvar_size`, `setvar_prefill_size`).
        let image = unsafe {
            SharedBuffer::new(
                memory_region_symbol!(guest_image_vaddr: *mut u8),
                *var!(guest_image_size: usize = 0),
            )
        };
        let image_len = *var!(guest_image_prefill_size: usize = 0) as u64;
        vm::Vm::start(ram, &image, image_len, wiring(page, blk))
    };
    #[cfg(feature = "linux")]
    let started = {
        // SAFETY: as above, for the boot bundle's and the device tree's
        // regions. The bundle's region is mapped read-only, here alone (in
        // every VMM of an N-VM system, all read-only); the device tree's
        // region is mapped into this PD alone (no other PD, and not the
        // guest), so the one `&mut` made of it here is the only access to
        // that memory while the loader patches it.
        let (bundle, dtb) = unsafe {
            (
                SharedBuffer::new_read_only(
                    memory_region_symbol!(linux_images_vaddr: *mut u8),
                    *var!(linux_images_size: usize = 0),
                ),
                core::slice::from_raw_parts_mut(
                    memory_region_symbol!(linux_dtb_vaddr: *mut u8).as_ptr(),
                    *var!(linux_dtb_size: usize = 0),
                ),
            )
        };
        // The kernel and initrd: the bundle a boot loader (QEMU's, or the
        // microkit tool's prefill) left in that region.
        match linux_boot::Bundle::split(&bundle) {
            Ok((kernel, initrd)) => {
                let images = LinuxImages {
                    kernel,
                    initrd,
                    dtb,
                };
                vm::Vm::start_linux(ram, images, wiring(page, blk))
            }
            Err(e) => {
                log::error!("{PD}: {e}");
                Err("no kernel")
            }
        }
    };
    match started {
        Ok((vm, window)) => {
            let window = [Window::read_write(window.gpa, window.len)];
            let client = ClientConfig::new(blk.index(), blk_buffer, &window);
            server
                .add_client(client.expect("blk window"))
                .expect("client table");
            log::info!(
                "guest-ram: blk PD window {:#x}..{:#x}; guest started",
                window[0].gpa,
                window[0].gpa + window[0].len
            );
            add_console_client(server, &window);
            add_net_client(server, &window);
            Some(vm)
        }
        Err(why) => {
            log::error!("{PD}: guest not started: {why}");
            None
        }
    }
}

/// The serial PD, in the N-VM system: a copy client for the virtio
/// console, with the blk PD's window (the guest puts its rings and buffers
/// anywhere in its RAM).
#[cfg(feature = "vm")]
fn add_console_client(server: &mut Server<5>, window: &[guest_ram::server::Window]) {
    let channel = console_channel();
    if channel == NOT_GIVEN {
        return;
    }
    // SAFETY: `system.xml` maps the serial PD's console buffer for this VM
    // here for good.
    let buffer = unsafe {
        SharedBuffer::new(
            memory_region_symbol!(console_buffer_vaddr: *mut u8),
            *var!(console_buffer_size: usize = 0),
        )
    };
    let client = ClientConfig::new(channel, buffer, window);
    server
        .add_client(client.expect("console window"))
        .expect("client table");
}

/// The `net` PD, in the N-VM system: a copy client for the virtio-net
/// device, with the blk PD's window (all of guest RAM: Linux puts its
/// rings and packet buffers anywhere in it). Its buffer is the `net` PD's
/// staging region for this VM followed by a pair region per other VM
/// (`net_switch::Pairs`), each shared with that VM's VMM alone: frames
/// this VM sends to it, and frames it sends to this VM. No frame between
/// two other VMs is ever in memory this VMM maps.
#[cfg(feature = "vm")]
fn add_net_client(server: &mut Server<5>, window: &[guest_ram::server::Window]) {
    let channel = net_channel();
    if channel == NOT_GIVEN {
        return;
    }
    let vaddr = memory_region_symbol!(net_buffer_vaddr: *mut u8);
    let staging = *var!(net_buffer_size: usize = 0);
    let (last_pair, pair_size) = (
        *var!(net_last_pair_vaddr: usize = 0),
        *var!(net_pair_size: usize = 0),
    );
    // The pair regions follow the staging region back to back, the last
    // one at `last_pair` (the generator's layout; checked as far as the
    // addresses tell).
    let pairs_at = vaddr.as_ptr() as usize + staging;
    let len = match last_pair.checked_sub(pairs_at) {
        Some(gap) if last_pair != 0 && pair_size != 0 && gap % pair_size == 0 => {
            staging + gap + pair_size
        }
        _ => staging,
    };
    // SAFETY: `system.xml` maps the `net` PD's staging region for this VM
    // here for good, and its pair regions right after it up to
    // `last_pair + pair_size`.
    let buffer = unsafe { SharedBuffer::new(vaddr, len) };
    let client = ClientConfig::new(channel, buffer, window);
    server
        .add_client(client.expect("net window"))
        .expect("client table");
}

/// This VM's index in the N-VM system: the digits that end the VMM's name
/// in the system description (`vmm<n>`), 0 if none.
#[cfg(feature = "vm")]
fn vm_index() -> usize {
    let name = sel4_microkit::pd_name().unwrap_or("");
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits.parse().unwrap_or(0)
}

/// The guest's devices and what else the system description gives this
/// VMM: the one-VM system passes the UART through and lends it the idle
/// timer; the N-VM system gives it a virtio console served by the serial
/// PD, the timer PD (on core 0, on one core or several), and the serial PD to tell of a
/// power-off.
#[cfg(feature = "vm")]
fn wiring(blk_page: SharedBuffer, blk: Channel) -> vm::Wiring {
    let given = |id: usize| (id != NOT_GIVEN).then(|| Channel::new(id));
    let console = given(console_channel()).map(|serial| {
        // SAFETY: `system.xml` maps the console's page here for good.
        let page = unsafe {
            SharedBuffer::new(
                memory_region_symbol!(console_device_vaddr: *mut u8),
                *var!(console_device_size: usize = 0),
            )
        };
        (page, serial)
    });
    let net = given(net_channel()).map(|net| {
        // SAFETY: `system.xml` maps the virtio-net device's page here for
        // good.
        let page = unsafe {
            SharedBuffer::new(
                memory_region_symbol!(net_device_vaddr: *mut u8),
                *var!(net_device_size: usize = 0),
            )
        };
        let mac = common::net_mac(vm_index());
        (page, net, mac)
    });
    vm::Wiring {
        blk: (blk_page, blk),
        console,
        net,
        registers: [
            register_page(
                *var!(virtio_blk_regs_vaddr: usize = 0),
                *var!(virtio_blk_regs_size: usize = 0),
            ),
            register_page(
                *var!(virtio_console_regs_vaddr: usize = 0),
                *var!(virtio_console_regs_size: usize = 0),
            ),
            register_page(
                *var!(virtio_net_regs_vaddr: usize = 0),
                *var!(virtio_net_regs_size: usize = 0),
            ),
        ],
        net_power: given(*var!(net_power_channel: usize = NOT_GIVEN)),
        uart_irq: given(*var!(uart_irq_channel: usize = NOT_GIVEN)),
        idle_timer: given(*var!(timer_channel: usize = NOT_GIVEN))
            .map(vm::IdleTimer::Shared)
            .or_else(|| {
                given(*var!(idle_timer_channel: usize = NOT_GIVEN)).map(vm::IdleTimer::Own)
            }),
        power: given(*var!(power_channel: usize = NOT_GIVEN)),
    }
}

/// A virtio device's register page, if the system description maps one
/// here (`virtio::device::Frontend::set_register_page`).
#[cfg(feature = "vm")]
fn register_page(vaddr: usize, len: usize) -> Option<SharedBuffer> {
    let vaddr = core::ptr::NonNull::new(vaddr as *mut u8)?;
    // SAFETY: `system.xml` maps the page here, read-write, for good (and
    // read-only into the guest, which cannot change it); `len` is its
    // size (`setvar_size`).
    Some(unsafe { SharedBuffer::new(vaddr, len) })
}

/// Time spent in the VMM's handlers, for the power-off line: ticks and
/// calls of copy-service PPCs, notifications and guest faults.
pub(crate) static BUSY: [core::sync::atomic::AtomicU64; 6] =
    [const { core::sync::atomic::AtomicU64::new(0) }; 6];

/// Adds one handler call of `kind` that began at `start` to [`BUSY`].
fn busy(kind: usize, start: u64) {
    use core::sync::atomic::Ordering::Relaxed;
    let (end, _) = common::counter();
    BUSY[2 * kind].fetch_add(end.wrapping_sub(start), Relaxed);
    BUSY[2 * kind + 1].fetch_add(1, Relaxed);
}

/// [`BUSY`] as a log line's words.
pub(crate) fn busy_line() -> [u64; 7] {
    use core::sync::atomic::Ordering::Relaxed;
    let (_, hz) = common::counter();
    let us = |t: u64| t.saturating_mul(1_000_000) / hz.max(1);
    [
        us(BUSY[0].load(Relaxed)),
        BUSY[1].load(Relaxed),
        us(BUSY[2].load(Relaxed)),
        BUSY[3].load(Relaxed),
        us(BUSY[4].load(Relaxed)),
        BUSY[5].load(Relaxed),
        us(common::counter().0),
    ]
}

impl Handler for Vmm {
    type Error = Infallible;

    fn protected(
        &mut self,
        channel: Channel,
        msg_info: MessageInfo,
    ) -> Result<MessageInfo, Self::Error> {
        let (start, _) = common::counter();
        // A device's backend that has not yet seen its device's reset.
        #[cfg(feature = "vm")]
        if let Some(vm) = self.vm.as_mut() {
            if !vm.may_copy(channel) {
                let (label, words) = with_msg_regs_mut(|regs| {
                    guest_ram::protocol::encode_reply(
                        guest_ram::protocol::Status::DeviceReset,
                        0,
                        regs,
                    )
                });
                busy(0, start);
                return Ok(MessageInfo::new(label, words));
            }
        }
        let (label, words) = with_msg_regs_mut(|regs| {
            self.server.handle(
                &self.ram,
                channel.index(),
                msg_info.label(),
                msg_info.count(),
                regs,
            )
        });
        busy(0, start);
        Ok(MessageInfo::new(label, words))
    }

    fn notified(&mut self, set: ChannelSet) -> Result<(), Self::Error> {
        let (start, _) = common::counter();
        #[cfg(feature = "vm")]
        if let Some(vm) = self.vm.as_mut() {
            vm.notified(&mut self.ram, set);
            if vm.uart_channel().is_some_and(|uart| set.contains(uart)) {
                vm.uart_irq();
            }
        }
        let _ = set;
        busy(1, start);
        Ok(())
    }

    fn fault(
        &mut self,
        child: Child,
        msg_info: MessageInfo,
    ) -> Result<Option<MessageInfo>, Self::Error> {
        #[cfg(feature = "vm")]
        if let Some(vm) = self.vm.as_mut() {
            let (start, _) = common::counter();
            let reply = vm.fault(&self.ram, child, msg_info);
            busy(2, start);
            return Ok(reply);
        }
        log::error!(
            "{PD}: fault from child {} with no VM: {msg_info:?}",
            child.index()
        );
        Ok(None)
    }
}
