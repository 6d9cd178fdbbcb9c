# SPDX-License-Identifier: BSD-2-Clause
"""The helper's demo system against the SDF that the Makefile builds from
system.xml, for every board, compared as parsed XML: the same memory
regions, maps, virtual machine, channels and priorities."""

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sdfgen import SystemDescription as S

from guest_ram_sdf import GuestRam
from guest_ram_sdf.demo import BOARDS, system

REPO = Path(__file__).resolve().parents[2]
ALL_BOARDS = sorted(p.stem for p in BOARDS.glob("*.mk"))


def number(value):
    return None if value is None else int(value, 0)


def maps(parent):
    return sorted(
        (m.get("mr"), number(m.get("vaddr")), m.get("perms"), m.get("cached", "true"),
         m.get("setvar_vaddr"), m.get("setvar_size"))
        for m in parent.findall("map")
    )


def canonical(xml: str):
    root = ET.fromstring(xml)
    regions = {
        r.get("name"): (number(r.get("size")), number(r.get("page_size")), r.get("prefill_path"),
                        number(r.get("phys_addr")))
        for r in root.findall("memory_region")
    }
    pds = {}
    for pd in root.findall("protection_domain"):
        vm = pd.find("virtual_machine")
        vm_desc = None if vm is None else (
            vm.get("name"), number(vm.get("priority")),
            sorted(number(v.get("id")) for v in vm.findall("vcpu")), maps(vm))
        pds[pd.get("name")] = (number(pd.get("priority")), pd.get("passive", "false"), number(pd.get("stack_size")),
                               pd.find("program_image").get("path"), maps(pd), vm_desc)
    channels = {
        frozenset((e.get("pd"), number(e.get("id")), e.get("pp", "false"), e.get("setvar_id"))
                  for e in ch.findall("end"))
        for ch in root.findall("channel")
    }
    return regions, pds, channels


@pytest.mark.parametrize("board", ALL_BOARDS)
def test_same_system_as_system_xml(board, tmp_path):
    image = "/images/guest.bin"
    build = tmp_path / board
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(0x10_0000))
    subprocess.run(["make", "-s", "-C", str(REPO), f"MICROKIT_BOARD={board}", f"BUILD_DIR={build}",
                    f"GUEST_IMAGE={image}", f"DISK_IMAGE={disk}", "system"], check=True)
    from_makefile = canonical((build / "guest-ram.system").read_text())
    from_helper = canonical(system(board, image, str(disk), 0x10_0000))
    assert from_helper[0] == from_makefile[0], "memory regions differ"
    assert from_helper[1] == from_makefile[1], "protection domains differ"
    assert from_helper[2] == from_makefile[2], "channels differ"


def test_a_client_must_run_below_the_vmm():
    sdf = S(S.Arch.AARCH64, 0x1_0000_0000)
    vmm = S.ProtectionDomain("vmm", "vmm.elf", priority=100)
    client = S.ProtectionDomain("client", "client.elf", priority=100)
    ram = GuestRam(sdf, vmm, 100, gpa=0x4000_0000, size=0x100_0000, vmm_vaddr=0x2000_0000)
    with pytest.raises(ValueError, match="below the VMM"):
        ram.add_client(client, 100, "client", buffer_size=0x1000, vmm_vaddr=0x3000_0000,
                       client_vaddr=0x3000_0000, vmm_id=1, client_id=0)
