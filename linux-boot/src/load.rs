// SPDX-License-Identifier: BSD-2-Clause
//! Placing and loading a Linux guest into [`GuestRam`].
//!
//! 1. The kernel goes at the first 2 MiB-aligned base in the guest's
//!    memory range, plus `text_offset`; `image_size` bytes (BSS included)
//!    are marked allocated from the base.
//! 2. The initrd, then the device tree, are placed by
//!    [`GuestRam::allocate_aligned`]: the allocator is what guarantees
//!    that kernel, initrd and device tree never overlap. The device tree is
//!    aligned to a power of two at least its size, so it never crosses a
//!    2 MiB boundary (Linux maps it with 2 MiB blocks).
//! 3. The device tree's `/memory` `reg` and `/chosen` initrd range are
//!    patched to what was registered and placed ([`crate::fdt`]).
//! 4. The three are copied in.
//!
//! Everything that can be checked before guest RAM changes is checked
//! first: the Image header, the device tree's properties, the memory range
//! being RAM.
//!
//! vCPU 0 then starts at [`BootLayout::entry`] with `x0` = the device
//! tree's gpa, `x1..x3` = 0, at EL1h with D, A, I and F masked
//! ([`SPSR_EL1H_MASKED`]), the MMU off (`booting.rst`).

use core::fmt;

use guest_ram::{Access, GpaRange, GuestRam, SharedBuffer, PAGE_SIZE};

use crate::fdt::{self, Fdt, FdtError};
use crate::image::{ImageError, ImageHeader, BASE_ALIGN, HEADER_LEN};

/// `SPSR_EL2` for the kernel's first instruction: EL1h, DAIF masked.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// Where everything went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// The guest's RAM, as the device tree's `/memory` now says.
    pub memory: GpaRange,
    /// The kernel: its load address and `image_size`.
    pub kernel: GpaRange,
    /// The kernel's first instruction (its load address).
    pub entry: u64,
    /// The initrd as `/chosen` says (`len` 0: none).
    pub initrd: GpaRange,
    /// The device tree (`totalsize` bytes): `x0` at entry.
    pub dtb: GpaRange,
    /// What the kernel holds in the allocator: from the 2 MiB base to
    /// `text_offset + image_size`, page-rounded.
    pub kernel_reserved: GpaRange,
}

/// Why a guest was not loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The kernel's header.
    Image(ImageError),
    /// The device tree, and the property concerned.
    Fdt(FdtError, &'static str),
    /// Guest RAM refused a step, named.
    Ram(guest_ram::Error, &'static str),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Image(e) => write!(f, "{e}"),
            LoadError::Fdt(e, what) => write!(f, "{what}: {e}"),
            LoadError::Ram(e, what) => write!(f, "{what}: {e}"),
        }
    }
}

const MEMORY: &str = "/memory";
const CHOSEN: &str = "/chosen";
const INITRD_START: &str = "linux,initrd-start";
const INITRD_END: &str = "linux,initrd-end";

fn round_up(n: u64, align: u64) -> Option<u64> {
    n.checked_next_multiple_of(align)
}

/// Loads a Linux guest into `ram`:
/// - `kernel`: a buffer holding the `Image` in its first `kernel_len`
///   bytes, which may include zero padding (a page-rounded memory region):
///   at most `image_size` bytes are copied, the kernel clears its BSS;
/// - `initrd`: a buffer holding `initrd_len` bytes of initrd (0: none;
///   trailing zeros, as in a page-rounded region, are harmless);
/// - `dtb`: the device tree blob, patched here in place (it may be longer
///   than its `totalsize`);
/// - `memory`: the guest's RAM as the device tree should describe it,
///   registered in `ram` and not yet allocated.
pub fn load<const B: usize, const E: usize, K: Access, I: Access>(
    ram: &mut GuestRam<B, E>,
    memory: GpaRange,
    kernel: &SharedBuffer<K>,
    kernel_len: u64,
    initrd: &SharedBuffer<I>,
    initrd_len: u64,
    dtb: &mut [u8],
) -> Result<BootLayout, LoadError> {
    // Check everything that does not change guest RAM.
    let mut header = [0u8; HEADER_LEN];
    kernel
        .read(0, &mut header)
        .map_err(|_| LoadError::Image(ImageError::TooShort))?;
    let image = ImageHeader::parse(&header, 0).map_err(LoadError::Image)?;
    let kernel_len = kernel_len.min(image.image_size);
    // The lengths must lie inside their buffers, or the copies below would
    // fail after guest RAM was already allocated.
    if kernel_len > kernel.len() as u64 {
        return Err(LoadError::Ram(
            guest_ram::Error::OutsideBuffer,
            "kernel longer than its buffer",
        ));
    }
    if initrd_len > initrd.len() as u64 {
        return Err(LoadError::Ram(
            guest_ram::Error::OutsideBuffer,
            "initrd longer than its buffer",
        ));
    }
    let dtb_len = {
        let tree = Fdt::new(dtb).map_err(|e| LoadError::Fdt(e, "device tree"))?;
        tree.reg(MEMORY).map_err(|e| {
            LoadError::Fdt(e, "device tree /memory reg (2 address and 2 size cells)")
        })?;
        for name in [INITRD_START, INITRD_END] {
            tree.u64_property(CHOSEN, name).map_err(|e| {
                LoadError::Fdt(e, "device tree /chosen linux,initrd-start/-end (64-bit)")
            })?;
        }
        tree.total_size() as u64
    };
    ram.check_ram(memory.gpa, memory.len)
        .map_err(|e| LoadError::Ram(e, "guest memory range"))?;
    let memory_end = memory.gpa.checked_add(memory.len).ok_or(LoadError::Ram(
        guest_ram::Error::Overflow,
        "guest memory range",
    ))?;

    // Place: the kernel first, at the lowest 2 MiB-aligned base.
    let base = round_up(memory.gpa, BASE_ALIGN)
        .ok_or(LoadError::Ram(guest_ram::Error::Overflow, "kernel base"))?;
    let entry = base + image.text_offset;
    let reserved = round_up(image.text_offset + image.image_size, PAGE_SIZE).ok_or(
        LoadError::Ram(guest_ram::Error::Overflow, "kernel image_size"),
    )?;
    if base
        .checked_add(reserved)
        .is_none_or(|end| end > memory_end)
    {
        return Err(LoadError::Ram(
            guest_ram::Error::NoSpace,
            "kernel image_size past guest memory",
        ));
    }
    ram.mark_allocated(base, reserved)
        .map_err(|e| LoadError::Ram(e, "kernel image_size"))?;
    // From here on a failure gives back what was allocated: a load that
    // fails leaves the allocator as it found it.
    let placed = place(ram, initrd_len, dtb_len);
    let (initrd_range, dtb_gpa) = match placed {
        Ok(p) => p,
        Err(e) => {
            let _ = ram.free(base, reserved);
            return Err(e);
        }
    };

    let layout = BootLayout {
        memory,
        kernel: GpaRange {
            gpa: entry,
            len: image.image_size,
        },
        entry,
        initrd: initrd_range,
        dtb: GpaRange {
            gpa: dtb_gpa,
            len: dtb_len,
        },
        kernel_reserved: GpaRange {
            gpa: base,
            len: reserved,
        },
    };
    // Patch the device tree to match, and copy the three in. Checked
    // above, none of this should fail; if it does, the allocations are
    // given back all the same.
    let copied = patch_and_copy(
        ram,
        memory,
        (entry, kernel, kernel_len),
        (initrd_range, initrd),
        (dtb_gpa, dtb, dtb_len),
    );
    if let Err(e) = copied {
        let _ = unload(ram, &layout);
        return Err(e);
    }
    Ok(layout)
}

/// Gives back to the allocator everything [`load`] took for `layout`
/// (the kernel's reservation, the initrd's and the device tree's pages),
/// e.g. before loading the guest again for a reset. Frees all three even
/// if one fails, and returns the first error.
///
/// ```no_run
/// # fn f<const B: usize, const E: usize>(ram: &mut guest_ram::GuestRam<B, E>, layout: linux_boot::load::BootLayout) {
/// linux_boot::load::unload(ram, &layout).unwrap();
/// # }
/// ```
pub fn unload<const B: usize, const E: usize>(
    ram: &mut GuestRam<B, E>,
    layout: &BootLayout,
) -> Result<(), guest_ram::Error> {
    let page_rounded = |r: GpaRange| {
        round_up(r.len, PAGE_SIZE)
            .ok_or(guest_ram::Error::Overflow)
            .map(|len| GpaRange { gpa: r.gpa, len })
    };
    let kernel = Ok(layout.kernel_reserved);
    let initrd = page_rounded(layout.initrd);
    let dtb = page_rounded(layout.dtb);
    let mut first = Ok(());
    for range in [kernel, initrd, dtb] {
        let freed = range.and_then(|r| {
            if r.len == 0 {
                Ok(())
            } else {
                ram.free(r.gpa, r.len)
            }
        });
        if first.is_ok() {
            first = freed;
        }
    }
    first
}

/// Patches `dtb`'s `/memory` and `/chosen` initrd range, then copies the
/// kernel, the initrd and the device tree into guest RAM.
fn patch_and_copy<const B: usize, const E: usize, K: Access, I: Access>(
    ram: &mut GuestRam<B, E>,
    memory: GpaRange,
    (entry, kernel, kernel_len): (u64, &SharedBuffer<K>, u64),
    (initrd_range, initrd): (GpaRange, &SharedBuffer<I>),
    (dtb_gpa, dtb, dtb_len): (u64, &mut [u8], u64),
) -> Result<(), LoadError> {
    let initrd_end = initrd_range.gpa + initrd_range.len;
    fdt::set_reg(dtb, MEMORY, memory.gpa, memory.len).map_err(|e| LoadError::Fdt(e, MEMORY))?;
    fdt::set_u64(dtb, CHOSEN, INITRD_START, initrd_range.gpa)
        .map_err(|e| LoadError::Fdt(e, INITRD_START))?;
    fdt::set_u64(dtb, CHOSEN, INITRD_END, initrd_end).map_err(|e| LoadError::Fdt(e, INITRD_END))?;
    ram.write_from_buffer(entry, kernel_len, kernel, 0)
        .map_err(|e| LoadError::Ram(e, "copying the kernel"))?;
    if initrd_range.len > 0 {
        ram.write_from_buffer(initrd_range.gpa, initrd_range.len, initrd, 0)
            .map_err(|e| LoadError::Ram(e, "copying the initrd"))?;
    }
    let blob = dtb
        .get(..dtb_len as usize)
        .ok_or(LoadError::Fdt(FdtError::Truncated, "device tree"))?;
    ram.write(dtb_gpa, blob)
        .map_err(|e| LoadError::Ram(e, "copying the device tree"))
}

/// Allocates the initrd (if any) and then the device tree; on failure
/// nothing stays allocated.
fn place<const B: usize, const E: usize>(
    ram: &mut GuestRam<B, E>,
    initrd_len: u64,
    dtb_len: u64,
) -> Result<(GpaRange, u64), LoadError> {
    let initrd = if initrd_len == 0 {
        GpaRange { gpa: 0, len: 0 }
    } else {
        let len = round_up(initrd_len, PAGE_SIZE)
            .ok_or(LoadError::Ram(guest_ram::Error::Overflow, "initrd"))?;
        let gpa = ram
            .allocate_aligned(len, PAGE_SIZE)
            .map_err(|e| LoadError::Ram(e, "initrd"))?;
        GpaRange {
            gpa,
            len: initrd_len,
        }
    };
    let dtb_align = dtb_len.next_power_of_two().max(PAGE_SIZE);
    let dtb = round_up(dtb_len, PAGE_SIZE)
        .ok_or(LoadError::Ram(guest_ram::Error::Overflow, "device tree"))
        .and_then(|len| {
            ram.allocate_aligned(len, dtb_align)
                .map_err(|e| LoadError::Ram(e, "device tree"))
        });
    match dtb {
        Ok(gpa) => Ok((initrd, gpa)),
        Err(e) => {
            if initrd.len > 0 {
                if let Some(len) = round_up(initrd.len, PAGE_SIZE) {
                    let _ = ram.free(initrd.gpa, len);
                }
            }
            Err(e)
        }
    }
}

/// Whether the device tree in `blob` says what `layout` says: `/memory`'s
/// `reg` and `/chosen`'s initrd range. The loader patched them; this
/// checks the result (tests, and the VMM once more before it starts the
/// guest).
pub fn agrees(blob: &[u8], layout: &BootLayout) -> Result<bool, FdtError> {
    let tree = Fdt::new(blob)?;
    let memory = tree.reg(MEMORY)?;
    let start = tree.u64_property(CHOSEN, INITRD_START)?;
    let end = tree.u64_property(CHOSEN, INITRD_END)?;
    Ok(memory == (layout.memory.gpa, layout.memory.len)
        && start == layout.initrd.gpa
        && end == layout.initrd.gpa + layout.initrd.len)
}
