# SPDX-License-Identifier: BSD-2-Clause
"""The generated N-VM Linux system (guest_ram_sdf.linux), for N = 1..4 on
one core and on four: every channel end, map and interrupt refers to
something that exists, ids are unique per PD, every PPC callee runs above
its callers, no two maps of a PD overlap, and no PD sees another VM's
memory: a VM's regions are mapped only by that VM, its VMM and its blk
PD, the serial PD (console regions only) and the net PD (network regions
only); guest RAM only by the VM and its VMM."""

import re
from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

from guest_ram_sdf import linux

SIZES = {"bundle": 49 << 20, "dtb": 4 << 10, "disk": 32 << 20, "acl": 4}


def generate(tmp_path, vms, cpus=1, bundle_paddr=None, blk_kind="ram", guest_ram_paddr=None):
    paths = {}
    for name, size in SIZES.items():
        p = tmp_path / name
        with open(p, "wb") as f:
            f.truncate(size)
        paths[name] = str(p)
    xml = linux.system(vms, paths["bundle"], [paths["dtb"]], [paths["disk"]],
                       SIZES["disk"], cpus=cpus, net_acl=paths["acl"], bundle_paddr=bundle_paddr,
                       blk_kind=blk_kind, guest_ram_paddr=guest_ram_paddr)
    return ET.fromstring(xml), paths


def region_sizes(root, paths):
    by_path = {p: SIZES[name] for name, p in paths.items()}
    sizes = {}
    for mr in root.findall("memory_region"):
        size = int(mr.get("size"), 0) if mr.get("size") else by_path[mr.get("prefill_path")]
        page = int(mr.get("page_size", "0x1000"), 0)
        sizes[mr.get("name")] = (size + page - 1) // page * page
    return sizes


def domains(root):
    """Every PD and virtual machine, by name, with its priority."""
    out = {}
    for pd in root.iter("protection_domain"):
        out[pd.get("name")] = (pd, int(pd.get("priority")))
        vm = pd.find("virtual_machine")
        if vm is not None:
            out[vm.get("name")] = (vm, int(vm.get("priority")))
    return out


CASES = [(n, 1) for n in range(1, 5)] + [(n, 4) for n in range(1, 5)]


@pytest.mark.parametrize("blk_kind", ["ram", "device"])
@pytest.mark.parametrize("vms,cpus", CASES)
def test_references_and_ids(tmp_path, vms, cpus, blk_kind):
    root, paths = generate(tmp_path, vms, cpus, blk_kind=blk_kind)
    sizes = region_sizes(root, paths)
    pds = domains(root)
    ids = {name: set() for name in pds}
    for pd in root.iter("protection_domain"):
        for irq in pd.findall("irq"):
            i = int(irq.get("id"))
            assert i not in ids[pd.get("name")], f"{pd.get('name')}: id {i} twice"
            ids[pd.get("name")].add(i)
    for ch in root.findall("channel"):
        a, b = ch.findall("end")
        for end in (a, b):
            name, i = end.get("pd"), int(end.get("id"))
            assert name in pds, f"channel end in unknown PD {name}"
            assert 0 <= i < 63
            assert i not in ids[name], f"{name}: id {i} twice"
            ids[name].add(i)
        for caller, callee in ((a, b), (b, a)):
            if caller.get("pp") == "true":
                assert pds[callee.get("pd")][1] > pds[caller.get("pd")][1], \
                    f"{caller.get('pd')} calls {callee.get('pd')}, which does not run above it"
    for name, (node, _) in pds.items():
        spans = []
        for m in node.findall("map"):
            assert m.get("mr") in sizes, f"{name} maps unknown region {m.get('mr')}"
            start = int(m.get("vaddr"), 0)
            spans.append((start, start + sizes[m.get("mr")], m.get("mr")))
        spans.sort()
        for (s0, e0, m0), (s1, _, m1) in zip(spans, spans[1:]):
            assert e0 <= s1, f"{name}: {m0} and {m1} overlap"


@pytest.mark.parametrize("blk_kind", ["ram", "device"])
@pytest.mark.parametrize("vms,cpus", CASES)
def test_no_pd_sees_another_vms_memory(tmp_path, vms, cpus, blk_kind):
    root, _ = generate(tmp_path, vms, cpus, blk_kind=blk_kind)
    for name, (node, _) in domains(root).items():
        for m in node.findall("map"):
            mr = m.get("mr")
            pair = re.fullmatch(r"net_pair_(\d)_(\d)", mr)
            if pair is not None:
                # Frames between VMs a and b wait there: the net PD and
                # those two VMMs alone map it.
                a, b = pair.groups()
                assert name in (f"vmm{a}", f"vmm{b}", "net"), f"{name} maps {mr}"
                continue
            owner = re.search(r"_vm(\d)$", mr)
            if owner is None:
                # Shared: the images (read-only), the GIC's CPU interface
                # (VMs), the UART (serial).
                allowed = {"linux_images": "vmm", "gicv": "guest", "uart": "serial",
                           "net_acl": "net"}
                assert name.rstrip("0123456789") == allowed[mr], f"{name} maps {mr}"
                if mr.startswith("linux_") or mr == "net_acl":
                    assert m.get("perms") == "r"
                continue
            n = owner.group(1)
            if mr.startswith("guest_ram"):
                assert name in (f"vmm{n}", f"guest{n}"), f"{name} maps {mr}"
            elif re.fullmatch(r"virtio_\w+_regs_vm\d", mr):
                # A device's register page: its VMM writes it, its guest
                # only reads it.
                assert name in (f"vmm{n}", f"guest{n}"), f"{name} maps {mr}"
                assert name != f"guest{n}" or m.get("perms") == "r", f"{name} may write {mr}"
            elif mr.startswith("console_"):
                assert name in (f"vmm{n}", "serial"), f"{name} maps {mr}"
            elif mr.startswith("net_"):
                assert name in (f"vmm{n}", "net"), f"{name} maps {mr}"
            elif mr.startswith(("virtio_blk_mmio", "blk_dma")):
                # The device and its DMA memory: the driver PD's alone.
                assert name == f"blk_driver{n}", f"{name} maps {mr}"
            elif mr.startswith(("blk_queue", "blk_info")):
                assert name in (f"blk{n}", f"blk_driver{n}"), f"{name} maps {mr}"
            elif mr.startswith("blk_disk"):
                # The disk (RAM disk, or the device's data region).
                assert name in (f"vmm{n}", f"blk{n}", f"blk_driver{n}"), f"{name} maps {mr}"
            else:
                assert name in (f"vmm{n}", f"blk{n}"), f"{name} maps {mr}"


@pytest.mark.parametrize("blk_kind", ["ram", "device"])
@pytest.mark.parametrize("vms,cpus", CASES)
def test_each_vm_is_complete(tmp_path, vms, cpus, blk_kind):
    root, _ = generate(tmp_path, vms, cpus, blk_kind=blk_kind)
    pds = domains(root)
    channels = [{(e.get("pd"), int(e.get("id")), e.get("setvar_id")) for e in ch.findall("end")}
                for ch in root.findall("channel")]
    for n in range(vms):
        vmm, _ = pds[f"vmm{n}"]
        # Passive on one core; on SMP the serial PD calls across cores.
        assert (vmm.get("passive") == "true") == (cpus == 1)
        vars_ = {m.get("setvar_vaddr") for m in vmm.findall("map")}
        assert {"guest_ram_vaddr", "blk_buffer_vaddr", "blk_staging_vaddr", "blk_device_vaddr",
                "console_buffer_vaddr", "console_device_vaddr", "linux_images_vaddr",
                "linux_dtb_vaddr"} <= vars_
        vm = vmm.find("virtual_machine")
        assert vm.get("name") == f"guest{n}" and int(vm.get("priority")) == linux.GUEST_PRIORITY
        # The serial PD's conventions: VM n's console on channel n, its
        # power signal on 4 + n; the timer's client n on channel n.
        assert {("vmm%d" % n, linux.VMM_CONSOLE_ID, "console_channel"),
                ("serial", n, f"vm{n}_channel")} in channels
        assert {("vmm%d" % n, linux.VMM_POWER_ID, "power_channel"),
                ("serial", 4 + n, f"vm{n}_power_channel")} in channels
        assert {("vmm%d" % n, linux.VMM_TIMER_ID, "timer_channel"), ("timer", n, None)} in channels
        if cpus == 1:
            assert vmm.get("cpu") is None
        else:
            assert int(vmm.get("cpu")) == n and int(vm.find("vcpu").get("cpu")) == n
        # The net PD's conventions: VM n's port on channel n (a copy
        # client of VMM n), its power signal on 4 + n; a buffer of at
        # least 128 KiB (a burst is 97,664 bytes) and the device page.
        assert {("vmm%d" % n, linux.VMM_NET_ID, "net_channel"), ("net", n, f"vm{n}_channel")} in channels
        assert {("vmm%d" % n, linux.VMM_NET_POWER_ID, "net_power_channel"),
                ("net", 4 + n, f"vm{n}_power_channel")} in channels
        assert {"net_buffer_vaddr", "net_device_vaddr"} <= vars_
        sizes = {mr.get("name"): int(mr.get("size", "0"), 0) for mr in root.findall("memory_region")}
        assert sizes[f"net_buffer_vm{n}"] >= 128 << 10
    serial, _ = pds["serial"]
    assert serial.get("smc") == "true"
    net, net_priority = pds["net"]
    # Below every VMM it calls, at the guests' priority (a kicking guest
    # goes on, so the net PD takes bursts); on SMP on core 0.
    assert net_priority == (linux.GUEST_PRIORITY if cpus == 1 else linux.NET_PRIORITY_SMP)
    assert net_priority < linux.VMM_PRIORITY
    if cpus > 1:
        assert int(net.get("cpu")) == 0
    assert {m.get("setvar_vaddr") for m in net.findall("map")} >= {"acl_vaddr"}
    assert any(m.get("mr") == "net_acl" and m.get("setvar_prefill_size") == "acl_len" for m in net.findall("map"))
    # One timer PD on core 0 serves every VMM: passive on one core, with
    # a scheduling context of its own on SMP (called across cores).
    timer, _ = pds["timer"]
    assert (timer.get("passive") == "true") == (cpus == 1)
    assert timer.get("cpu") in (None, "0")
    # Equal guest priorities: round robin between the VMs.
    assert {pds[f"guest{n}"][1] for n in range(vms)} == {linux.GUEST_PRIORITY}


def test_bad_counts_are_refused(tmp_path):
    with pytest.raises(ValueError):
        linux.system(5, "k", "i", ["d"], ["disk"], 0x100000)
    with pytest.raises(ValueError):
        linux.system(0, "k", "i", ["d"], ["disk"], 0x100000)
    with pytest.raises(ValueError):
        linux.system(3, "k", "i", ["d0", "d1"], ["disk"], 0x100000)


@pytest.mark.parametrize("blk_kind", ["ram", "device"])
@pytest.mark.parametrize("vms,cpus", CASES)
def test_net_windows_are_laid_out_as_the_pds_expect(tmp_path, vms, cpus, blk_kind):
    """Each VM's window for the net PD, in its VMM and in the net PD: the
    staging region, then the pair region with each other VM in increasing
    order, back to back (net_switch::Pairs's rule); the last one carries
    the setvars the PDs check the window's length with."""
    root, paths = generate(tmp_path, vms, cpus, blk_kind=blk_kind)
    sizes = region_sizes(root, paths)
    pds = domains(root)
    for n in range(vms):
        peers = [m for m in range(vms) if m != n]
        expected = [f"net_buffer_vm{n}"] + [f"net_pair_{min(n, m)}_{max(n, m)}" for m in peers]
        for pd, base, last_var, size_var in (
                (f"vmm{n}", linux.VMM_NET_BUFFER, "net_last_pair_vaddr", "net_pair_size"),
                ("net", linux.NET_BUFFERS + n * linux.NET_STRIDE, f"vm{n}_last_pair_vaddr", None)):
            node, _ = pds[pd]
            maps = {m.get("mr"): m for m in node.findall("map")
                    if m.get("mr") in expected and base <= int(m.get("vaddr"), 0) < base + linux.NET_STRIDE}
            at = base
            for mr in expected:
                assert int(maps[mr].get("vaddr"), 0) == at, f"{pd}: {mr} not at {at:#x}"
                at += sizes[mr]
            if peers:
                last = maps[expected[-1]]
                assert last.get("setvar_vaddr") == last_var
                if size_var:
                    assert last.get("setvar_size") == size_var
    net, _ = pds["net"]
    assert sum(m.get("setvar_size") == "pair_size" for m in net.findall("map")) == (1 if vms > 1 else 0)
    assert sizes.get("net_buffer_vm0") == linux.NET_BUFFER_SIZE
    for a in range(vms):
        for b in range(a + 1, vms):
            assert sizes[f"net_pair_{a}_{b}"] == linux.NET_PAIR_SIZE
    # A port's window (staging and three pairs) fits its stride in the net
    # PD, and in a VMM below the next mapping (the disk).
    window = linux.NET_BUFFER_SIZE + 3 * linux.NET_PAIR_SIZE
    assert window <= linux.NET_STRIDE
    assert linux.VMM_NET_BUFFER + window <= linux.VMM_DISK


@pytest.mark.parametrize("vms", [1, 3])
def test_bundle_where_the_boot_loader_put_it(tmp_path, vms):
    """With a physical address, the bundle's region is there, whole 2 MiB
    pages covering the file, filled by nothing at boot; every VMM maps it
    read-only."""
    root, _ = generate(tmp_path, vms, bundle_paddr=0xC000_0000)
    mr = next(m for m in root.findall("memory_region") if m.get("name") == "linux_images")
    assert int(mr.get("phys_addr"), 0) == 0xC000_0000
    assert int(mr.get("size"), 0) == SIZES["bundle"] + (1 << 20)
    assert mr.get("prefill_path") is None
    maps = [m for m in root.iter("map") if m.get("mr") == "linux_images"]
    assert len(maps) == vms and all(m.get("perms") == "r" for m in maps)


@pytest.mark.parametrize("vms", [1, 4])
def test_guest_ram_at_a_physical_address(tmp_path, vms):
    """With a physical address, VM n's guest RAM is the memory right after
    VM n-1's, in 2 MiB pages; without one, Microkit allocates it (and seL4
    zeroes it)."""
    base = 0xC400_0000
    root, _ = generate(tmp_path, vms, bundle_paddr=0xC000_0000, guest_ram_paddr=base)
    ram = {m.get("name"): m for m in root.findall("memory_region") if m.get("name").startswith("guest_ram")}
    assert len(ram) == vms
    for n in range(vms):
        mr = ram[f"guest_ram_vm{n}"]
        assert int(mr.get("phys_addr"), 0) == base + n * linux.GUEST_RAM_SIZE
        assert int(mr.get("size"), 0) == linux.GUEST_RAM_SIZE
        assert int(mr.get("page_size"), 0) == linux.PAGE_2M
    root, _ = generate(tmp_path, vms)
    assert all(m.get("phys_addr") is None for m in root.findall("memory_region")
               if m.get("name").startswith("guest_ram"))
    with pytest.raises(ValueError):
        generate(tmp_path, vms, guest_ram_paddr=base + 0x1000)


@pytest.mark.parametrize("blk_kind", ["ram", "device"])
@pytest.mark.parametrize("vms,cpus", CASES)
def test_register_pages_at_the_device_windows(tmp_path, vms, cpus, blk_kind):
    """Every VM reads each of its virtio devices' register pages at the
    window its device tree and pds/common give (read-only), and its VMM
    has each under the setvar names it looks for."""
    root, _ = generate(tmp_path, vms, cpus, blk_kind=blk_kind)
    repo = Path(__file__).resolve().parents[2]
    common = (repo / "pds/common/src/lib.rs").read_text()
    dts = (repo / "guests/linux/linux.dts").read_text()
    for kind, window in linux.VIRTIO_WINDOWS.items():
        name = f"VIRTIO_{kind.upper()}_GPA"
        found = re.search(rf"pub const {name}: u64 = (0x[0-9a-f_]+);", common)
        assert found and int(found.group(1).replace("_", ""), 16) == window, name
        assert f"reg = <0x0 {window:#010x} 0x0 0x200>;" in dts, f"{kind} not at {window:#x} in the DTS"
    pds = domains(root)
    for n in range(vms):
        vmm, _ = pds[f"vmm{n}"]
        guest = vmm.find("virtual_machine")
        for kind, window in linux.VIRTIO_WINDOWS.items():
            mr = f"virtio_{kind}_regs_vm{n}"
            in_guest = [m for m in guest.findall("map") if m.get("mr") == mr]
            assert [(int(m.get("vaddr"), 0), m.get("perms")) for m in in_guest] == [(window, "r")]
            in_vmm = [m for m in vmm.findall("map") if m.get("mr") == mr]
            assert [m.get("setvar_vaddr") for m in in_vmm] == [f"virtio_{kind}_regs_vaddr"]
