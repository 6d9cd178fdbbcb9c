// SPDX-License-Identifier: BSD-2-Clause
//! The register page (`MmioDevice::render`) against the trapped reads it
//! replaces: after any sequence of guest stores and backend events, every
//! load the guest could make from the page (each register as a 4-byte
//! load, each configuration field at every width it may be read with)
//! returns what `MmioDevice::read` would have returned, for every device
//! type; and what `read` ignores reads as 0. And the frontend keeps its
//! page rendered: after a store, a backend's report, a capacity it learns.
#![allow(
    unsafe_code,
    reason = "Vecs stand in for the pages system.xml maps: each outlives the buffers made of it"
)]

use std::ptr::NonNull;

use guest_ram::SharedBuffer;
use proptest::prelude::*;
use virtio::console::ConsoleConfig;
use virtio::device::BlkFrontend;
use virtio::mmio::{reg, status, Access, BlkConfig, DeviceType, MmioDevice, WINDOW_SIZE};
use virtio::net::NetConfig;
use virtio::shared::{self, BackendState};

#[derive(Clone, Debug)]
enum Op {
    /// A guest store.
    Write(u64, u32),
    /// A store the driver makes while it sets a device up.
    Setup(u64, u32),
    UsedBuffers,
    NeedsReset,
}

fn op() -> impl Strategy<Value = Op> {
    let registers = prop::sample::select(vec![
        reg::DEVICE_FEATURES_SEL,
        reg::DRIVER_FEATURES,
        reg::DRIVER_FEATURES_SEL,
        reg::QUEUE_SEL,
        reg::QUEUE_NUM,
        reg::QUEUE_READY,
        reg::QUEUE_NOTIFY,
        reg::INTERRUPT_ACK,
        reg::STATUS,
        reg::QUEUE_DESC_LOW,
        reg::QUEUE_DRIVER_LOW,
        reg::QUEUE_DEVICE_LOW,
    ]);
    let setup = prop::sample::select(vec![
        (reg::STATUS, status::ACKNOWLEDGE | status::DRIVER),
        (reg::DRIVER_FEATURES_SEL, 1),
        (reg::DRIVER_FEATURES, 1),
        (
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        ),
        (reg::QUEUE_NUM, 8),
        (reg::QUEUE_DESC_LOW, 0x1000),
        (reg::QUEUE_DRIVER_LOW, 0x2000),
        (reg::QUEUE_DEVICE_LOW, 0x3000),
        (reg::QUEUE_READY, 1),
        (reg::STATUS, 0xf),
        (reg::QUEUE_SEL, 1),
        (reg::DEVICE_FEATURES_SEL, 1),
    ]);
    prop_oneof![
        (registers, any::<u32>()).prop_map(|(r, v)| Op::Write(r, v % 4 * (v >> 30) + v % 3)),
        (0u64..WINDOW_SIZE, any::<u32>()).prop_map(|(r, v)| Op::Write(r & !3, v)),
        setup.prop_map(|(r, v)| Op::Setup(r, v)),
        Just(Op::UsedBuffers),
        Just(Op::NeedsReset),
    ]
}

fn check<D: DeviceType>(dev: &MmioDevice<D>) -> Result<(), TestCaseError> {
    let mut window = [0u8; WINDOW_SIZE as usize];
    dev.render(&mut window);
    let load = |offset: u64, width: u8| {
        let at = offset as usize;
        let mut word = [0u8; 8];
        word[..usize::from(width)].copy_from_slice(&window[at..at + usize::from(width)]);
        u64::from_le_bytes(word)
    };
    for offset in (0..reg::CONFIG).step_by(4) {
        let expected = match dev.read(offset, 4) {
            Access::Done(value, _) => value,
            Access::Ignored(_) => 0,
        };
        prop_assert_eq!(load(offset, 4), expected, "register {:#x}", offset);
    }
    for width in [1u8, 2, 4, 8] {
        for offset in (reg::CONFIG..WINDOW_SIZE).step_by(usize::from(width)) {
            if let Access::Done(value, _) = dev.read(offset, width) {
                prop_assert_eq!(load(offset, width), value, "config {:#x}/{}", offset, width);
            }
        }
    }
    Ok(())
}

fn run<D: DeviceType>(mut dev: MmioDevice<D>, ops: &[Op]) -> Result<(), TestCaseError> {
    check(&dev)?;
    for op in ops {
        match *op {
            Op::Write(offset, value) | Op::Setup(offset, value) => {
                dev.write(offset, 4, u64::from(value));
            }
            Op::UsedBuffers => dev.used_buffers(),
            Op::NeedsReset => dev.needs_reset(),
        }
        check(&dev)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn blk_page_reads_as_the_registers(ops in prop::collection::vec(op(), 0..40), capacity: u64) {
        run(MmioDevice::new(BlkConfig::new(capacity)), &ops)?;
    }

    #[test]
    fn console_page_reads_as_the_registers(ops in prop::collection::vec(op(), 0..40)) {
        run(MmioDevice::new(ConsoleConfig::new()), &ops)?;
    }

    #[test]
    fn net_page_reads_as_the_registers(ops in prop::collection::vec(op(), 0..40), mac: [u8; 6]) {
        run(MmioDevice::new(NetConfig::new(mac)), &ops)?;
    }
}

/// A capacity the backend reports later is on the page once rendered
/// again, under a new configuration generation.
#[test]
fn configuration_changes_reach_the_page() {
    let mut dev = MmioDevice::new(BlkConfig::new(0));
    let mut window = [0u8; WINDOW_SIZE as usize];
    dev.render(&mut window);
    let generation = window[0xfc];
    dev.device_mut().set_backend_value(4096, 512);
    dev.render(&mut window);
    assert_eq!(window[0x100..0x108], 4096u64.to_le_bytes());
    assert_ne!(window[0xfc], generation);
}

fn buffer(bytes: &mut [u8]) -> SharedBuffer {
    // SAFETY: every buffer outlives its use in the test that made it.
    unsafe { SharedBuffer::new(NonNull::new(bytes.as_mut_ptr()).unwrap(), bytes.len()) }
}

fn word(page: &SharedBuffer, offset: u64) -> u32 {
    let mut w = [0u8; 4];
    page.read(offset as usize, &mut w).unwrap();
    u32::from_le_bytes(w)
}

#[test]
fn the_frontend_keeps_its_page_rendered() {
    let (mut shared_page, mut registers) = (vec![0u8; 4096], vec![0xffu8; 4096]);
    let (shared_page, registers) = (buffer(&mut shared_page), buffer(&mut registers));
    let mut blk = BlkFrontend::new(shared_page);
    blk.set_register_page(registers).unwrap();
    // Rendered at once: the magic, and zeros where nothing is.
    assert_eq!(word(&registers, reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(
        word(&registers, 0x400),
        0xffff_ffff,
        "only the window is written"
    );
    assert_eq!(word(&registers, reg::QUEUE_NOTIFY), 0);
    // A store: the status the guest reads back without trapping.
    blk.access(reg::STATUS, 4, Some(u64::from(status::ACKNOWLEDGE)));
    assert_eq!(word(&registers, reg::STATUS), status::ACKNOWLEDGE);
    // The backend reports its capacity with a stale generation: the page
    // still learns it.
    let report = BackendState {
        capacity: 2048.into(),
        block_size: 512.into(),
        ..BackendState::default()
    };
    shared::publish_backend(&shared_page, &report).unwrap();
    blk.backend_signalled();
    assert_eq!(word(&registers, 0x100), 2048);
    // A used-buffer report for the current generation: InterruptStatus.
    let generation = shared::read_queue(&shared_page).unwrap().generation.get();
    let report = BackendState {
        generation: generation.into(),
        ..report
    };
    shared::publish_backend(&shared_page, &report).unwrap();
    blk.backend_signalled();
    assert_eq!(word(&registers, reg::INTERRUPT_STATUS), 1);
    blk.access(reg::INTERRUPT_ACK, 4, Some(1));
    assert_eq!(word(&registers, reg::INTERRUPT_STATUS), 0);
    // Stores that change nothing are not rendered (a notification, an
    // ignored store), and the page still reads as the device does.
    for (offset, value) in [(reg::QUEUE_NOTIFY, 0), (0x0c8, 7), (reg::STATUS, 2)] {
        blk.access(offset, 4, Some(value));
        let mut rendered = [0u8; WINDOW_SIZE as usize];
        blk.device().render(&mut rendered);
        let mut page = [0u8; WINDOW_SIZE as usize];
        registers.read(0, &mut page).unwrap();
        assert_eq!(page, rendered, "after a store of {value:#x} at {offset:#x}");
    }
}

#[test]
fn a_page_smaller_than_the_window_is_refused() {
    let (mut shared_page, mut small) = (vec![0u8; 4096], vec![0u8; 0x1ff]);
    let mut blk = BlkFrontend::new(buffer(&mut shared_page));
    let small = buffer(&mut small);
    assert_eq!(
        blk.set_register_page(small),
        Err(guest_ram::Error::OutsideBuffer)
    );
    // Loads still trap and are answered.
    assert_eq!(blk.access(reg::MAGIC_VALUE, 4, None).0, 0x7472_6976);
}
