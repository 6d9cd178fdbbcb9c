// SPDX-License-Identifier: BSD-2-Clause
//! The reset fence: after a device reset (the driver's `STATUS` = 0, or
//! the VMM's `Frontend::reset` at a guest reset), the VMM serves none of
//! the backend's copy calls until the backend has read the page published
//! with the reset (`BackendState::seen`), so nothing the backend knew of
//! the old rings is copied into memory that is now the new driver's.
//!
//! A model proptest (any sequence of driver stores, resets and backend
//! reads: `backend_may_copy` is true exactly when the backend has read a
//! generation at or past the last reset's), and the backends' side: a
//! report made after the read carries `seen`, and `seen` alone changes
//! nothing of the report the VMM acts on.
#![allow(
    unsafe_code,
    reason = "the shared test module's buffer: test memory standing in for the pages system.xml maps, kept alive"
)]

mod common;

use common::buffer;
use guest_ram::SharedBuffer;
use proptest::prelude::*;
use virtio::blk::RamDisk;
use virtio::device::{Action, BackendPage, BlkFrontend, BlkService};
use virtio::mmio::{reg, status as st};
use virtio::shared;

/// The driver sets queue 0 up at `gpa` (a new configuration, published).
fn set_up(frontend: &mut BlkFrontend, gpa: u64) {
    for (offset, value) in [
        (reg::STATUS, u64::from(st::ACKNOWLEDGE | st::DRIVER)),
        (reg::DRIVER_FEATURES_SEL, 1),
        (reg::DRIVER_FEATURES, 1),
        (
            reg::STATUS,
            u64::from(st::ACKNOWLEDGE | st::DRIVER | st::FEATURES_OK),
        ),
        (reg::QUEUE_SEL, 0),
        (reg::QUEUE_NUM, 16),
        (reg::QUEUE_DESC_LOW, gpa),
        (reg::QUEUE_DRIVER_LOW, gpa + 0x1000),
        (reg::QUEUE_DEVICE_LOW, gpa + 0x2000),
        (reg::QUEUE_READY, 1),
    ] {
        frontend.access(offset, 4, Some(value));
    }
}

#[test]
fn a_guest_reset_fences_the_backend_until_it_reads_the_page() {
    let mut page_memory = vec![0u8; 4096];
    let page = buffer(&mut page_memory);
    let mut frontend = BlkFrontend::new(page);
    let mut backend = BackendPage::new(page);
    set_up(&mut frontend, 0x4000_0000);
    backend.read().unwrap();
    assert!(frontend.backend_may_copy());
    // The driver resets the device, and sets it up again at once: the
    // backend has read neither.
    assert_eq!(
        frontend.access(reg::STATUS, 4, Some(0)).1,
        Action::SignalBackend
    );
    assert!(!frontend.backend_may_copy());
    set_up(&mut frontend, 0x4100_0000);
    assert!(
        !frontend.backend_may_copy(),
        "a later publication is no read"
    );
    // The backend reads: the newest generation, past the reset's.
    backend.read().unwrap();
    assert!(frontend.backend_may_copy());
    // And stays allowed until the next reset, the VMM's this time.
    assert!(frontend.backend_may_copy());
    assert_eq!(frontend.reset(), Action::SignalBackend);
    assert!(!frontend.backend_may_copy());
    backend.read().unwrap();
    assert!(frontend.backend_may_copy());
}

#[test]
fn seen_changes_nothing_of_the_report_and_reports_carry_it() {
    let mut page_memory = vec![0u8; 4096];
    let page = buffer(&mut page_memory);
    let mut disk_memory = vec![0u8; 8192];
    let mut frontend = BlkFrontend::new(page);
    // The service reports the disk's size at once, about generation 0.
    let mut service = BlkService::new(page, RamDisk::new(buffer(&mut disk_memory)));
    let report = shared::read_backend(&page).unwrap();
    assert_eq!(report.capacity.get(), 16);
    set_up(&mut frontend, 0x4000_0000);
    assert_eq!(frontend.reset(), Action::SignalBackend);
    // Reading (through the service) writes `seen` alone.
    let mut memory = vec![0u8; 4096];
    let mut client = NoCopies(buffer(&mut memory));
    assert!(!service.notified(&mut client));
    let after = shared::read_backend(&page).unwrap();
    assert_eq!(after.generation, report.generation);
    assert_eq!(after.capacity, report.capacity);
    assert_eq!(after.needs_reset, report.needs_reset);
    assert_eq!(
        after.seen.get(),
        shared::read_queue(&page).unwrap().generation.get()
    );
    assert!(frontend.backend_may_copy());
}

/// A copy client for a backend that must not copy anything.
struct NoCopies(SharedBuffer);

impl virtio::virtq::GuestDma for NoCopies {
    type Error = &'static str;
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), Self::Error> {
        Err("no copies")
    }
    fn readv(&mut self, _: &[guest_ram::GpaRange], _: &mut [u8]) -> Result<(), Self::Error> {
        Err("no copies")
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), Self::Error> {
        Err("no copies")
    }
    fn writev(&mut self, _: &[guest_ram::GpaRange], _: &[u8]) -> Result<(), Self::Error> {
        Err("no copies")
    }
    fn staging(&self) -> &SharedBuffer {
        &self.0
    }
    fn gather(&mut self, _: &[guest_ram::GpaRange]) -> Result<usize, Self::Error> {
        Err("no copies")
    }
    fn scatter(&mut self, _: &[guest_ram::GpaRange]) -> Result<usize, Self::Error> {
        Err("no copies")
    }
    fn gather_at(&mut self, _: &[guest_ram::GpaRange], _: u64) -> Result<usize, Self::Error> {
        Err("no copies")
    }
    fn scatter_at(&mut self, _: &[guest_ram::GpaRange], _: u64) -> Result<usize, Self::Error> {
        Err("no copies")
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// The driver sets the queue up (at one of two places).
    SetUp(bool),
    /// The driver resets the device.
    DriverReset,
    /// The VMM resets it (a guest reset).
    VmmReset,
    /// The driver makes a store that changes no queue.
    Features,
    /// The backend reads the page.
    Read,
}

proptest! {
    #[test]
    fn copies_are_allowed_exactly_when_the_backend_has_seen_the_last_reset(
        ops in prop::collection::vec(prop_oneof![
            any::<bool>().prop_map(Op::SetUp),
            Just(Op::DriverReset),
            Just(Op::VmmReset),
            Just(Op::Features),
            Just(Op::Read),
        ], 1..60),
    ) {
        let mut page_memory = vec![0u8; 4096];
        let page = buffer(&mut page_memory);
        let mut frontend = BlkFrontend::new(page);
        let mut backend = BackendPage::new(page);
        // The model: whether a reset happened that the backend has not
        // read since (reading a generation published after it counts).
        let mut unseen_reset = false;
        for op in ops {
            match op {
                Op::SetUp(far) => set_up(&mut frontend, if far { 0x4100_0000 } else { 0x4000_0000 }),
                Op::DriverReset => {
                    frontend.access(reg::STATUS, 4, Some(0));
                    unseen_reset = true;
                }
                Op::VmmReset => {
                    frontend.reset();
                    unseen_reset = true;
                }
                Op::Features => {
                    frontend.access(reg::DRIVER_FEATURES_SEL, 4, Some(0));
                }
                Op::Read => {
                    prop_assert!(backend.read().is_some());
                    unseen_reset = false;
                }
            }
            prop_assert_eq!(frontend.backend_may_copy(), !unseen_reset);
        }
    }
}
