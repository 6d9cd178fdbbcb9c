// SPDX-License-Identifier: BSD-2-Clause
//! What the virtio integration tests share: test memory as a client's
//! shared buffer, and the guest driver's side of one split virtqueue.
//! (Each test crate compiles this module on its own and uses only part of
//! it.)
#![allow(
    dead_code,
    reason = "every test crate compiles this module and none uses all of it"
)]

use std::ptr::NonNull;

use guest_ram::{GuestRam, SharedBuffer};
use virtio::queue::{flags, Desc, Layout};
use zerocopy::IntoBytes;

/// `memory` as a client's shared buffer.
pub fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: the test keeps `memory` alive and otherwise untouched while
    // the buffer is in use.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

/// The guest driver's side of one queue of `size` descriptors at `base`
/// (descriptor table, available ring 4 KiB on, used ring 8 KiB on),
/// descriptor `i` always pointing at its own `slot_len` bytes from
/// `base + 16 KiB` on.
pub struct DriverQueue {
    pub layout: Layout,
    size: u16,
    data: u64,
    slot_len: u64,
    free: Vec<u16>,
    avail_idx: u16,
    last_used: u16,
    /// Each posted chain's descriptors, by head.
    chains: Vec<Vec<u16>>,
}

impl DriverQueue {
    pub fn new(base: u64, size: u16, slot_len: u64) -> Self {
        DriverQueue {
            layout: Layout::new(size, base, base + 0x1000, base + 0x2000).unwrap(),
            size,
            data: base + 0x4000,
            slot_len,
            free: (0..size).rev().collect(),
            avail_idx: 0,
            last_used: 0,
            chains: vec![Vec::new(); usize::from(size)],
        }
    }

    fn slot(&self, d: u16) -> u64 {
        self.data + self.slot_len * u64::from(d)
    }

    /// Posts one chain of buffers holding `pieces` (transmit) or of
    /// `pieces`' lengths (receive); `false` if descriptors are short.
    pub fn post(&mut self, ram: &GuestRam<1, 16>, pieces: &[Vec<u8>], writable: bool) -> bool {
        if pieces.is_empty() || pieces.len() > self.free.len() {
            return false;
        }
        let descs: Vec<u16> = (0..pieces.len())
            .map(|_| self.free.pop().unwrap())
            .collect();
        for (i, (&d, piece)) in descs.iter().zip(pieces).enumerate() {
            assert!(piece.len() as u64 <= self.slot_len);
            if !writable && !piece.is_empty() {
                ram.write(self.slot(d), piece).unwrap();
            }
            let next = descs.get(i + 1).copied();
            let f = if next.is_some() { flags::NEXT } else { 0 }
                | if writable { flags::WRITE } else { 0 };
            let desc = Desc::new(self.slot(d), piece.len() as u32, f, next.unwrap_or(0));
            ram.write(
                self.layout.desc_table().gpa + 16 * u64::from(d),
                desc.as_bytes(),
            )
            .unwrap();
        }
        let head = descs[0];
        let ring = self.layout.avail_ring().gpa + 2 * u64::from(self.avail_idx % self.size);
        ram.write(ring, &head.to_le_bytes()).unwrap();
        self.chains[usize::from(head)] = descs;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        ram.write(self.layout.avail_idx_gpa(), &self.avail_idx.to_le_bytes())
            .unwrap();
        true
    }

    /// Takes back the used chains: each one's written bytes, in order.
    pub fn reclaim(&mut self, ram: &GuestRam<1, 16>) -> Vec<Vec<u8>> {
        let mut idx = [0u8; 2];
        ram.read(self.layout.used_idx_gpa(), &mut idx).unwrap();
        let idx = u16::from_le_bytes(idx);
        let mut out = Vec::new();
        while self.last_used != idx {
            let mut elem = [0u8; 8];
            ram.read(self.layout.used_elem_gpa(self.last_used), &mut elem)
                .unwrap();
            let head = u32::from_le_bytes(elem[..4].try_into().unwrap()) as usize;
            let mut len = u32::from_le_bytes(elem[4..].try_into().unwrap()) as usize;
            let descs = std::mem::take(&mut self.chains[head]);
            assert!(!descs.is_empty(), "chain {head} used twice");
            let mut bytes = Vec::new();
            for &d in &descs {
                let mut desc = Desc::new(0, 0, 0, 0);
                ram.read(
                    self.layout.desc_table().gpa + 16 * u64::from(d),
                    desc.as_mut_bytes(),
                )
                .unwrap();
                let n = len.min(desc.len.get() as usize);
                if n > 0 {
                    let mut piece = vec![0u8; n];
                    ram.read(self.slot(d), &mut piece).unwrap();
                    bytes.extend(piece);
                }
                len -= n;
            }
            assert_eq!(len, 0, "used length beyond the chain");
            self.free.extend(descs);
            out.push(bytes);
            self.last_used = self.last_used.wrapping_add(1);
        }
        out
    }
}
