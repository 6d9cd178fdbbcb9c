// SPDX-License-Identifier: BSD-2-Clause
//! The loader against real memory: a fake kernel, initrd and the repo's
//! own device tree (`guests/linux/linux.dts`, compiled with `dtc`), loaded
//! into a `GuestRam`; then every byte placed and every DT property checked
//! against the layout, and the layout against the allocator.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the mappings system.xml makes: kept alive for the whole test"
)]

use std::path::Path;
use std::process::Command;
use std::ptr::NonNull;

use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};
use linux_boot::fdt::{self, Fdt};
use linux_boot::image::{ImageError, MAGIC};
use linux_boot::load::{agrees, load, unload, BootLayout, LoadError};
use linux_boot::{Bundle, BundleError};

const GPA: u64 = 0x4000_0000;
const RAM: u64 = 128 << 20;

/// The repo's DTS compiled as the Makefile compiles it.
fn repo_dtb() -> Vec<u8> {
    let dts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/linux/linux.dts");
    let source = std::fs::read_to_string(&dts)
        .unwrap()
        .replace("@BOOTARGS@", "console=ttyAMA0")
        .replace("@RNG_SEED@", "01 02 03 04");
    let mut child = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o", "-", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dtc (Debian: device-tree-compiler) is needed to test the repo's device tree");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(source.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dtc failed on {}", dts.display());
    out.stdout
}

fn kernel_image(image_size: u64, file_len: usize) -> Vec<u8> {
    let mut k: Vec<u8> = (0..file_len).map(|i| (i * 7 + 3) as u8).collect();
    k[0x08..0x10].copy_from_slice(&0u64.to_le_bytes());
    k[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
    k[0x18..0x20].copy_from_slice(&0xau64.to_le_bytes());
    k[0x38..0x3c].copy_from_slice(&MAGIC.to_le_bytes());
    k
}

struct Guest {
    memory: Vec<u8>,
    ram: GuestRam<1, 16>,
}

impl Guest {
    fn new() -> Self {
        let mut memory = vec![0u8; RAM as usize];
        let ptr = NonNull::new(memory.as_mut_ptr()).unwrap();
        // SAFETY: `memory` lives as long as `ram` (both in `Guest`) and is
        // only read through `ram` afterwards.
        let region = unsafe { MappedRegion::new(GPA, ptr, RAM) };
        let mut ram = GuestRam::new(&[region]).unwrap();
        ram.register_at(GPA, RAM).unwrap();
        Guest { memory, ram }
    }
    /// `load` into this guest's RAM: the kernel's and initrd's files
    /// with the lengths to copy, and the device tree's region.
    fn load(
        &mut self,
        memory: GpaRange,
        (kernel, kernel_len): (&mut [u8], u64),
        (initrd, initrd_len): (&mut [u8], u64),
        dtb: &mut [u8],
    ) -> Result<BootLayout, LoadError> {
        load(
            &mut self.ram,
            memory,
            &buffer(kernel),
            kernel_len,
            &buffer(initrd),
            initrd_len,
            dtb,
        )
    }
    fn bytes(&self, range: GpaRange) -> Vec<u8> {
        let mut out = vec![0u8; range.len as usize];
        self.ram.read(range.gpa, &mut out).unwrap();
        out
    }
}

fn buffer(bytes: &mut [u8]) -> SharedBuffer {
    // SAFETY: every buffer outlives its use in the test that made it.
    unsafe { SharedBuffer::new(NonNull::new(bytes.as_mut_ptr()).unwrap(), bytes.len()) }
}

#[test]
fn loads_and_the_device_tree_agrees() {
    let mut g = Guest::new();
    let image_size = 0x201_0000;
    let mut kernel = kernel_image(image_size, 3 << 20);
    let kernel_len = kernel.len() as u64;
    // A page-rounded region: the initrd's file is shorter.
    let mut initrd: Vec<u8> = (0..0x18_0000).map(|i| (i % 251) as u8).collect();
    let initrd_len = 0x17_7339;
    let mut dtb = repo_dtb();
    dtb.resize(0x2000, 0); // page-rounded region
    let memory = GpaRange { gpa: GPA, len: RAM };
    let layout = g
        .load(
            memory,
            (&mut kernel, kernel_len),
            (&mut initrd, initrd_len),
            &mut dtb,
        )
        .unwrap();

    assert_eq!(layout.entry, GPA);
    assert_eq!(
        layout.kernel,
        GpaRange {
            gpa: GPA,
            len: image_size
        }
    );
    assert_eq!(layout.initrd.len, initrd_len);
    // Never overlapping, all inside RAM.
    let ranges = [layout.kernel, layout.initrd, layout.dtb];
    for (i, a) in ranges.iter().enumerate() {
        assert!(a.gpa >= GPA && a.gpa + a.len <= GPA + RAM);
        for b in &ranges[i + 1..] {
            assert!(
                a.gpa + a.len <= b.gpa || b.gpa + b.len <= a.gpa,
                "{a:?} overlaps {b:?}"
            );
        }
    }
    // The device tree: 8-byte aligned, within one 2 MiB block.
    assert_eq!(layout.dtb.gpa % 8, 0);
    assert_eq!(
        layout.dtb.gpa >> 21,
        (layout.dtb.gpa + layout.dtb.len - 1) >> 21
    );
    // The allocator holds all three.
    for range in ranges {
        assert_eq!(
            g.ram.mark_allocated(range.gpa, range.len),
            Err(guest_ram::Error::AlreadyAllocated)
        );
    }
    // Bytes: the kernel file, the initrd's bytes, the patched blob.
    assert_eq!(
        g.bytes(GpaRange {
            gpa: GPA,
            len: kernel_len
        }),
        kernel
    );
    assert_eq!(g.bytes(layout.initrd), initrd[..initrd_len as usize]);
    let in_guest = g.bytes(layout.dtb);
    assert_eq!(in_guest, dtb[..layout.dtb.len as usize]);
    // What the guest reads agrees with the layout, property by property.
    assert!(agrees(&in_guest, &layout).unwrap());
    let tree = Fdt::new(&in_guest).unwrap();
    assert_eq!(tree.reg("/memory"), Ok((GPA, RAM)));
    assert_eq!(
        tree.u64_property("/chosen", "linux,initrd-start"),
        Ok(layout.initrd.gpa)
    );
    assert_eq!(
        tree.u64_property("/chosen", "linux,initrd-end"),
        Ok(layout.initrd.gpa + initrd_len)
    );

    // A reset: unload gives everything back, and loading again (into the
    // already-patched device tree) puts everything where it was.
    assert_eq!(layout.kernel_reserved.gpa, GPA);
    unload(&mut g.ram, &layout).unwrap();
    assert_eq!(g.ram.find_largest_free_region().unwrap(), memory);
    let again = g
        .load(
            memory,
            (&mut kernel, kernel_len),
            (&mut initrd, initrd_len),
            &mut dtb,
        )
        .unwrap();
    assert_eq!(again, layout);
    assert!(agrees(&g.bytes(again.dtb), &again).unwrap());
    // Unloading twice is an error, not a double free.
    unload(&mut g.ram, &again).unwrap();
    assert_eq!(
        unload(&mut g.ram, &again),
        Err(guest_ram::Error::NotAllocated)
    );
    drop(g.memory);
}

/// One refused load: its error, after checking that it left guest RAM's
/// bookkeeping as it found it (all of it free).
fn refused(
    kernel: &mut [u8],
    kernel_len: u64,
    initrd: &mut [u8],
    initrd_len: u64,
    dtb: &mut [u8],
) -> LoadError {
    let mut g = Guest::new();
    let memory = GpaRange { gpa: GPA, len: RAM };
    let err = g
        .load(memory, (kernel, kernel_len), (initrd, initrd_len), dtb)
        .expect_err("the load must be refused");
    assert_eq!(
        g.ram.find_largest_free_region().unwrap(),
        memory,
        "{err:?} left something allocated"
    );
    err
}

#[test]
fn bad_inputs_are_errors_and_change_nothing() {
    let mut initrd = vec![0u8; 0x1000];
    let mut big = vec![0u8; 4 << 20];
    let good_dtb = repo_dtb();

    // Not an Image (a gzip'd vmlinuz).
    let mut gz = kernel_image(0x10_0000, 0x1000);
    gz[0x38] = 0x1f;
    let err = refused(&mut gz, 0x1000, &mut initrd, 0, &mut good_dtb.clone());
    assert!(matches!(err, LoadError::Image(ImageError::BadMagic(_))));
    assert!(err.to_string().contains("not an arm64 Image"));

    // A device tree without /chosen's initrd placeholders.
    let mut no_chosen = fdt::tests_support::Builder::default()
        .begin("")
        .begin("memory@40000000")
        .prop("reg", &[0; 16])
        .end()
        .end()
        .finish()
        .to_vec();
    let mut kernel = kernel_image(0x10_0000, 0x1000);
    let err = refused(&mut kernel, 0x1000, &mut initrd, 0, &mut no_chosen);
    assert!(
        matches!(err, LoadError::Fdt(fdt::FdtError::NotFound, _)),
        "{err:?}"
    );

    // Placement that does not fit, at each step (the allocations made
    // before the failing one are given back), and lengths longer than
    // their buffers (the fuzzer's find: an initrd's copy failed after the
    // kernel was placed and copied, leaving both).
    use guest_ram::Error::{NoSpace, OutsideBuffer};
    let cases: [(u64, u64, u64, guest_ram::Error, &str); 6] = [
        // (image_size, kernel length, initrd length, error, step)
        (
            RAM + 0x1000,
            0x1000,
            0,
            NoSpace,
            "kernel image_size past guest memory",
        ),
        (RAM, 0x1000, 0, NoSpace, "device tree"),
        (RAM - (2 << 20), 0x1000, 4 << 20, NoSpace, "initrd"),
        (RAM - (4 << 20), 0x1000, 4 << 20, NoSpace, "device tree"),
        (
            0x10_0000,
            0x1000,
            (4 << 20) + 1,
            OutsideBuffer,
            "initrd longer than its buffer",
        ),
        (
            0x10_0000,
            0x2000,
            0,
            OutsideBuffer,
            "kernel longer than its buffer",
        ),
    ];
    for (image_size, kernel_len, initrd_len, want, step) in cases {
        let mut kernel = kernel_image(image_size, 0x1000);
        let err = refused(
            &mut kernel,
            kernel_len,
            &mut big,
            initrd_len,
            &mut good_dtb.clone(),
        );
        assert_eq!(err, LoadError::Ram(want, step));
    }
}

#[test]
fn text_offset_is_honoured() {
    let mut g = Guest::new();
    let mut kernel = kernel_image(0x20_0000, 0x2000);
    kernel[0x08..0x10].copy_from_slice(&0x8_0000u64.to_le_bytes());
    let mut initrd = vec![1u8; 0x1000];
    let mut dtb = repo_dtb();
    // Memory that starts 1 MiB into the RAM: the base rounds up to 2 MiB.
    let memory = GpaRange {
        gpa: GPA + (1 << 20),
        len: RAM - (1 << 20),
    };
    let layout = g
        .load(
            memory,
            (&mut kernel, 0x2000),
            (&mut initrd, 0x1000),
            &mut dtb,
        )
        .unwrap();
    assert_eq!(layout.entry, GPA + (2 << 20) + 0x8_0000);
    assert_eq!(
        g.bytes(GpaRange {
            gpa: layout.entry,
            len: 0x2000
        }),
        kernel
    );
    assert!(agrees(&dtb, &layout).unwrap());
}

/// A boot bundle as `guest_ram_sdf.bundle` lays it out: header, the
/// kernel at 4 KiB, the initrd at the next 4 KiB boundary.
fn bundle(kernel: &[u8], initrd: &[u8], region_len: usize) -> Vec<u8> {
    let kernel_at = 0x1000;
    let initrd_at = (kernel_at + kernel.len()).next_multiple_of(0x1000);
    let mut blob = vec![0u8; region_len];
    blob[..8].copy_from_slice(&linux_boot::bundle::MAGIC);
    blob[8..12].copy_from_slice(&linux_boot::bundle::VERSION.to_le_bytes());
    for (at, value) in [
        (16, kernel_at),
        (24, kernel.len()),
        (32, initrd_at),
        (40, initrd.len()),
    ] {
        blob[at..at + 8].copy_from_slice(&(value as u64).to_le_bytes());
    }
    blob[kernel_at..kernel_at + kernel.len()].copy_from_slice(kernel);
    blob[initrd_at..initrd_at + initrd.len()].copy_from_slice(initrd);
    blob
}

/// The VMM's path: split the region a boot loader filled, then load: the
/// guest gets exactly the two files, and not a byte of what follows them.
#[test]
fn loads_from_a_bundle() {
    let mut g = Guest::new();
    let kernel = kernel_image(0x201_0000, (3 << 20) + 123);
    let initrd: Vec<u8> = (0..0x17_7339).map(|i| (i % 251) as u8).collect();
    let mut blob = bundle(&kernel, &initrd, 6 << 20);
    // What lies after each file in the region is not theirs.
    let tail = 0x1000 + kernel.len();
    blob[tail..tail + 8].fill(0xee);
    let region = buffer(&mut blob);
    let (kernel_buf, initrd_buf) = Bundle::split(&region).unwrap();
    assert_eq!(
        (kernel_buf.len(), initrd_buf.len()),
        (kernel.len(), initrd.len())
    );
    let mut dtb = repo_dtb();
    dtb.resize(0x2000, 0);
    let memory = GpaRange { gpa: GPA, len: RAM };
    let layout = load(
        &mut g.ram,
        memory,
        &kernel_buf,
        kernel_buf.len() as u64,
        &initrd_buf,
        initrd_buf.len() as u64,
        &mut dtb,
    )
    .unwrap();
    let copied = g.bytes(GpaRange {
        gpa: layout.kernel.gpa,
        len: kernel.len() as u64 + 8,
    });
    assert_eq!(&copied[..kernel.len()], &kernel[..]);
    assert_eq!(
        &copied[kernel.len()..],
        &[0u8; 8],
        "bytes past the file copied"
    );
    assert_eq!(g.bytes(layout.initrd), initrd);

    // A region nothing was loaded into: an error, not a boot.
    let mut empty = vec![0u8; 0x10000];
    assert_eq!(
        Bundle::split(&buffer(&mut empty)),
        Err(BundleError::BadMagic)
    );
}
