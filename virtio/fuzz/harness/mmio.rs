// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-mmio fuzz harness, shared by `cargo fuzz run mmio` and the
//! corpus-replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: a sequence of 8-byte accesses `[kind, offset (2 LE), width
//! selector, value (4 LE)]` applied to a fresh block device. After each
//! one it checks that:
//! - a read, or an ignored access, changed nothing;
//! - `FEATURES_OK` is set only for acceptable features (VERSION_1, and
//!   nothing the device did not offer), `DRIVER_OK` only after it;
//! - a ready queue always has a valid layout;
//! - a notification is only reported for a running device and ready queue;
//! - the identity registers never change;
//! - the register page (`render`) reads, at every register and every
//!   configuration field, what a trapped read returns.

use virtio::mmio::{feature, reg, status, Access, BlkConfig, Effect, MmioDevice, WINDOW_SIZE};
use virtio::queue::Layout;

pub fn run(data: &[u8]) {
    let mut dev = MmioDevice::new(BlkConfig::new(2048));
    for op in data.chunks_exact(8) {
        let write = op[0] & 1 != 0;
        // Mostly the register window, sometimes past it.
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x240;
        let width = [4u8, 1, 2, 8, 3][usize::from(op[3] % 5)];
        let value = u64::from(u32::from_le_bytes([op[4], op[5], op[6], op[7]]));
        let before = dev.clone();
        let access = if write {
            dev.write(offset, width, value)
        } else {
            dev.read(offset, width)
        };
        if !write || matches!(access, Access::Ignored(_)) {
            assert_eq!(dev, before, "a read or ignored access changed the device");
        }
        let s = dev.status();
        if s & status::FEATURES_OK != 0 {
            let f = dev.driver_features();
            assert_eq!(f & !dev.device_features(), 0);
            assert_ne!(f & feature::VERSION_1, 0);
        }
        if s & status::DRIVER_OK != 0 {
            assert_ne!(s & status::FEATURES_OK, 0);
        }
        let q = *dev.queue(0).unwrap();
        if q.ready {
            assert!(Layout::new(q.size, q.desc, q.avail, q.used).is_ok());
        }
        if let Effect::Notify(n) = access.effect() {
            assert_eq!(n, 0);
            assert!(q.ready && s & status::DRIVER_OK != 0);
            assert_eq!(s & status::DEVICE_NEEDS_RESET, 0);
        }
        assert_eq!(dev.read(reg::MAGIC_VALUE, 4).value(), 0x7472_6976);
        assert_eq!(dev.read(reg::DEVICE_ID, 4).value(), 2);
        let mut page = [0u8; WINDOW_SIZE as usize];
        dev.render(&mut page);
        for (offset, width) in (0..reg::CONFIG)
            .step_by(4)
            .map(|o| (o, 4u8))
            .chain((reg::CONFIG..WINDOW_SIZE).step_by(4).map(|o| (o, 4u8)))
        {
            let at = offset as usize;
            let mut word = [0u8; 4];
            word.copy_from_slice(&page[at..at + usize::from(width)]);
            match dev.read(offset, width) {
                Access::Done(v, _) => {
                    assert_eq!(u64::from(u32::from_le_bytes(word)), v, "{offset:#x}")
                }
                Access::Ignored(_) if offset < reg::CONFIG => {
                    assert_eq!(word, [0; 4], "{offset:#x}")
                }
                Access::Ignored(_) => {}
            }
        }
    }
}
