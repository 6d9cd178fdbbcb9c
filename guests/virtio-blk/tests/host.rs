// SPDX-License-Identifier: BSD-2-Clause
//! The guest's whole suite on the host, against the same library code the
//! PDs run: the VMM's `BlkFrontend` (virtio-mmio) and `guest_ram::Server`,
//! the driver PD's `BlkService` with a copy-service `Client`, a RAM disk.
//! Signals become direct calls; everything else is as on seL4.

mod common;

use common::{suite, Path};

#[test]
fn whole_suite_passes_through_the_copy_service() {
    let (summary, printed, refusals) = suite(Path::TwoCopies(64 << 10));
    for line in &printed {
        println!("{line}");
    }
    assert!(summary.total >= 20, "{summary:?}");
    assert_eq!(summary.passed, summary.total, "{printed:#?}");
    // The buffers outside RAM and outside the window were refused by the
    // copy service itself (the overflowing one already by the client).
    assert_eq!(refusals, 2);
}

#[test]
fn a_small_staging_buffer_only_means_more_calls() {
    // 512 bytes: every 1 MiB request is 2048 chunks.
    let (summary, printed, _) = suite(Path::TwoCopies(512));
    assert_eq!(summary.passed, summary.total, "{printed:#?}");
}

#[test]
fn whole_suite_passes_with_one_copy() {
    // The disk is the blk PD's shared buffer: the VMM copies between guest
    // RAM and the disk, the staging area carries headers and the ring.
    let (summary, printed, refusals) = suite(Path::OneCopy(4096));
    for line in &printed {
        println!("{line}");
    }
    assert!(summary.total >= 20, "{summary:?}");
    assert_eq!(summary.passed, summary.total, "{printed:#?}");
    assert_eq!(refusals, 2);
    // A staging area too small for a whole descriptor table snapshot in
    // one call still works, in more calls.
    let (summary, printed, _) = suite(Path::OneCopy(512));
    assert_eq!(summary.passed, summary.total, "{printed:#?}");
}
