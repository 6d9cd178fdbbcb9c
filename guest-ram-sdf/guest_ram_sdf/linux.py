# SPDX-License-Identifier: BSD-2-Clause
"""The N-VM Linux system (``make GUEST=linux VMS=N``, qemu_virt_aarch64):
one source for 1 to 4 Linux VMs, each with its own VMM, guest RAM, disk
and virtio console, and the PDs they share: a serial PD that owns the
UART and multiplexes the consoles, and a timer PD that multiplexes the
one EL1 physical timer for the VMMs' idle wake-ups.

    python -m guest_ram_sdf.bundle --kernel Image --initrd initrd.cpio.gz -o bundle.bin
    python -m guest_ram_sdf.linux --vms 2 --bundle bundle.bin [--bundle-paddr 0xc0000000] \\
        --dtb vm0.dtb --dtb vm1.dtb --disk disk.img [--cpus 4] > guest-ram.system

Per VM n (every PD of a VM is built from one binary; what differs comes
through ``setvar``): ``vmm<n>`` (passive, 200) with the virtual machine
``guest<n>`` (50), ``blk<n>`` (160), ``doorbell<n>`` (170), and the
regions ``guest_ram_vm<n>``, ``blk_disk_vm<n>``, ``blk_staging_vm<n>``,
``blk_device_vm<n>``, ``console_buffer_vm<n>``, ``console_device_vm<n>``,
``linux_dtb_vm<n>``. Shared: ``serial`` (180, a copy client of every VMM,
the UART and its interrupt, ``smc`` to power the machine off),
``timer`` (210, PPI 30 of core 0; passive on one core), ``net``
(50, the guests' priority, with ``--net-acl``: the switch between the VMs' virtio-net devices,
a copy client of every VMM with a 128 KiB staging region
``net_buffer_vm<n>`` and the device page ``net_device_vm<n>`` per VM, a
region ``net_pair_<a>_<b>`` per pair of VMs that only the net PD and
those two VMMs map, where frames between them wait between their two
copies, and the ACL's deny list prefilled into ``net_acl``), the
kernel and initrd's boot bundle ``linux_images`` (read-only in every VMM) and the GIC's virtual
CPU interface (mapped into every VM; seL4 switches its state with the
vCPU).

Channel ids are conventions the PDs rely on: in ``serial``, VM n's
console is channel n and its power signal channel 4 + n; in ``net``, VM
n's port is channel n and its power signal channel 4 + n; in ``timer``,
VM n's VMM is client n on channel n.

Scheduling on one core: the guests have equal priorities and Microkit's
default budget = period (1 ms), so seL4's MCS scheduler runs them round
robin and a guest spinning in a loop gets its share, no more; the PDs
that serve them (VMMs, doorbells, blk, serial, timer) run above them.
Each blk PD has a budget of half its period, so one guest's disk load
cannot take the whole core from the others. With ``--cpus`` > 1 (an
``smp-*`` kernel), VM n, its vCPU and its PDs go to core n, and the VMMs
are not passive (a passive server called from another core never
answered).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from sdfgen import SystemDescription as S

from . import GuestRam, map_extra, pd_extra, region, render, setvar_region_paddr

MAX_VMS = 4
GUEST_RAM_GPA = 0x4000_0000
GUEST_RAM_SIZE = 0x800_0000
PAGE_2M = 0x20_0000

# Priorities (a PPC server runs above every PD that calls it).
TIMER_PRIORITY = 210
VMM_PRIORITY = 200
SERIAL_PRIORITY = 180
# The net PD runs at the guests' priority: a guest that kicks its transmit
# queue goes on (to its next frame, or to its idle wfi) instead of being
# preempted at once, so the PD takes a burst of frames per turn, not one
# (measured: a third of the bursts, about twice the TCP throughput on one
# core). It still calls the VMMs above it.
NET_PRIORITY = 50
# On SMP the net PD shares core 0 with VM 0 only, and a guest on another
# core that kicks is not preempted by it anyway: there it runs above the
# guests, as it first did, so that VM 1's frames do not wait for core 0's
# round robin (VMS=2 smp-debug qemu-test: 0.03 MiB/s each way at 50, 0.09
# at 175).
NET_PRIORITY_SMP = 175
DOORBELL_PRIORITY = 170
# With --blk device: each VM's block driver PD, above its blk PD (which
# rings it and never waits), as in system.xml.
BLK_DRIVER_PRIORITY = 180
BLK_PRIORITY = 160
GUEST_PRIORITY = 50
# blk PDs: at most half of each 10 ms period.
BLK_BUDGET, BLK_PERIOD = 5_000, 10_000

# The VMM's channel ids (setvar_id names in parentheses).
VMM_BLK_ID = 3            # blk_channel
VMM_DOORBELL_ID = 8       # doorbell_channel
VMM_CONSOLE_ID = 9        # console_channel
VMM_TIMER_ID = 10         # timer_channel
VMM_POWER_ID = 11         # power_channel
VMM_NET_ID = 12           # net_channel
VMM_NET_POWER_ID = 13     # net_power_channel
# The serial PD's ids beyond its per-VM channels (n and 4 + n).
SERIAL_POWER_BASE = 4
SERIAL_UART_IRQ_ID = 12
# The net PD's ids: VM n's port on n, its power signal on 4 + n.
NET_POWER_BASE = 4
TIMER_IRQ_ID = 8

# Addresses in the VMM.
VMM_GUEST_RAM = 0x2000_0000
VMM_BLK_DEVICE = 0x3002_0000
VMM_CONSOLE_BUFFER = 0x3003_0000
VMM_CONSOLE_DEVICE = 0x3004_0000
VMM_NET_DEVICE = 0x3005_0000
VMM_NET_BUFFER = 0x3008_0000
# With --blk device: VM n's disk is QEMU virt's virtio-mmio transport 8n
# (the Makefile puts it on virtio-mmio-bus.<8n>): a page of its own, at
# 0x0a000000 + n * 0x1000, its interrupt SPI 16 + 8n. The data region is
# the blk PD's copy buffer and the driver's DMA target, as in system.xml.
BLK_MMIO_BASE = 0x0a00_0000
BLK_IRQ_BASE = 48
BLK_DATA_SIZE = 0x80_0000
# Each virtio device's register page in the VMM (blk, console, net), a
# page apart; in the guest, at the device's window (pds/common).
VMM_REGISTERS = 0x3006_0000
VIRTIO_WINDOWS = {"blk": 0x0a00_0000, "console": 0x0a00_1000, "net": 0x0a00_2000}
VMM_DISK = 0x3200_0000
VMM_IMAGES = 0x4000_0000
VMM_DTB = 0x4500_0000
# Addresses in the serial PD.
SERIAL_UART = 0x0200_0000
SERIAL_BUFFERS = 0x3000_0000
SERIAL_DEVICES = 0x3800_0000
STRIDE = 0x10_0000
# Addresses in the net PD (its buffers and device pages as the serial
# PD's, and the ACL region). Each port's window (its staging region and
# up to three pair regions, 3.125 MiB) is NET_STRIDE apart.
NET_BUFFERS = 0x3000_0000
NET_STRIDE = 0x40_0000
NET_DEVICES = 0x3800_0000
NET_ACL = 0x3900_0000

CONSOLE_BUFFER_SIZE = 0x4000
# Per VM, the net PD's staging region: 128 KiB where the copy client
# stages ring snapshots, used rings and peeks at frames.
NET_BUFFER_SIZE = 0x2_0000
# Per pair of VMs {a, b}, a region mapped into the net PD, VMM a and VMM b
# only: the area for frames from a to b, then the one from b to a, each
# 512 KiB: a whole burst at MTU 1500 (64 frames of 1526 bytes, 97,664
# bytes) and 8 frames at the default NET_MTU, 65,510 (64 KiB each with
# their headers). Each VMM's window for the net PD is its staging region,
# then its pair regions in increasing order of the other VM
# (net_switch::Pairs).
NET_AREA_SIZE = 0x8_0000
NET_PAIR_SIZE = 2 * NET_AREA_SIZE


def system(vms: int, bundle: str, dtbs: List[str], disks: List[str], disk_size: int,
           cpus: int = 1, guest_ram_size: int = GUEST_RAM_SIZE, net_acl: Optional[str] = None,
           bundle_paddr: Optional[int] = None, blk_kind: str = "ram",
           guest_ram_paddr: Optional[int] = None) -> str:
    """The system description of ``vms`` Linux VMs (1 to 4). ``dtbs`` and
    ``disks`` have one path per VM (or one for all); ``disk_size`` is the
    disk image's length (its region is that rounded up to 2 MiB pages).
    ``net_acl`` is a file holding the network's deny list (``0-2,1-3``;
    empty or blank: none), prefilled into a region the net PD reads; without
    it there is no network. ``bundle`` is the kernel and initrd's boot
    bundle: prefilled, or (``bundle_paddr``) at that physical address,
    where a boot loader put it before seL4 started. ``blk_kind`` is ``ram`` (each
    VM's disk a RAM disk prefilled from its disk image) or ``device``
    (QEMU's virtio-blk device per VM behind a driver PD of its own; the
    disk images are then the Makefile's business, not the image's).
    ``guest_ram_paddr``: VM n's guest RAM is the physical memory at
    ``guest_ram_paddr + n * guest_ram_size`` instead of RAM that Microkit
    allocates. Outside seL4's RAM (QEMU's RAM above what seL4 is built
    for) that is device untyped, which seL4 neither zeroes nor cleans when
    the system starts (zeroing 128 MiB took the CapDL initialiser about
    0.95 s of the boot under QEMU). Only right where nothing left in that
    memory may reach a guest (QEMU's RAM starts zeroed; a board's boot
    firmware would have to clear it)."""
    if guest_ram_paddr is not None and (guest_ram_paddr % PAGE_2M or guest_ram_size % PAGE_2M):
        raise ValueError("guest RAM's physical address and size must be whole 2 MiB pages")
    if blk_kind not in ("ram", "device"):
        raise ValueError(f"blk_kind must be ram or device, not {blk_kind}")
    if not 1 <= vms <= MAX_VMS:
        raise ValueError(f"VMS must be 1 to {MAX_VMS}, not {vms}")
    if cpus < 1:
        raise ValueError("cpus must be at least 1")
    dtbs = dtbs if len(dtbs) > 1 else dtbs * vms
    disks = disks if len(disks) > 1 else disks * vms
    if len(dtbs) != vms or len(disks) != vms:
        raise ValueError("one device tree and one disk per VM (or one for all)")
    smp = cpus > 1
    sdf = S(S.Arch.AARCH64, 0x1_0000_0000)

    def core(n: int) -> Optional[int]:
        return n % cpus if smp else None

    # Its state (four consoles, line and input buffers) is built on the
    # stack in init, and a console call takes about 26 KiB more.
    serial = S.ProtectionDomain("serial", "serial.elf", priority=SERIAL_PRIORITY, stack_size=0x40000,
                                cpu=core(0))
    # SMC: once every VM is off, the serial PD (which holds the last output)
    # powers the machine off through PSCI SYSTEM_OFF.
    pd_extra(sdf, "serial", smc="true")
    uart = region(sdf, "uart", 0x1000, phys_addr=0x900_0000)
    serial.add_map(S.Map(uart, SERIAL_UART, "rw", cached=False, setvar_vaddr="uart_vaddr"))
    serial.add_irq(S.IrqConventional(33, id=SERIAL_UART_IRQ_ID, setvar_id="uart_irq_channel"))
    # The timer PD multiplexes core 0's EL1 physical timer (PPI 30) for
    # every VMM. On one core it is passive. On an SMP system it runs on
    # core 0 with a scheduling context of its own (a VMM on another core
    # calls it, and a call donating across cores never returned), and its
    # notification wakes a VMM on any core: an idle guest sleeps there too
    # instead of spinning through wfi traps (the counter is the same on
    # every core, so a deadline read on one is good on another).
    timer = S.ProtectionDomain("timer", "timer.elf", priority=TIMER_PRIORITY, passive=not smp,
                               cpu=core(0))
    timer.add_irq(S.IrqConventional(30, id=TIMER_IRQ_ID, setvar_id="timer_irq_channel"))

    # The kernel and initrd in one boot bundle (guest_ram_sdf.bundle),
    # shared read-only by every VMM: at a physical address outside seL4's
    # RAM where QEMU's loader put it (nothing fills it at boot), or
    # prefilled by the CapDL initialiser.
    if bundle_paddr is None:
        images_mr = region(sdf, "linux_images", None, page_size=PAGE_2M, prefill_path=bundle)
    else:
        with open(bundle, "rb") as f:
            bundle_len = f.seek(0, 2)
        images_mr = region(sdf, "linux_images", (bundle_len + PAGE_2M - 1) // PAGE_2M * PAGE_2M,
                           page_size=PAGE_2M, phys_addr=bundle_paddr)
    gicv = region(sdf, "gicv", 0x2000, phys_addr=0x804_0000)
    disk_region = BLK_DATA_SIZE if blk_kind == "device" else (disk_size + PAGE_2M - 1) // PAGE_2M * PAGE_2M

    pds = [serial, timer]
    # The network: a switch with one port per VM. It calls every VMM (a
    # copy client of each), so it runs below them, at the guests' priority
    # (NET_PRIORITY), with its own scheduling context; on SMP on core 0,
    # with VM 0 and the serial and timer PDs. (On a core of its own it
    # made a third busy emulated core, which QEMU on this project's 2-core
    # host could not keep up: the guests stalled for tens of seconds in
    # their kicks' traps. On real hardware with a spare core, that core is
    # the better place.)
    # Its state (four ports' queue indices, clients and counters, the
    # switch) is a few KiB, built on the stack in init and moved; a
    # transmit or receive call takes about 26 KiB more (virtio::net's
    # docs). 256 KiB. (It was 2 MiB while each port held a 97,664-byte
    # receive staging area, which the in-place receive never used.)
    net = None
    if net_acl is not None:
        net_priority = NET_PRIORITY_SMP if smp else NET_PRIORITY
        net = S.ProtectionDomain("net", "net.elf", priority=net_priority, stack_size=0x4_0000,
                                 cpu=core(0))
        acl = region(sdf, "net_acl", None, prefill_path=net_acl)
        net.add_map(S.Map(acl, NET_ACL, "r", setvar_vaddr="acl_vaddr"))
        map_extra(sdf, "net", "net_acl", setvar_prefill_size="acl_len")
        pds.append(net)
    vmms = []
    for n in range(vms):
        # Passive on one core (seL4's fastpath takes its copy calls). On
        # SMP the serial PD on core 0 calls every VMM, and a Call that
        # donates core 0's scheduling context to a passive VMM on another
        # core never returned (seen in QEMU, smp-debug): there each VMM
        # keeps a scheduling context of its own on its core.
        vmm = S.ProtectionDomain(f"vmm{n}", "vmm.elf", priority=VMM_PRIORITY, passive=not smp,
                                 stack_size=0x10000, cpu=core(n))
        vmms.append(vmm)
        ram = GuestRam(sdf, vmm, VMM_PRIORITY, gpa=GUEST_RAM_GPA, size=guest_ram_size,
                       vmm_vaddr=VMM_GUEST_RAM, page_size=PAGE_2M, name=f"guest_ram_vm{n}",
                       symbol="guest_ram",
                       phys_addr=None if guest_ram_paddr is None else guest_ram_paddr + n * guest_ram_size)

        # The disk: the blk PD's copy buffer (one copy), a staging region
        # right after it in both PDs, and the virtio shared page.
        # With a device, the blk PD's requests in flight live on its stack
        # (256 KiB, as in system.xml).
        blk = S.ProtectionDomain(f"blk{n}", "blk.elf", priority=BLK_PRIORITY, budget=BLK_BUDGET,
                                 period=BLK_PERIOD, stack_size=0x40000 if blk_kind == "device" else 0x10000,
                                 cpu=core(n))
        if blk_kind == "device":
            disk = region(sdf, f"blk_disk_vm{n}", BLK_DATA_SIZE, page_size=PAGE_2M)
        else:
            disk = region(sdf, f"blk_disk_vm{n}", None, page_size=PAGE_2M, prefill_path=disks[n])
        ram.add_client(blk, BLK_PRIORITY, "blk", buffer=disk, vmm_vaddr=VMM_DISK, client_vaddr=VMM_DISK,
                       vmm_id=VMM_BLK_ID, client_id=0, buffer_symbol="disk")
        if blk_kind == "device":
            pds.append(add_blk_driver(sdf, n, blk, disk, core(n)))
        else:
            map_extra(sdf, blk.name, f"blk_disk_vm{n}", setvar_prefill_size="disk_prefill_size")
        staging = region(sdf, f"blk_staging_vm{n}", 0x1_0000)
        vmm.add_map(S.Map(staging, VMM_DISK + disk_region, "rw", setvar_vaddr="blk_staging_vaddr",
                          setvar_size="blk_staging_size"))
        blk.add_map(S.Map(staging, VMM_DISK + disk_region, "rw", setvar_vaddr="staging_vaddr",
                          setvar_size="staging_size"))
        blk_device = region(sdf, f"blk_device_vm{n}", 0x1000)
        vmm.add_map(S.Map(blk_device, VMM_BLK_DEVICE, "rw", setvar_vaddr="blk_device_vaddr",
                          setvar_size="blk_device_size"))
        blk.add_map(S.Map(blk_device, 0x3010_0000, "rw", setvar_vaddr="device_vaddr",
                          setvar_size="device_size"))

        # The console: the serial PD is a copy client of this VMM (its
        # buffer for VM n, channel n) and shares the device page.
        ram.add_client(serial, SERIAL_PRIORITY, "console", buffer_size=CONSOLE_BUFFER_SIZE,
                       vmm_vaddr=VMM_CONSOLE_BUFFER, client_vaddr=SERIAL_BUFFERS + n * STRIDE,
                       vmm_id=VMM_CONSOLE_ID, client_id=n, buffer_symbol=f"vm{n}_buffer",
                       vmm_channel_symbol=f"vm{n}_channel", region_name=f"console_buffer_vm{n}")
        console_device = region(sdf, f"console_device_vm{n}", 0x1000)
        vmm.add_map(S.Map(console_device, VMM_CONSOLE_DEVICE, "rw", setvar_vaddr="console_device_vaddr",
                          setvar_size="console_device_size"))
        serial.add_map(S.Map(console_device, SERIAL_DEVICES + n * 0x1000, "rw",
                             setvar_vaddr=f"vm{n}_device_vaddr", setvar_size=f"vm{n}_device_size"))
        sdf.add_channel(S.Channel(vmm, serial, a_id=VMM_POWER_ID, b_id=SERIAL_POWER_BASE + n,
                                  pd_a_setvar_id="power_channel", pd_b_setvar_id=f"vm{n}_power_channel"))
        if net:
            # The network port: the net PD a copy client of this VMM (its
            # buffer for VM n, channel n), the device page shared, and the
            # power-off signal (the net PD logs its counters then).
            ram.add_client(net, net_priority, "net", buffer_size=NET_BUFFER_SIZE,
                           vmm_vaddr=VMM_NET_BUFFER, client_vaddr=NET_BUFFERS + n * NET_STRIDE,
                           vmm_id=VMM_NET_ID, client_id=n, buffer_symbol=f"vm{n}_buffer",
                           vmm_channel_symbol=f"vm{n}_channel", region_name=f"net_buffer_vm{n}")
            net_device = region(sdf, f"net_device_vm{n}", 0x1000)
            vmm.add_map(S.Map(net_device, VMM_NET_DEVICE, "rw", setvar_vaddr="net_device_vaddr",
                              setvar_size="net_device_size"))
            net.add_map(S.Map(net_device, NET_DEVICES + n * 0x1000, "rw",
                              setvar_vaddr=f"vm{n}_device_vaddr", setvar_size=f"vm{n}_device_size"))
            sdf.add_channel(S.Channel(vmm, net, a_id=VMM_NET_POWER_ID, b_id=NET_POWER_BASE + n,
                                      pd_a_setvar_id="net_power_channel",
                                      pd_b_setvar_id=f"vm{n}_power_channel"))
        sdf.add_channel(S.Channel(vmm, timer, a_id=VMM_TIMER_ID, b_id=n, pp_a=True,
                                  pd_a_setvar_id="timer_channel"))

        # The guest's images: the boot bundle shared read-only, the device
        # tree its own (the VMM patches it in place).
        vmm.add_map(S.Map(images_mr, VMM_IMAGES, "r", setvar_vaddr="linux_images_vaddr",
                          setvar_size="linux_images_size"))
        dtb = region(sdf, f"linux_dtb_vm{n}", None, prefill_path=dtbs[n])
        vmm.add_map(S.Map(dtb, VMM_DTB, "rw", setvar_vaddr="linux_dtb_vaddr", setvar_size="linux_dtb_size"))

        vm = S.VirtualMachine(f"guest{n}", [S.VirtualMachine.Vcpu(id=0, cpu=core(n))],
                              priority=GUEST_PRIORITY)
        ram.map_into_vm(vm)
        vm.add_map(S.Map(gicv, 0x801_0000, "rw", cached=False))
        # Each virtio device's register page: rendered by the VMM, read-only
        # in the guest at the device's window (loads do not trap, stores
        # do).
        for i, (kind, window) in enumerate(VIRTIO_WINDOWS.items()):
            if kind == "net" and not net:
                continue
            registers = region(sdf, f"virtio_{kind}_regs_vm{n}", 0x1000)
            vmm.add_map(S.Map(registers, VMM_REGISTERS + i * 0x1000, "rw",
                              setvar_vaddr=f"virtio_{kind}_regs_vaddr",
                              setvar_size=f"virtio_{kind}_regs_size"))
            vm.add_map(S.Map(registers, window, "r"))
        vmm.set_virtual_machine(vm)

        doorbell = S.ProtectionDomain(f"doorbell{n}", "doorbell.elf", priority=DOORBELL_PRIORITY,
                                      cpu=core(n))
        sdf.add_channel(S.Channel(vmm, doorbell, a_id=VMM_DOORBELL_ID, b_id=0,
                                  pd_a_setvar_id="doorbell_channel", pd_b_setvar_id="vmm_channel"))
        pds += [vmm, blk, doorbell]
    if net:
        add_net_pairs(sdf, net, vmms)
    for pd in pds:
        sdf.add_pd(pd)
    return render(sdf)


def net_window_offset(n: int, peer: int, vms: int) -> int:
    """Where the pair region of VMs ``n`` and ``peer`` lies in VM ``n``'s
    window for the net PD: after the staging region, in increasing order
    of the other VM (net_switch::Pairs computes the same)."""
    rank = [m for m in range(vms) if m != n].index(peer)
    return NET_BUFFER_SIZE + rank * NET_PAIR_SIZE


def add_blk_driver(sdf: S, n: int, blk: S.ProtectionDomain, data: S.MemoryRegion,
                   cpu: Optional[int]) -> S.ProtectionDomain:
    """VM n's block driver PD (pds/blk-driver, as system.xml's BLKDEVICE
    parts): QEMU's virtio-blk transport 8n, its DMA region and the data
    region (``data``, ``blk_disk_vm<n>``, also the blk PD's copy buffer)
    by physical address,
    sDDF's request/response rings and storage-info page shared with
    ``blk``, and the channel between them. It maps no guest RAM."""
    driver = S.ProtectionDomain(f"blk_driver{n}", "blk-driver.elf", priority=BLK_DRIVER_PRIORITY,
                                stack_size=0x10000, cpu=cpu)
    mmio = region(sdf, f"virtio_blk_mmio_vm{n}", 0x1000, phys_addr=BLK_MMIO_BASE + n * 0x1000)
    dma = region(sdf, f"blk_dma_vm{n}", 0x1_0000)
    queue = region(sdf, f"blk_queue_vm{n}", 0x2000)
    info = region(sdf, f"blk_info_vm{n}", 0x1000)
    driver.add_map(S.Map(mmio, 0x3000_0000, "rw", cached=False, setvar_vaddr="virtio_mmio_vaddr"))
    driver.add_map(S.Map(dma, 0x3010_0000, "rw", setvar_vaddr="dma_vaddr", setvar_size="dma_size"))
    setvar_region_paddr(sdf, driver.name, "dma_paddr", f"blk_dma_vm{n}")
    driver.add_map(S.Map(data, VMM_DISK, "rw", setvar_vaddr="data_vaddr", setvar_size="data_size"))
    setvar_region_paddr(sdf, driver.name, "data_paddr", f"blk_disk_vm{n}")
    for pd in (driver, blk):
        pd.add_map(S.Map(queue, 0x3020_0000, "rw", setvar_vaddr="queue_vaddr", setvar_size="queue_size"))
        pd.add_map(S.Map(info, 0x3021_0000, "rw", setvar_vaddr="info_vaddr", setvar_size="info_size"))
    driver.add_irq(S.IrqConventional(BLK_IRQ_BASE + 8 * n, id=1, setvar_id="irq_channel"))
    sdf.add_channel(S.Channel(blk, driver, a_id=1, b_id=0, pd_a_setvar_id="driver_channel",
                              pd_b_setvar_id="client_channel"))
    return driver


def add_net_pairs(sdf: S, net: S.ProtectionDomain, vmms: List[S.ProtectionDomain]) -> None:
    """A region per pair of VMs, mapped into the net PD (in both VMs'
    windows) and into those two VMMs only, each right after the staging
    region and the pair regions before it. The last pair region of each
    window tells its address (``net_last_pair_vaddr`` in the VMM,
    ``vm<n>_last_pair_vaddr`` in the net PD) and the size of one
    (``net_pair_size``, ``pair_size``): the PDs check their windows' length
    with them."""
    vms = len(vmms)
    first = True
    for a, b in ((a, b) for a in range(vms) for b in range(a + 1, vms)):
        pair = region(sdf, f"net_pair_{a}_{b}", NET_PAIR_SIZE)
        for n, peer in ((a, b), (b, a)):
            offset = net_window_offset(n, peer, vms)
            last = peer == max(m for m in range(vms) if m != n)
            vmms[n].add_map(S.Map(pair, VMM_NET_BUFFER + offset, "rw",
                                  setvar_vaddr="net_last_pair_vaddr" if last else None,
                                  setvar_size="net_pair_size" if last else None))
            net.add_map(S.Map(pair, NET_BUFFERS + n * NET_STRIDE + offset, "rw",
                              setvar_vaddr=f"vm{n}_last_pair_vaddr" if last else None,
                              setvar_size="pair_size" if first else None))
            first = False


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, required=True)
    p.add_argument("--bundle", required=True, help="the kernel and initrd (guest_ram_sdf.bundle)")
    p.add_argument("--bundle-paddr", type=lambda s: int(s, 0),
                   help="where a boot loader puts the bundle (default: prefilled)")
    p.add_argument("--dtb", action="append", required=True, help="one per VM, or one for all")
    p.add_argument("--disk", action="append", required=True, help="one per VM, or one for all")
    p.add_argument("--disk-size", type=lambda s: int(s, 0), help="default: the first disk's length")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--guest-ram-size", type=lambda s: int(s, 0), default=GUEST_RAM_SIZE)
    p.add_argument("--guest-ram-paddr", type=lambda s: int(s, 0),
                   help="VM n's guest RAM at this physical address + n * its size, not zeroed by seL4 "
                        "(default: RAM that Microkit allocates)")
    p.add_argument("--net-acl", help="a file with the network's deny list (with it, the net PD)")
    p.add_argument("--blk", choices=("ram", "device"), default="ram",
                   help="each VM's disk: a RAM disk, or QEMU's virtio-blk device behind a driver PD")
    a = p.parse_args(argv)
    size = a.disk_size
    if size is None:
        with open(a.disk[0], "rb") as f:
            size = f.seek(0, 2)
    sys.stdout.write(system(a.vms, a.bundle, a.dtb, a.disk, size, a.cpus, a.guest_ram_size, a.net_acl,
                            a.bundle_paddr, a.blk, a.guest_ram_paddr))


if __name__ == "__main__":
    main()
