# SPDX-License-Identifier: BSD-2-Clause
"""The repository's demo system (system.xml), built with sdfgen and this
helper: what an sdfgen user writes to get the same system. The tests check
that it describes the same regions, maps, channels and priorities as the
SDF the Makefile makes from system.xml, on every board.

    python -m guest_ram_sdf.demo qemu_virt_aarch64 /path/to/guest.bin /path/to/disk.img > guest-ram.system
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sdfgen import SystemDescription as S

from . import GuestRam, region, render

BOARDS = Path(__file__).resolve().parents[2] / "board-configs"
ARCHES = {"aarch64": S.Arch.AARCH64, "riscv64": S.Arch.RISCV64, "x86_64": S.Arch.X86_64}


def board(name: str) -> dict:
    """The variables of board-configs/<name>.mk."""
    text = (BOARDS / f"{name}.mk").read_text()
    return dict(re.findall(r"^([A-Z_]+) :?= *(\S+)", text, re.M))


def system(board_name: str, guest_image: str, disk_image: str = "disk.img", disk_size: int = 0x10_0000) -> str:
    """The demo system for a board, with the bare-metal guest and a blk
    PD moving data with one copy (its disk region is its copy buffer,
    followed by a staging region)."""
    b = board(board_name)
    gpa, size = int(b["GUEST_RAM_GPA"], 16), int(b["GUEST_RAM_SIZE"], 16)
    vm_board = b.get("VM") == "yes"
    sdf = S(ARCHES[b["ARCH"]], 0x1_0000_0000)

    # Passive: seL4's fastpath takes a Call only to a server without a
    # scheduling context of its own.
    vmm = S.ProtectionDomain("vmm", "vmm.elf", priority=200, passive=True, stack_size=0x10000)
    selftest = S.ProtectionDomain("selftest", "selftest.elf", priority=100, stack_size=0x20000)
    view = S.ProtectionDomain("guest-view", "guest-view.elf", priority=150)
    c_client = S.ProtectionDomain("c-client", "c-client.elf", priority=90)

    ram = GuestRam(sdf, vmm, 200, gpa=gpa, size=size, vmm_vaddr=0x2000_0000,
                   page_size=int(b["GUEST_RAM_PAGE_SIZE"], 16))
    ram.add_client(selftest, 100, "selftest", buffer_size=0x1000, vmm_vaddr=0x3000_0000,
                   client_vaddr=0x3000_0000, vmm_id=1, client_id=0)
    ram.add_client(view, 150, "guest_view", buffer_size=0x1000, vmm_vaddr=0x3000_1000,
                   client_vaddr=0x3000_0000, vmm_id=2, client_id=0)
    ram.add_client(c_client, 90, "c_client", buffer_size=0x1000, vmm_vaddr=0x3000_2000,
                   client_vaddr=0x3000_0000, vmm_id=5, client_id=0)
    ram.map_read_only(view, 150)
    # The self-test asks guest-view to look at guest RAM (not guest-ram's).
    sdf.add_channel(S.Channel(view, selftest, a_id=1, b_id=1, pp_b=True, pd_b_setvar_id="guest_view_channel"))

    pds = [vmm]
    if vm_board:
        # 256 KiB of stack: with a device (BLK=device), the blk PD's
        # requests in flight live there (as in system.xml).
        blk = S.ProtectionDomain("blk", "blk.elf", priority=160, stack_size=0x40000)
        # One copy: the disk region is the blk PD's copy buffer, and a
        # staging region follows it in both PDs.
        disk_region = (disk_size + 0xfff) & ~0xfff
        disk = region(sdf, "blk_disk", None, page_size=0x1000, prefill_path=disk_image)
        ram.add_client(blk, 160, "blk", buffer=disk, vmm_vaddr=0x3200_0000,
                       client_vaddr=0x3200_0000, vmm_id=3, client_id=0, buffer_symbol="disk")
        staging = region(sdf, "blk_staging", 0x1_0000)
        vmm.add_map(S.Map(staging, 0x3200_0000 + disk_region, "rw", setvar_vaddr="blk_staging_vaddr",
                          setvar_size="blk_staging_size"))
        blk.add_map(S.Map(staging, 0x3200_0000 + disk_region, "rw", setvar_vaddr="staging_vaddr",
                          setvar_size="staging_size"))
        device = region(sdf, "blk_device", 0x1000)
        vmm.add_map(S.Map(device, 0x3002_0000, "rw", setvar_vaddr="blk_device_vaddr",
                          setvar_size="blk_device_size"))
        blk.add_map(S.Map(device, 0x3010_0000, "rw", setvar_vaddr="device_vaddr", setvar_size="device_size"))
        # The virtio-blk device's register page: read-only in the guest at
        # the device's window (its loads do not trap, its stores do).
        registers = region(sdf, "virtio_blk_regs", 0x1000)
        vmm.add_map(S.Map(registers, 0x3004_0000, "rw", setvar_vaddr="virtio_blk_regs_vaddr",
                          setvar_size="virtio_blk_regs_size"))
        image = region(sdf, "guest_image", None, prefill_path=guest_image)
        vmm.add_map(S.Map(image, 0x3100_0000, "rw", setvar_vaddr="guest_image_vaddr",
                          setvar_size="guest_image_size"))
        vm = S.VirtualMachine("guest", [S.VirtualMachine.Vcpu(id=0)], priority=50)
        ram.map_into_vm(vm)
        vm.add_map(S.Map(registers, 0x0a00_0000, "r"))
        vmm.set_virtual_machine(vm)
        # The doorbell PD rings the VMM back: how a passive VMM stops its vCPU.
        doorbell = S.ProtectionDomain("doorbell", "doorbell.elf", priority=170)
        sdf.add_channel(S.Channel(vmm, doorbell, a_id=8, b_id=0, pd_a_setvar_id="doorbell_channel",
                                  pd_b_setvar_id="vmm_channel"))
        pds += [blk, doorbell]
    for pd in pds + [view, selftest, c_client]:
        sdf.add_pd(pd)
    return render(sdf)


if __name__ == "__main__":
    disk = sys.argv[3] if len(sys.argv) > 3 else "disk.img"
    size = Path(disk).stat().st_size if Path(disk).exists() else 0x10_0000
    sys.stdout.write(system(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "guest.bin", disk, size))
