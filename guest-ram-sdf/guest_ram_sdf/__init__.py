# SPDX-License-Identifier: BSD-2-Clause
"""guest-ram for sdfgen users.

Adds to an ``sdfgen.SystemDescription`` what guest-ram needs: the guest RAM
memory region mapped into the VMM with ``setvar_vaddr``/``setvar_size``
(and into a virtual machine at its guest-physical address), and, per
copy-service client, a shared buffer mapped into both PDs and a channel on
which the client may call the VMM, with ``setvar_id`` on both ends so that
neither PD repeats an id or a size. Priorities are checked: a PPC server
must run above every PD that calls it.

    from sdfgen import SystemDescription as S
    from guest_ram_sdf import GuestRam

    sdf = S(S.Arch.AARCH64, 0x1_0000_0000)
    vmm = S.ProtectionDomain("vmm", "vmm.elf", priority=200)
    blk = S.ProtectionDomain("blk", "blk.elf", priority=160)
    ram = GuestRam(sdf, vmm, 200, gpa=0x4000_0000, size=0x100_0000, vmm_vaddr=0x2000_0000)
    ram.add_client(blk, 160, "blk", buffer_size=0x10000,
                   vmm_vaddr=0x3001_0000, client_vaddr=0x3000_0000, vmm_id=3, client_id=0)
    sdf.add_pd(vmm); sdf.add_pd(blk)
    xml = ram.render()

sdfgen (0.35) has no ``page_size`` or ``prefill_path`` on memory regions;
``GuestRam.render`` adds the ones given here to the rendered XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple

from sdfgen import SystemDescription as S

__all__ = ["GuestRam", "region", "map_extra", "pd_extra", "render"]


class GuestRam:
    """Guest RAM of one VMM and the clients of its copy service."""

    def __init__(self, sdf: S, vmm: S.ProtectionDomain, vmm_priority: int, *, gpa: int, size: int,
                 vmm_vaddr: int, page_size: Optional[int] = None, name: str = "guest_ram",
                 symbol: Optional[str] = None, phys_addr: Optional[int] = None):
        """``name`` is the memory region's; ``symbol`` (default: ``name``)
        the VMM's ``<symbol>_vaddr``/``<symbol>_size`` variables, so that
        several VMMs built from one binary can each map a region of their
        own under the same symbols. With ``phys_addr`` the RAM is that
        physical memory: outside seL4's RAM it is device untyped, which
        seL4 neither zeroes nor cleans when the system starts (see
        ``linux.system``'s ``guest_ram_paddr``)."""
        self.sdf = sdf
        self.vmm = vmm
        self.vmm_priority = vmm_priority
        self.gpa = gpa
        self.size = size
        self.mr = region(self, name, size, page_size=page_size, phys_addr=phys_addr)
        symbol = symbol or name
        vmm.add_map(S.Map(self.mr, vmm_vaddr, "rw", setvar_vaddr=f"{symbol}_vaddr", setvar_size=f"{symbol}_size"))
        self.clients: Dict[str, int] = {}

    def map_into_vm(self, vm: S.VirtualMachine, perms: str = "rwx") -> None:
        """Maps guest RAM into the virtual machine at its gpa."""
        vm.add_map(S.Map(self.mr, self.gpa, perms))

    def map_read_only(self, pd: S.ProtectionDomain, priority: int, setvar_vaddr: str = "guest_ram_vaddr",
                      setvar_size: str = "guest_ram_size") -> None:
        """Maps guest RAM read-only at its gpa into a PD that inspects the
        guest directly (guest_ram::MappedRegion::new_read_only)."""
        del priority
        pd.add_map(S.Map(self.mr, self.gpa, "r", setvar_vaddr=setvar_vaddr, setvar_size=setvar_size))

    def add_client(self, pd: S.ProtectionDomain, priority: int, name: str, *, buffer_size: int = 0,
                   vmm_vaddr: int, client_vaddr: int, vmm_id: int, client_id: int,
                   buffer_symbol: str = "buffer", vmm_channel_symbol: str = "vmm_channel",
                   buffer: Optional[S.MemoryRegion] = None,
                   region_name: Optional[str] = None) -> S.MemoryRegion:
        """A copy-service client: its shared buffer (``<name>_buffer``,
        mapped as ``<name>_buffer_vaddr``/``_size`` in the VMM and
        ``buffer_vaddr``/``buffer_size`` in the client) and its channel
        (``<name>_channel`` in the VMM, ``vmm_channel`` in the client;
        ``pp`` on the client's end). With ``buffer``, an existing region (a
        device's data region) is the shared buffer instead: the VMM then
        copies between guest RAM and that region directly (one copy), and
        can touch all of it. Raises ``ValueError`` if the client does not
        run below the VMM. ``region_name`` names the buffer's region when
        ``<name>_buffer`` would not be unique in the system (one client of
        several VMMs)."""
        if priority >= self.vmm_priority:
            raise ValueError(f"client {name} (priority {priority}) must run below the VMM "
                             f"({self.vmm_priority}) to call it")
        if name in self.clients:
            raise ValueError(f"client {name} added twice")
        self.clients[name] = priority
        mr = buffer if buffer is not None else region(self, region_name or f"{name}_buffer", buffer_size)
        self.vmm.add_map(S.Map(mr, vmm_vaddr, "rw", setvar_vaddr=f"{name}_buffer_vaddr",
                               setvar_size=f"{name}_buffer_size"))
        pd.add_map(S.Map(mr, client_vaddr, "rw", setvar_vaddr=f"{buffer_symbol}_vaddr",
                         setvar_size=f"{buffer_symbol}_size"))
        self.sdf.add_channel(S.Channel(self.vmm, pd, a_id=vmm_id, b_id=client_id, pp_b=True,
                                       pd_a_setvar_id=f"{name}_channel", pd_b_setvar_id=vmm_channel_symbol))
        return mr

    def render(self) -> str:
        """The system's XML, with the memory-region attributes sdfgen
        cannot express (``page_size``, ``prefill_path``) added."""
        return render(self.sdf)


# What sdfgen cannot express, noted on the SystemDescription object itself
# (so that nothing outlives it: an id-keyed table would hand a collected
# system's notes to a new one that got its id): memory-region attributes
# by region, attributes of maps by (PD, region) and of PDs by PD, and
# `<setvar region_paddr>` as (PD, symbol, region) in order.
class _Notes:
    def __init__(self) -> None:
        self.regions: Dict[str, Dict[str, str]] = {}
        self.maps: Dict[Tuple[str, str], Dict[str, str]] = {}
        self.pds: Dict[str, Dict[str, str]] = {}
        self.paddr_setvars: List[Tuple[str, str, str]] = []


def _notes(sdf: S) -> _Notes:
    notes = getattr(sdf, "_guest_ram_notes", None)
    if notes is None:
        notes = _Notes()
        sdf._guest_ram_notes = notes
    return notes


def map_extra(sdf: S, pd: str, mr: str, **attrs: str) -> None:
    """Notes attributes of ``pd``'s map of ``mr`` for ``render`` (sdfgen
    0.35 has no ``setvar_prefill_size``)."""
    _notes(sdf).maps.setdefault((pd, mr), {}).update(attrs)


def pd_extra(sdf: S, pd: str, **attrs: str) -> None:
    """Notes attributes of a PD for ``render`` (sdfgen 0.35 has no
    ``smc``)."""
    _notes(sdf).pds.setdefault(pd, {}).update(attrs)


def setvar_region_paddr(sdf: S, pd: str, symbol: str, mr: str) -> None:
    """Hands ``mr``'s physical address to ``pd`` in ``symbol`` (a
    ``<setvar region_paddr>``, for a driver's DMA), for ``render``."""
    _notes(sdf).paddr_setvars.append((pd, symbol, mr))


def region(owner, name: str, size: Optional[int], *, page_size: Optional[int] = None,
           prefill_path: Optional[str] = None, phys_addr: Optional[int] = None) -> S.MemoryRegion:
    """Adds a memory region to ``owner.sdf`` (or to ``owner`` itself, a
    ``SystemDescription``), noting ``page_size`` and ``prefill_path`` for
    ``render``."""
    sdf = getattr(owner, "sdf", owner)
    mr = S.MemoryRegion(sdf, name, size or 0x1000, paddr=phys_addr) if phys_addr is not None \
        else S.MemoryRegion(sdf, name, size or 0x1000)
    sdf.add_mr(mr)
    extra = _notes(sdf).regions.setdefault(name, {})
    if page_size is not None:
        extra["page_size"] = hex(page_size)
    if prefill_path is not None:
        extra["prefill_path"] = prefill_path
        if size is None:
            extra["omit_size"] = "1"
    return mr


def render(sdf: S) -> str:
    """Renders ``sdf`` and adds the attributes ``region`` noted."""
    root = ET.fromstring(sdf.render())
    notes = _notes(sdf)
    extras = notes.regions
    for mr in root.iter("memory_region"):
        extra = extras.get(mr.get("name"), {})
        for key in ("page_size", "prefill_path"):
            if key in extra:
                mr.set(key, extra[key])
        if extra.get("omit_size"):
            del mr.attrib["size"]
    map_extras = notes.maps
    pd_extras = notes.pds
    for pd in root.iter("protection_domain"):
        pd.attrib.update(pd_extras.get(pd.get("name"), {}))
        for m in pd.findall("map"):
            m.attrib.update(map_extras.get((pd.get("name"), m.get("mr")), {}))
        for owner, symbol, mr in notes.paddr_setvars:
            if owner == pd.get("name"):
                ET.SubElement(pd, "setvar", {"symbol": symbol, "region_paddr": mr})
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
