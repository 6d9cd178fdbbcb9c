// SPDX-License-Identifier: BSD-2-Clause
//! The loader fuzz harness, shared by `cargo fuzz run boot` and the corpus
//! replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: the first 64 bytes are an Image header (`image_size` folded
//! into a 4 MiB guest), the rest a device tree blob. Checks: parsing never
//! panics; a property found lies inside the blob; a patch changes exactly
//! the property's bytes; a successful load places kernel, initrd and
//! device tree inside RAM without overlap, and the device tree in guest
//! RAM agrees with the layout; a failed load leaves nothing allocated.
//! The same bytes, read as a boot bundle, either split into two disjoint
//! parts inside it or are refused.
#![allow(
    unsafe_code,
    reason = "a Vec stands in for the mappings system.xml makes: kept alive for the whole run"
)]

use std::ptr::NonNull;

use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};
use linux_boot::fdt::{self, Fdt};
use linux_boot::image::ImageHeader;
use linux_boot::load::{agrees, load, unload};
use linux_boot::Bundle;

const GPA: u64 = 0x4000_0000;
const RAM: u64 = 4 << 20;

fn buffer(bytes: &mut [u8]) -> SharedBuffer {
    // SAFETY: the bytes outlive every use of the buffer in `run`.
    unsafe { SharedBuffer::new(NonNull::new(bytes.as_mut_ptr()).unwrap(), bytes.len()) }
}

/// Returns whether the load succeeded.
pub fn run(data: &[u8]) -> bool {
    let (header, blob) = data.split_at(data.len().min(64));
    if let Ok(h) = ImageHeader::parse(header, 0) {
        assert!(h.image_size > 0 && h.text_offset < 2 << 20);
    }
    // The whole input as a boot bundle (region = the input).
    let mut whole_input = data.to_vec();
    if let Ok((kernel, initrd)) = Bundle::split(&buffer(&mut whole_input)) {
        let base = whole_input.as_ptr() as usize;
        let span = |b: &SharedBuffer| {
            let start = b.vaddr().as_ptr() as usize - base;
            (start, start + b.len())
        };
        let (k, i) = (span(&kernel), span(&initrd));
        assert!(k.0 >= 64 && k.1 <= data.len() && k.1 > k.0);
        if !initrd.is_empty() {
            assert!(i.0 >= 64 && i.1 <= data.len());
            assert!(k.1 <= i.0 || i.1 <= k.0);
        }
    }
    let mut blob = blob.to_vec();
    if let Ok(tree) = Fdt::new(&blob) {
        let total = tree.total_size();
        assert!(total <= blob.len());
        for (path, name) in [
            ("/memory", "reg"),
            ("/chosen", "linux,initrd-start"),
            ("/chosen", "linux,initrd-end"),
            ("/", "#address-cells"),
        ] {
            if let Ok(p) = tree.property(path, name) {
                assert!(p.offset + p.len <= total);
            }
        }
        let before = blob.clone();
        if fdt::set_u64(
            &mut blob,
            "/chosen",
            "linux,initrd-start",
            0x0123_4567_89ab_cdef,
        )
        .is_ok()
        {
            let p = Fdt::new(&blob)
                .unwrap()
                .property("/chosen", "linux,initrd-start")
                .unwrap();
            for (i, (a, b)) in before.iter().zip(&blob).enumerate() {
                if i < p.offset || i >= p.offset + 8 {
                    assert_eq!(a, b, "byte {i} outside the property changed");
                }
            }
            assert_eq!(Fdt::new(&blob).unwrap().total_size(), total);
        }
        blob = before;
    }

    // The whole load, the header's image_size folded into the guest.
    let mut kernel = vec![0u8; 4096];
    kernel[..header.len()].copy_from_slice(header);
    if header.len() >= 24 {
        let size = u64::from_le_bytes(header[16..24].try_into().unwrap()) % (RAM + (1 << 20));
        kernel[16..24].copy_from_slice(&size.to_le_bytes());
    }
    let mut initrd = vec![0x5au8; 0x3000];
    let initrd_len = u64::from(data.first().copied().unwrap_or(0)) * 0x31;
    let mut memory = vec![0u8; RAM as usize];
    // SAFETY: `memory` outlives `ram` (both dropped at the end of `run`).
    let region = unsafe { MappedRegion::new(GPA, NonNull::new(memory.as_mut_ptr()).unwrap(), RAM) };
    let mut ram = GuestRam::<1, 16>::new(&[region]).unwrap();
    ram.register_at(GPA, RAM).unwrap();
    let whole = GpaRange { gpa: GPA, len: RAM };
    let result = load(
        &mut ram,
        whole,
        &buffer(&mut kernel),
        4096,
        &buffer(&mut initrd),
        initrd_len,
        &mut blob,
    );
    let loaded = result.is_ok();
    match result {
        Ok(layout) => {
            let ranges = [layout.kernel, layout.initrd, layout.dtb];
            for (i, a) in ranges.iter().enumerate() {
                if a.len == 0 {
                    continue;
                }
                assert!(a.gpa >= GPA && a.gpa + a.len <= GPA + RAM, "{a:?}");
                for b in ranges[i + 1..].iter().filter(|b| b.len > 0) {
                    assert!(a.gpa + a.len <= b.gpa || b.gpa + b.len <= a.gpa);
                }
            }
            let mut in_guest = vec![0u8; layout.dtb.len as usize];
            ram.read(layout.dtb.gpa, &mut in_guest).unwrap();
            assert!(agrees(&in_guest, &layout).unwrap());
            // A reset gives everything back.
            unload(&mut ram, &layout).unwrap();
            assert_eq!(ram.find_largest_free_region().unwrap(), whole);
        }
        Err(e) => assert_eq!(ram.find_largest_free_region().unwrap(), whole, "{e:?}"),
    }
    drop(ram);
    drop(memory);
    loaded
}
