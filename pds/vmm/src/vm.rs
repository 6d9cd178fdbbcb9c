// SPDX-License-Identifier: BSD-2-Clause
//! The guest VM: loading it into guest RAM, starting its vCPU, and its
//! faults: virtio-mmio and GIC distributor emulation, interrupts (vGIC
//! list registers, the virtual timer, forwarded device IRQs), WFI/WFE,
//! PSCI over SMC, hypercalls. Glue only: the decoding and the state
//! machines are `vcpu_fault`, `vgic`, `virtio::device` and `linux_boot`.

use common::{LAYOUT, VIRTIO_BLK_GPA, VIRTIO_CONSOLE_GPA, VIRTIO_NET_GPA};

/// This VMM's name in log lines (`vmm`, or `vmm<n>` with several VMs).
const PD: common::PdName = common::PdName;
use guest_ram::SharedBuffer;
use sel4::Fault;
use sel4_microkit::{debug_println, Channel, Child, MessageInfo};
use vcpu_fault::esr::decode_data_abort;
use vcpu_fault::hvc::{self, Hypercall, Text};
use vcpu_fault::psci::{self, Outcome};
use vcpu_fault::trap::{self, VcpuTrap};
use vgic::VGic;
use virtio::console::ConsoleConfig;
use virtio::device::{Action, Frontend};
use virtio::mmio::{BlkConfig, DeviceType};
use virtio::net::NetConfig;

use crate::Ram;

/// Microkit's capability layout for virtual machines (the tool's
/// `PD_BASE_VM_TCB_CAP` and `PD_BASE_VCPU_CAP`, libmicrokit's
/// `BASE_VM_TCB_CAP` and `BASE_VCPU_CAP`): a VM's TCB and VCPU sit at
/// these slots plus the vCPU id in the VMM's CSpace. rust-sel4 v5.0.0's
/// `sel4-microkit` has no accessor for them, so this is the one place
/// that knows.
const BASE_VM_TCB_CAP: u64 = 266;
const BASE_VCPU_CAP: u64 = 330;

fn vm_tcb(id: usize) -> sel4::cap::Tcb {
    sel4::cap::Tcb::from_bits(BASE_VM_TCB_CAP + id as u64)
}

fn vm_vcpu(id: usize) -> sel4::cap::VCpu {
    sel4::cap::VCpu::from_bits(BASE_VCPU_CAP + id as u64)
}

/// SPSR for the first instruction: EL1h, D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// The guest's GIC distributor: trapped (not mapped) at QEMU virt's GICD,
/// a 64 KiB window as the device tree says; registers in its first 4 KiB.
const GICD_GPA: u64 = 0x0800_0000;
const GICD_WINDOW: u64 = 0x1_0000;
/// List registers of the vCPU interface (QEMU's and Cortex-A53's
/// GICH_VTR: 4).
const LIST_REGISTERS: usize = 4;
/// The EL1 virtual timer's PPI: seL4 delivers it as a VPPI event and
/// masks it until `AckVPPI`, which must wait for the guest's EOI.
const TIMER_IRQ: u16 = 27;
/// QEMU virt's PL011, passed through: SPI 1 (Linux guest only).
const UART_IRQ: u16 = 33;
/// The virtio-blk device's SPI 16, as the device tree says.
const VIRTIO_BLK_IRQ: u16 = 48;
/// The virtio console's SPI 17 (the N-VM system's device tree).
const VIRTIO_CONSOLE_IRQ: u16 = 49;
/// The virtio-net device's SPI 18 (the N-VM system's device tree).
const VIRTIO_NET_IRQ: u16 = 50;

/// What the system description gives the guest's devices: each virtio
/// device's shared page and the channel to the PD that serves it, the
/// UART to pass through, what wakes an idle guest, whom to tell of a
/// power-off. `main` reads it from the `setvar` symbols.
pub struct Wiring {
    /// The virtio-blk device's page and the blk PD's channel.
    pub blk: (SharedBuffer, Channel),
    /// The virtio console's page and the serial PD's channel (the N-VM
    /// system).
    pub console: Option<(SharedBuffer, Channel)>,
    /// The virtio-net device's page, the `net` PD's channel and the port's
    /// MAC (the N-VM system).
    pub net: Option<(SharedBuffer, Channel, [u8; 6])>,
    /// The register pages of the virtio-blk, console and net devices,
    /// where the system description maps them into the guest read-only
    /// (the guest's loads then do not trap).
    pub registers: [Option<SharedBuffer>; 3],
    /// The UART's interrupt, when the UART is passed through (the one-VM
    /// Linux system).
    pub uart_irq: Option<Channel>,
    /// What wakes an idle guest (Linux guest only): the VMM's own timer
    /// (one VM) or the timer PD (N VMs, on one core or several).
    pub idle_timer: Option<IdleTimer>,
    /// The serial PD's power signal (the N-VM system): notified when the
    /// guest powers itself off. Without one, the VMM powers the machine
    /// off itself (the one-VM Linux system).
    pub power: Option<Channel>,
    /// The `net` PD's power signal (the N-VM system with a network): told
    /// too, so that it prints its counters.
    pub net_power: Option<Channel>,
}

/// One virtio-mmio device of the guest: the VMM's half (its register file
/// behind a trapped window, `virtio::device::Frontend`), where the window
/// is, its interrupt, and the channel to the PD that serves its queues.
/// Adding a device to the VM is adding one of these.
struct Device<D> {
    frontend: Frontend<D>,
    window: u64,
    irq: u16,
    backend: Channel,
}

impl<D: DeviceType> Device<D> {
    fn new(
        page: SharedBuffer,
        device: D,
        window: u64,
        irq: u16,
        backend: Channel,
        registers: Option<SharedBuffer>,
    ) -> Self {
        let mut frontend = Frontend::with_device(page, device);
        if let Some(registers) = registers {
            if let Err(e) = frontend.set_register_page(registers) {
                log::error!("{PD}: register page at {window:#x}: {e}; loads trap");
            }
        }
        Device {
            frontend,
            window,
            irq,
            backend,
        }
    }

    /// A trapped guest access, if it is in this device's window: the value
    /// a load puts in its register (`Some(None)` for a store); signals the
    /// backend if the access asks for it.
    fn emulate(&mut self, access: &vcpu_fault::esr::MmioAccess, value: u64) -> Option<Option<u64>> {
        let (load, action) = self.frontend.emulate(self.window, access, value)?;
        if action == Action::SignalBackend {
            self.backend.notify();
        }
        Some(load)
    }

    /// If `set` holds the backend's signal: the interrupt to raise, if the
    /// device now has an interrupt status.
    fn signalled(&mut self, set: sel4_microkit::ChannelSet) -> Option<u16> {
        if !set.contains(self.backend) {
            return None;
        }
        self.frontend.backend_signalled();
        (self.frontend.device().interrupt_status() != 0).then_some(self.irq)
    }

    /// Whether a copy call on `channel` may be served, if it is this
    /// device's backend: not between a device reset and the backend's
    /// reading of it (`Frontend::backend_may_copy`).
    fn may_copy(&mut self, channel: Channel) -> Option<bool> {
        (channel.index() == self.backend.index()).then(|| self.frontend.backend_may_copy())
    }

    /// Reset from outside, as a power cycle would; the backend is told its
    /// queues are gone.
    #[cfg(feature = "linux")]
    fn reset(&mut self) {
        if self.frontend.reset() == Action::SignalBackend {
            self.backend.notify();
        }
    }
}

/// Counts of what the guest made the VMM do, logged at power-off.
#[derive(Default)]
struct Counts {
    sleeps: u64,
    mmio: u64,
    gicd: u64,
    vppi: u64,
    maintenance: u64,
    injected: u64,
    wfx: u64,
    smc: u64,
}

/// The running guest.
pub struct Vm {
    blk: Device<BlkConfig>,
    console: Option<Device<ConsoleConfig>>,
    net: Option<Device<NetConfig>>,
    gic: VGic<LIST_REGISTERS>,
    uart_irq: Option<Channel>,
    /// See [`Wiring::idle_timer`].
    idle_timer: Option<IdleTimer>,
    /// See [`Wiring::power`].
    power: Option<Channel>,
    /// See [`Wiring::net_power`].
    net_power: Option<Channel>,
    /// vCPU 0 is stopped at a `wfi` until an interrupt for it arrives.
    asleep: bool,
    /// The channel to the doorbell PD, which rings back when rung; see
    /// [`Vm::fault`].
    doorbell: Channel,
    /// How to stop which vCPU when the doorbell rings (never
    /// [`Resume::Yes`]).
    pending: Option<(usize, Resume)>,
    /// What a reset needs to load the Linux guest again.
    #[cfg(feature = "linux")]
    linux: Option<LinuxGuest>,
    counts: Counts,
    ignored_gicd: u32,
}

impl Vm {
    fn new(wiring: Wiring) -> Vm {
        let (blk_page, blk) = wiring.blk;
        let [blk_registers, console_registers, net_registers] = wiring.registers;
        Vm {
            blk: Device::new(
                blk_page,
                BlkConfig::new(0),
                VIRTIO_BLK_GPA,
                VIRTIO_BLK_IRQ,
                blk,
                blk_registers,
            ),
            console: wiring.console.map(|(page, serial)| {
                Device::new(
                    page,
                    ConsoleConfig::new(),
                    VIRTIO_CONSOLE_GPA,
                    VIRTIO_CONSOLE_IRQ,
                    serial,
                    console_registers,
                )
            }),
            net: wiring.net.map(|(page, net, mac)| {
                Device::new(
                    page,
                    NetConfig::with_mtu(mac, common::NET_MTU),
                    VIRTIO_NET_GPA,
                    VIRTIO_NET_IRQ,
                    net,
                    net_registers,
                )
            }),
            gic: VGic::new(),
            uart_irq: wiring.uart_irq,
            idle_timer: wiring.idle_timer,
            power: wiring.power,
            net_power: wiring.net_power,
            asleep: false,
            doorbell: Channel::new(*sel4_microkit::var!(doorbell_channel: usize = 0)),
            pending: None,
            #[cfg(feature = "linux")]
            linux: None,
            counts: Counts::default(),
            ignored_gicd: 0,
        }
    }

    /// The bare-metal guest: loads `image` (`image_len` bytes) at the
    /// start of guest RAM, sets aside the DMA area, and starts vCPU 0 at
    /// the image's first byte with x0/x1 the DMA area and x2 the
    /// virtio-blk window. Returns the VM and the blk PD's window.
    #[cfg(not(feature = "linux"))]
    pub fn start(
        ram: &mut Ram,
        image: &SharedBuffer,
        image_len: u64,
        wiring: Wiring,
    ) -> Result<(Vm, guest_ram::GpaRange), &'static str> {
        use common::DMA_LEN;
        // The image's bytes plus its BSS and stack, as its linker script
        // lays them out (guests/virtio-blk/link.ld: GUEST_FOOTPRINT).
        let reserved = image_len
            .max(common::GUEST_FOOTPRINT)
            .next_multiple_of(0x1000);
        ram.mark_allocated(LAYOUT.gpa, reserved)
            .map_err(|_| "guest image does not fit guest RAM")?;
        ram.write_from_buffer(LAYOUT.gpa, image_len, image, 0)
            .map_err(|_| "guest image copy failed")?;
        // The self-test client writes its read-write window; keep the
        // allocator (and so the guest's DMA area) out of it.
        ram.mark_allocated(LAYOUT.rw(), 8 << 20)
            .map_err(|_| "self-test window is not free RAM")?;
        let dma = ram
            .allocate_aligned(DMA_LEN, 1 << 20)
            .map_err(|_| "no room for the guest's DMA area")?;
        log::info!(
            "{PD}: guest image {:#x}..{:#x} ({image_len} bytes, {reserved:#x} reserved), DMA area {dma:#x}..{:#x}, virtio-blk at {VIRTIO_BLK_GPA:#x}",
            LAYOUT.gpa,
            LAYOUT.gpa + reserved,
            dma + DMA_LEN
        );
        start_vcpu(LAYOUT.gpa, [dma, DMA_LEN, VIRTIO_BLK_GPA])?;
        let window = guest_ram::GpaRange {
            gpa: dma,
            len: DMA_LEN,
        };
        Ok((Vm::new(wiring), window))
    }

    /// A Linux guest: the kernel, initrd and device tree placed and loaded
    /// by `linux_boot::load` (the device tree's `/memory` and initrd range
    /// patched to match), vCPU 0 started at the kernel with x0 = the
    /// device tree. The blk PD's window is all of guest RAM: Linux puts
    /// its rings and buffers anywhere in it.
    #[cfg(feature = "linux")]
    pub fn start_linux(
        ram: &mut Ram,
        mut images: crate::LinuxImages,
        wiring: Wiring,
    ) -> Result<(Vm, guest_ram::GpaRange), &'static str> {
        let memory = guest_ram::GpaRange {
            gpa: LAYOUT.gpa,
            len: LAYOUT.size,
        };
        let layout = load_linux(ram, &mut images, memory)?;
        // The vCPU's SCTLR_EL1 before its first instruction (MMU and caches
        // off, as Linux's boot protocol wants): a reset puts it back.
        let sctlr = vm_vcpu(0)
            .vcpu_read_regs(sel4::VCpuReg::SCTLR)
            .map_err(|_| "VCPU_ReadRegs of SCTLR failed")?;
        start_vcpu(layout.entry, [layout.dtb.gpa, 0, 0])?;
        if let Some(timer) = wiring.idle_timer {
            timer.disarm();
        }
        let mut vm = Vm::new(wiring);
        vm.linux = Some(LinuxGuest {
            images,
            layout,
            sctlr,
        });
        Ok((vm, memory))
    }

    /// A device's backend PD signalled (used buffers, or a broken queue):
    /// interrupt the guest if the device now has an interrupt status.
    fn backends_signalled(&mut self, set: sel4_microkit::ChannelSet) {
        let blk = self.blk.signalled(set);
        let console = self.console.as_mut().and_then(|c| c.signalled(set));
        let net = self.net.as_mut().and_then(|n| n.signalled(set));
        for irq in [blk, console, net].into_iter().flatten() {
            self.raise(irq);
        }
    }

    /// The UART's interrupt fired (forwarded to the guest; acknowledged at
    /// the guest's EOI).
    pub fn uart_irq(&mut self) {
        self.raise(UART_IRQ);
    }

    /// Whether a copy call on `channel` may be served. A device's
    /// backend's may not between a reset of the device and the backend's
    /// next read of its page: what it would copy may come from the old
    /// driver's rings, into memory that is now the new driver's. Calls on
    /// other channels may (the server checks them as usual).
    pub fn may_copy(&mut self, channel: Channel) -> bool {
        let blk = self.blk.may_copy(channel);
        let console = self.console.as_mut().and_then(|c| c.may_copy(channel));
        let net = self.net.as_mut().and_then(|n| n.may_copy(channel));
        blk.or(console).or(net).unwrap_or(true)
    }

    /// The channel of the forwarded UART IRQ, if any.
    pub fn uart_channel(&self) -> Option<Channel> {
        self.uart_irq
    }

    /// Notifications: first the doorbell (a vCPU to stop, or to put to
    /// sleep), then anything else wakes a sleeping vCPU 0.
    pub fn notified(&mut self, ram: &mut Ram, set: sel4_microkit::ChannelSet) {
        let rung = self.doorbell;
        let others = set.iter().any(|c| c.index() != rung.index());
        // Something to wake for came before (or with) the doorbell's ring:
        // the sleep is off, as if it had already ended (the guest's `wfi`
        // just returns). Suspending now would sleep through it.
        if others && matches!(self.pending, Some((_, Resume::Asleep))) {
            self.pending = None;
        }
        if set.contains(rung) {
            if let Some((id, what)) = self.pending.take() {
                if vm_tcb(id).tcb_suspend().is_err() {
                    log::error!("{PD}: TCB_Suspend of vCPU {id} failed");
                } else if what == Resume::Asleep && id == 0 {
                    self.asleep = true;
                    self.counts.sleeps += 1;
                } else if what == Resume::Off {
                    self.powered_off();
                } else if what == Resume::Reset {
                    match self.restart(ram) {
                        Ok(()) => log::info!("{PD}: guest reset: loaded again and restarted"),
                        Err(why) => {
                            log::error!("{PD}: stopping the guest (vCPU {id}): reset failed: {why}")
                        }
                    }
                }
            }
        }
        if others {
            self.wake(set);
            self.backends_signalled(set);
        }
    }

    /// Any notification but the doorbell: if vCPU 0 sleeps at a `wfi`,
    /// wake it (an interrupt for it may follow; a spurious wake-up only
    /// costs the guest one more turn of its idle loop). Acknowledges the
    /// idle timer.
    fn wake(&mut self, set: sel4_microkit::ChannelSet) {
        let fired = self.idle_timer.filter(|t| set.contains(t.channel()));
        // Woken by something else: the deadline is moot. Fired: the timer
        // PD has already dropped it; the VMM's own timer is still armed.
        let moot = match fired {
            Some(timer) => matches!(timer, IdleTimer::Own(_)),
            None => self.asleep,
        };
        if let Some(timer) = self.idle_timer.filter(|_| moot) {
            timer.disarm();
        }
        if let Some(timer) = fired {
            timer.acknowledge();
        }
        if !self.asleep {
            return;
        }
        self.asleep = false;
        if vm_tcb(0).tcb_resume().is_err() {
            log::error!("{PD}: TCB_Resume of vCPU 0 failed");
        }
    }

    /// A `wfi` with nothing to wake it: arm the idle timer for the guest's
    /// virtual timer deadline (if it has one) and stop the vCPU until a
    /// notification, instead of resuming it to spin through its idle loop.
    /// Only where a timer to wake on exists (the Linux guest's system).
    fn sleep(&mut self, id: usize) -> Result<Resume, &'static str> {
        set_x0_and_skip(id, None, None)?;
        let Some(timer) = self.idle_timer.filter(|_| self.gic.is_quiet()) else {
            return Ok(Resume::Yes);
        };
        let vcpu = vm_vcpu(id);
        let read = |reg| vcpu.vcpu_read_regs(reg).map_err(|_| "VCPU_ReadRegs failed");
        let deadline = trap::vtimer_deadline(
            read(sel4::VCpuReg::CNTV_CTL)?,
            read(sel4::VCpuReg::CNTV_CVAL)?,
            read(sel4::VCpuReg::CNTVOFF)?,
        );
        match deadline {
            Some(at) => timer.arm(at),
            None => timer.disarm(),
        }
        Ok(Resume::Asleep)
    }

    /// A guest reset, with vCPU 0 suspended: what the loader placed goes
    /// back to the allocator and is loaded again from the images; the
    /// vCPU's SCTLR_EL1 and virtual timer are as before its first
    /// instruction; interrupts left mid-flight (the timer's VPPI, the
    /// UART's line) are acknowledged and the vGIC starts empty; then vCPU
    /// 0 starts at the kernel again. The virtio device is reset as a power
    /// cycle would reset it (the new kernel resets it again when it probes).
    #[cfg(feature = "linux")]
    fn restart(&mut self, ram: &mut Ram) -> Result<(), &'static str> {
        let linux = self.linux.as_mut().ok_or("no Linux guest to restart")?;
        linux_boot::load::unload(ram, &linux.layout).map_err(|_| "unloading the guest failed")?;
        let layout = load_linux(ram, &mut linux.images, linux.layout.memory)?;
        linux.layout = layout;
        let vcpu = vm_vcpu(0);
        vcpu.vcpu_write_regs(sel4::VCpuReg::SCTLR, linux.sctlr)
            .and_then(|()| vcpu.vcpu_write_regs(sel4::VCpuReg::CNTV_CTL, 0))
            .map_err(|_| "VCPU_WriteRegs failed")?;
        // Either may not be pending: acknowledging then changes nothing.
        let _ = vcpu.vcpu_ack_vppi(u64::from(TIMER_IRQ));
        if let Some(uart) = self.uart_irq {
            let _ = uart.irq_ack();
        }
        if let Some(timer) = self.idle_timer {
            timer.disarm();
        }
        self.gic = VGic::new();
        self.asleep = false;
        // The device too, as a power cycle would: the blk PD drops the
        // old guest's queue.
        self.blk.reset();
        if let Some(console) = self.console.as_mut() {
            console.reset();
        }
        if let Some(net) = self.net.as_mut() {
            net.reset();
        }
        start_vcpu(layout.entry, [layout.dtb.gpa, 0, 0])
    }

    /// Without a Linux guest there is nothing to load again.
    #[cfg(not(feature = "linux"))]
    fn restart(&mut self, _ram: &mut Ram) -> Result<(), &'static str> {
        Err("restarting the bare-metal guest is not supported")
    }

    /// The guest powered itself off (its vCPU is suspended): tell the
    /// serial PD, which powers the machine off once every VM is off; the
    /// one-VM system, which has no serial PD, powers it off here.
    fn powered_off(&mut self) {
        if let Some(net) = self.net_power {
            net.notify();
        }
        match self.power {
            Some(power) => power.notify(),
            None => {
                if let Err(e) = common::system_off() {
                    log::warn!("{PD}: could not power the machine off (PSCI SYSTEM_OFF): {e:?}");
                }
            }
        }
    }

    fn raise(&mut self, irq: u16) {
        if let Err(e) = self.gic.raise(u64::from(irq)) {
            log::error!("{PD}: {e}");
        }
        self.inject_pending();
    }

    /// Puts every deliverable interrupt into a free list register.
    fn inject_pending(&mut self) {
        while let Some(injection) = self.gic.next_injection() {
            // Priority 0 and group 0, as libvmm does: the guest masks
            // through its own GICC_PMR, which the hardware applies.
            if vm_vcpu(0)
                .vcpu_inject_irq(injection.irq, 0, 0, injection.lr)
                .is_err()
            {
                log::error!(
                    "{PD}: InjectIRQ of {} into LR {} failed",
                    injection.irq,
                    injection.lr
                );
                self.gic.injection_failed(injection);
                return;
            }
            self.counts.injected += 1;
        }
    }

    /// A fault from vCPU `child`: emulate and resume (a reply), or stop
    /// the vCPU, for good or (at a `wfi`) until a notification.
    ///
    /// A stop is never a `TCB_Suspend` here. The VMM is passive: it runs a
    /// fault on the faulting vCPU's scheduling context, which seL4 hands
    /// back to the vCPU when its pending reply is cancelled, and
    /// suspending it would cancel that reply and leave the VMM mid-handler
    /// with no scheduling context, never to run again. Instead the handler
    /// rings the doorbell PD and replies: the reply gives the scheduling
    /// context back, the doorbell PD (above the guest) runs next and rings
    /// back, and the VMM (on its notification's scheduling context)
    /// suspends the vCPU in `notified`, before the vCPU runs.
    pub fn fault(&mut self, ram: &Ram, child: Child, info: MessageInfo) -> Option<MessageInfo> {
        let id = child.index();
        let resume = self.handle(ram, id, info.fault()).unwrap_or_else(|why| {
            log::error!("{PD}: stopping the guest (vCPU {id}): {why}");
            Resume::Stop
        });
        // Any other answer stops the vCPU: `notified` suspends it (and
        // `wake` resumes it from a sleep).
        if resume != Resume::Yes {
            // A stop for good is never downgraded.
            if !matches!(self.pending, Some((_, Resume::Stop | Resume::Off))) {
                self.pending = Some((id, resume));
            }
            self.doorbell.notify();
        }
        Some(MessageInfo::new(0, 0))
    }

    fn handle(&mut self, ram: &Ram, id: usize, fault: Fault) -> Result<Resume, &'static str> {
        match fault {
            Fault::VmFault(f) => self.data_abort(id, &f),
            Fault::UnknownSyscall(s) => {
                let x: [u64; 8] = core::array::from_fn(|i| s.gpr(i));
                let (ret, resume) = match hvc::decode(&x) {
                    Ok(call) => hypercall(ram, call),
                    Err(e) => {
                        log::warn!("{PD}: guest hypercall refused: {e}");
                        (e.code(), Resume::Yes)
                    }
                };
                if let Resume::Stop = resume {
                    return Ok(Resume::Stop);
                }
                set_x0_and_skip(id, Some(ret), Some(s.fault_ip()))?;
                Ok(Resume::Yes)
            }
            Fault::VGicMaintenance(m) => {
                self.counts.maintenance += 1;
                // idx is None when the maintenance was not for one LR.
                if let Some(irq) = m.idx().and_then(|lr| self.gic.eoi(lr)) {
                    self.acknowledge(id, irq);
                }
                self.inject_pending();
                Ok(Resume::Yes)
            }
            Fault::VPpiEvent(e) => {
                self.counts.vppi += 1;
                match u16::try_from(e.irq()) {
                    Ok(irq) => self.raise(irq),
                    Err(_) => log::error!("{PD}: VPPI event for irq {}", e.irq()),
                }
                Ok(Resume::Yes)
            }
            Fault::VCpuFault(f) => match trap::decode(f.hsr()) {
                VcpuTrap::Wfi => {
                    self.counts.wfx += 1;
                    self.sleep(id)
                }
                VcpuTrap::Wfe => {
                    // A spin-lock back-off: resume after it.
                    self.counts.wfx += 1;
                    set_x0_and_skip(id, None, None)?;
                    Ok(Resume::Yes)
                }
                VcpuTrap::Smc { .. } => {
                    self.counts.smc += 1;
                    self.smc(id)
                }
                VcpuTrap::Other { ec } => {
                    log::error!("{PD}: vCPU fault with syndrome {:#x} (EC {ec:#x})", f.hsr());
                    Err("unhandled vCPU fault")
                }
            },
            other => {
                log::error!("{PD}: unexpected fault from the guest: {other:?}");
                Err("unhandled fault")
            }
        }
    }

    /// An interrupt the guest has ended: acknowledge it at its source.
    fn acknowledge(&mut self, id: usize, irq: u16) {
        let failed = match irq {
            TIMER_IRQ => vm_vcpu(id).vcpu_ack_vppi(u64::from(irq)).is_err(),
            UART_IRQ => self.uart_irq.is_some_and(|c| c.irq_ack().is_err()),
            _ => false,
        };
        if failed {
            log::error!("{PD}: acknowledging interrupt {irq} failed");
        }
    }

    fn smc(&mut self, id: usize) -> Result<Resume, &'static str> {
        let tcb = vm_tcb(id);
        let mut regs = tcb
            .tcb_read_all_registers(false)
            .map_err(|_| "TCB_ReadRegisters failed")?;
        let (x0, x1, x2, x3) = (*regs.gpr(0), *regs.gpr(1), *regs.gpr(2), *regs.gpr(3));
        match psci::call(x0, x1, x2, x3) {
            Outcome::Return(value) => {
                if !psci::is_psci(x0) {
                    log::warn!("{PD}: guest SMC {x0:#x} is not PSCI: NOT_SUPPORTED");
                }
                *regs.gpr_mut(0) = value;
                *regs.pc_mut() += 4;
                tcb.tcb_write_all_registers(false, &mut regs)
                    .map_err(|_| "TCB_WriteRegisters failed")?;
                Ok(Resume::Yes)
            }
            Outcome::SystemOff | Outcome::CpuOff => {
                let c = &self.counts;
                log::info!(
                    "{PD}: guest faults: {} virtio-mmio, {} GICD, {} timer VPPIs, {} maintenance, {} IRQs injected, {} WFI/WFE ({} slept), {} SMC",
                    c.mmio, c.gicd, c.vppi, c.maintenance, c.injected, c.wfx, c.sleeps, c.smc
                );
                let [ppc_us, ppcs, note_us, notes, fault_us, faults, now_us] = crate::busy_line();
                log::info!(
                    "{PD}: busy {ppc_us} us in {ppcs} copy PPCs, {note_us} us in {notes} notifications, {fault_us} us in {faults} guest faults, of {now_us} us since the counter started"
                );
                log::info!("{PD}: guest powered off");
                Ok(Resume::Off)
            }
            Outcome::SystemReset => {
                log::info!("{PD}: guest asked for a reset");
                Ok(Resume::Reset)
            }
        }
    }

    fn data_abort(&mut self, id: usize, f: &sel4::VmFault) -> Result<Resume, &'static str> {
        if f.is_prefetch() {
            log::error!("{PD}: instruction abort at {:#x}", f.addr());
            return Err("instruction fetch from unmapped memory");
        }
        let access = decode_data_abort(f.fsr(), f.addr()).map_err(|e| {
            log::error!(
                "{PD}: data abort at {:#x} (pc {:#x}): {e}",
                f.addr(),
                f.ip()
            );
            "cannot emulate this data abort"
        })?;
        let tcb = vm_tcb(id);
        let mut regs = tcb
            .tcb_read_all_registers(false)
            .map_err(|_| "TCB_ReadRegisters failed")?;
        let register = usize::from(access.register);
        let value = if register < 31 {
            *regs.gpr(register)
        } else {
            0
        };
        let (load, gicd) = if let Some(offset) = access
            .gpa
            .checked_sub(GICD_GPA)
            .filter(|o| *o < GICD_WINDOW)
        {
            self.counts.gicd += 1;
            let write = access.write.then(|| access.store_value(value) as u32);
            let answer = self.gic.mmio(offset, access.width, write);
            if let vgic::Access::Ignored(why) = answer {
                self.ignored_gicd = self.ignored_gicd.saturating_add(1);
                if self.ignored_gicd <= 8 || self.ignored_gicd.is_power_of_two() {
                    log::warn!(
                        "vgic: guest {} of {} bytes at GICD+{offset:#x} ignored: {why} (#{})",
                        if access.write { "write" } else { "read" },
                        access.width,
                        self.ignored_gicd
                    );
                }
            }
            let load = (!access.write && access.writes_register())
                .then(|| access.load_value(u64::from(answer.value())));
            (load, true)
        } else {
            self.counts.mmio += 1;
            let load = match self.blk.emulate(&access, value) {
                Some(load) => Some(load),
                None => match self
                    .console
                    .as_mut()
                    .and_then(|c| c.emulate(&access, value))
                {
                    Some(load) => Some(load),
                    None => self.net.as_mut().and_then(|n| n.emulate(&access, value)),
                },
            };
            let Some(load) = load else {
                log::error!(
                    "{PD}: guest access to unmapped gpa {:#x} (pc {:#x})",
                    f.addr(),
                    f.ip()
                );
                return Err("access outside RAM and every device");
            };
            (load, false)
        };
        if let (Some(load), true) = (load, register < 31) {
            *regs.gpr_mut(register) = load;
        }
        *regs.pc_mut() += u64::from(access.instruction_len);
        tcb.tcb_write_all_registers(false, &mut regs)
            .map_err(|_| "TCB_WriteRegisters failed")?;
        // A distributor write may have enabled something pending.
        if gicd {
            self.inject_pending();
        }
        Ok(Resume::Yes)
    }
}

/// Writes all of vCPU 0's registers at `pc` with `x0..x2` and starts it.
fn start_vcpu(pc: u64, x: [u64; 3]) -> Result<(), &'static str> {
    let mut regs = sel4::UserContext::default();
    *regs.pc_mut() = pc;
    *regs.spsr_mut() = SPSR_EL1H_MASKED;
    for (i, value) in x.into_iter().enumerate() {
        *regs.gpr_mut(i) = value;
    }
    vm_tcb(0)
        .tcb_write_all_registers(true, &mut regs)
        .map_err(|_| "starting vCPU 0 failed (TCB_WriteRegisters)")
}

/// Resumes vCPU `id` after the 4-byte instruction at `pc` (`None`: at its
/// current pc, where seL4 leaves it for a WFI or SMC trap), with `x0` set
/// if given. One register read and one write.
fn set_x0_and_skip(id: usize, x0: Option<u64>, pc: Option<u64>) -> Result<(), &'static str> {
    let tcb = vm_tcb(id);
    let mut regs = tcb
        .tcb_read_all_registers(false)
        .map_err(|_| "TCB_ReadRegisters failed")?;
    if let Some(x0) = x0 {
        *regs.gpr_mut(0) = x0;
    }
    *regs.pc_mut() = pc.unwrap_or(*regs.pc()) + 4;
    tcb.tcb_write_all_registers(false, &mut regs)
        .map_err(|_| "TCB_WriteRegisters failed")
}

/// What a fault's handling leaves the vCPU to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// Go on (the reply restarts it).
    Yes,
    /// Stop at a `wfi` until a notification.
    Asleep,
    /// Stop for good.
    Stop,
    /// Stop for good: the guest powered itself off (PSCI SYSTEM_OFF or
    /// CPU_OFF of its one vCPU). The machine powers off once every VM has.
    Off,
    /// Stop, load the guest again and start it afresh (PSCI SYSTEM_RESET).
    Reset,
}

/// What wakes an idle guest at its virtual timer's deadline.
#[derive(Clone, Copy)]
pub enum IdleTimer {
    /// The EL1 physical timer, this VMM's own, its PPI 30 on this channel
    /// (the one-VM system; seL4, a hypervisor, keeps the EL2 timer and
    /// exports this one to user level on qemu_virt_aarch64).
    Own(Channel),
    /// The timer PD, which multiplexes that timer for several VMMs, on
    /// this channel: calls set and cancel the deadline, a notification on
    /// it is the wake-up (the N-VM system on one core).
    Shared(Channel),
}

impl IdleTimer {
    fn channel(self) -> Channel {
        match self {
            IdleTimer::Own(c) | IdleTimer::Shared(c) => c,
        }
    }

    /// Wake the guest when the physical counter reaches `at`.
    fn arm(self, at: u64) {
        match self {
            IdleTimer::Own(_) => common::el1_timer::arm(at),
            IdleTimer::Shared(c) => timer_call(c, timer_mux::protocol::Request::Set { at }),
        }
    }

    /// No wake-up.
    fn disarm(self) {
        match self {
            IdleTimer::Own(_) => common::el1_timer::disarm(),
            IdleTimer::Shared(c) => timer_call(c, timer_mux::protocol::Request::Cancel),
        }
    }

    /// The wake-up came: acknowledge the interrupt if it was ours.
    fn acknowledge(self) {
        if let IdleTimer::Own(irq) = self {
            if irq.irq_ack().is_err() {
                log::error!("{PD}: acknowledging the idle timer failed");
            }
        }
    }
}

/// One call to the timer PD.
fn timer_call(timer: Channel, request: timer_mux::protocol::Request) {
    use timer_mux::protocol::{decode_reply, MAX_WORDS};
    let mut msg = [0u64; MAX_WORDS];
    let (label, words) = request.encode(&mut msg);
    sel4_microkit::with_msg_regs_mut(|regs| {
        for (r, w) in regs.iter_mut().zip(&msg[..words]) {
            *r = *w;
        }
    });
    let reply = timer.pp_call(MessageInfo::new(label, words));
    if let Err(e) = decode_reply(reply.label()) {
        log::error!("{PD}: the timer PD refused {request:?}: {e}");
    }
}

/// The Linux guest's images and where they were loaded, for a reset.
#[cfg(feature = "linux")]
struct LinuxGuest {
    images: crate::LinuxImages,
    layout: linux_boot::load::BootLayout,
    /// vCPU 0's SCTLR_EL1 before the guest first ran.
    sctlr: u64,
}

/// Loads the kernel, initrd and device tree into `memory` and checks that
/// the device tree in guest RAM says what the layout says; logs where
/// everything went.
#[cfg(feature = "linux")]
fn load_linux(
    ram: &mut Ram,
    images: &mut crate::LinuxImages,
    memory: guest_ram::GpaRange,
) -> Result<linux_boot::load::BootLayout, &'static str> {
    let layout = linux_boot::load(
        ram,
        memory,
        &images.kernel,
        images.kernel.len() as u64,
        &images.initrd,
        images.initrd.len() as u64,
        images.dtb,
    )
    .map_err(|e| {
        log::error!("{PD}: Linux not loaded: {e}");
        "loading Linux failed"
    })?;
    let dtb_len = layout.dtb.len as usize;
    match images
        .dtb
        .get(..dtb_len)
        .map(|b| linux_boot::load::agrees(b, &layout))
    {
        Some(Ok(true)) => {}
        _ => return Err("the patched device tree disagrees with the layout"),
    }
    let end = |r: guest_ram::GpaRange| r.gpa + r.len;
    log::info!(
        "{PD}: Linux guest: RAM {:#x}..{:#x}, kernel {:#x}..{:#x} (image_size {:#x}, {} bytes copied), initrd {:#x}..{:#x}, dtb {:#x}..{:#x}, entry {:#x}",
        memory.gpa,
        end(memory),
        layout.kernel.gpa,
        end(layout.kernel),
        layout.kernel.len,
        (images.kernel.len() as u64).min(layout.kernel.len),
        layout.initrd.gpa,
        end(layout.initrd),
        layout.dtb.gpa,
        end(layout.dtb),
        layout.entry
    );
    Ok(layout)
}

/// Reads `len` (at most `MAX_PRINT`) bytes of guest RAM at `gpa` into
/// `text`, for printing.
fn guest_text<'a>(ram: &Ram, gpa: u64, len: u64, text: &'a mut [u8]) -> Option<&'a [u8]> {
    let bytes = text.get_mut(..len as usize)?;
    (len == 0 || ram.read(gpa, bytes).is_ok()).then_some(&*bytes)
}

/// Carries out a hypercall: the value for x0, and whether to go on.
fn hypercall(ram: &Ram, call: Hypercall) -> (u64, Resume) {
    let mut text = [0u8; hvc::MAX_PRINT as usize];
    match call {
        Hypercall::Print { gpa, len } => match guest_text(ram, gpa, len, &mut text) {
            Some(line) => {
                debug_println!("guest: {}", Text(line));
                (hvc::RET_OK, Resume::Yes)
            }
            None => (hvc::RET_INVALID, Resume::Yes),
        },
        Hypercall::Result {
            passed,
            total,
            name_gpa,
            name_len,
        } => match guest_text(ram, name_gpa, name_len, &mut text) {
            Some(name) => {
                debug_println!("guest: {} {passed}/{total} passed", Text(name));
                (hvc::RET_OK, Resume::Yes)
            }
            None => (hvc::RET_INVALID, Resume::Yes),
        },
        Hypercall::Exit { code } => {
            log::info!("{PD}: guest exited with code {code}");
            (hvc::RET_OK, Resume::Stop)
        }
    }
}
