// SPDX-License-Identifier: BSD-2-Clause
//! The block-ring fuzz harness, shared by `cargo fuzz run queue` and the
//! corpus-replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: `[capacity selector, steps...]`, each step a selector byte and
//! its operands. The memory of both rings starts zeroed; steps are the
//! driver loop running (`driver::Serve` over a device with several
//! requests in flight that completes any of them, fails or stalls as the
//! input says), the client enqueueing or dequeuing,
//! or the input scribbling bytes anywhere in either ring (a hostile other
//! side). Checks that:
//! - nothing panics, and the driver loop returns (a ring holds at most a
//!   capacity of requests, so each run answers at most what it can take);
//! - the driver loop never writes a byte the client owns (the request
//!   ring's tail and records, the response ring's head), and the client
//!   never writes one the driver owns;
//! - every request the driver starts is inside the data region and the
//!   disk, in a free slot, sharing no data-region byte with another on
//!   the device; a flush or barrier starts only on an idle device.
#![allow(
    unsafe_code,
    reason = "test memory stands in for the shared mappings; it outlives the buffers"
)]

use std::ptr::NonNull;

use blk_queue::driver::{BlockDevice, Serve};
use blk_queue::{Client, Code, Driver, Request, Rings, Status, Transfer};
use guest_ram::SharedBuffer;

const DATA: u64 = 64 << 10;
const BLOCKS: u64 = 100;

fn buffer(memory: &mut [u8]) -> SharedBuffer {
    // SAFETY: `run` keeps `memory` alive while the buffer is used.
    unsafe { SharedBuffer::new(NonNull::new(memory.as_mut_ptr()).unwrap(), memory.len()) }
}

/// Slots the driver loop keeps on the device.
const SLOTS: usize = 3;

struct Device {
    /// The transfer in each slot.
    running: [Option<Transfer>; SLOTS],
    outcome: u8,
}

impl BlockDevice for Device {
    fn start(&mut self, slot: usize, code: Code, t: &Transfer) -> Result<(), Status> {
        if matches!(code, Code::Read | Code::Write) {
            assert!(t.len > 0 && (t.data_offset + t.len) as u64 <= DATA);
            assert!(t.sector / 8 + (t.len as u64) / 4096 <= BLOCKS);
        }
        assert!(self.running[slot].is_none(), "a slot in use");
        let busy = self.running.iter().flatten().count();
        assert!(
            !matches!(code, Code::Flush | Code::Barrier) || busy == 0,
            "a flush with requests on the device"
        );
        for o in self.running.iter().flatten() {
            assert!(
                t.len == 0
                    || o.len == 0
                    || t.data_offset + t.len <= o.data_offset
                    || o.data_offset + o.len <= t.data_offset,
                "two requests share data-region bytes"
            );
        }
        if self.outcome % 7 == 6 {
            return Err(Status::Io);
        }
        self.running[slot] = Some(*t);
        Ok(())
    }
    fn poll(&mut self) -> Option<(usize, Status)> {
        // The input picks which slot finishes, and how.
        let slot = (0..SLOTS)
            .map(|k| (k + usize::from(self.outcome / 7)) % SLOTS)
            .find(|&k| self.running[k].is_some())?;
        let status = match self.outcome % 7 {
            0..=2 => Status::Ok,
            3 => Status::Io,
            _ => return None,
        };
        self.running[slot] = None;
        Some((slot, status))
    }
}

/// The bytes of `b` that the side which is not `driver` owns.
fn owned(req: &[u8], resp: &[u8], driver: bool) -> Vec<u8> {
    if driver {
        // The driver owns the request ring's head and the response ring's
        // tail and records.
        [&req[..4], &resp[4..]].concat()
    } else {
        [&req[4..], &resp[..4]].concat()
    }
}

pub fn run(data: &[u8]) {
    let Some((&first, mut steps)) = data.split_first() else {
        return;
    };
    let capacity = u32::from(first % 8) + 1;
    let cap = capacity as usize;
    let mut req = vec![0u8; Rings::request_bytes(cap)];
    let mut resp = vec![0u8; Rings::response_bytes(cap)];
    let (rb, sb) = (buffer(&mut req), buffer(&mut resp));
    let rings = Rings::new(rb, sb, capacity).unwrap();
    let mut client = Client::new(rings);
    let mut serve = Serve::<SLOTS>::new(Driver::new(rings), DATA, BLOCKS);
    let mut device = Device {
        running: [None; SLOTS],
        outcome: 0,
    };
    let snapshot = || {
        let (mut a, mut b) = (vec![0u8; rb.len()], vec![0u8; sb.len()]);
        rb.read(0, &mut a).unwrap();
        sb.read(0, &mut b).unwrap();
        (a, b)
    };
    while let Some((&op, rest)) = steps.split_first() {
        steps = rest;
        let take = |steps: &mut &[u8], n: usize| -> Vec<u8> {
            let n = n.min(steps.len());
            let (a, b) = steps.split_at(n);
            *steps = b;
            a.to_vec()
        };
        match op % 4 {
            0 => {
                // The driver loop runs; the device does what the input says.
                device.outcome = op / 4;
                let before = snapshot();
                let _ = serve.run(&mut device);
                let after = snapshot();
                assert!(
                    owned(&before.0, &before.1, false) == owned(&after.0, &after.1, false),
                    "the driver wrote the client's bytes"
                );
            }
            1 => {
                // The client queues a request from the input.
                let b = take(&mut steps, 20);
                let mut w = [0u8; 20];
                w[..b.len()].copy_from_slice(&b);
                let request = Request::new(
                    match w[0] % 5 {
                        0 => Code::Read,
                        1 => Code::Write,
                        2 => Code::Flush,
                        3 => Code::Barrier,
                        _ => Code::Unknown(u32::from(w[0])),
                    },
                    u64::from(u32::from_le_bytes(w[1..5].try_into().unwrap())) % (2 * DATA),
                    u64::from(w[5]) * 256 + u64::from(w[6]),
                    u16::from_le_bytes([w[7], w[8]]) % 40,
                    u32::from_le_bytes(w[9..13].try_into().unwrap()),
                );
                let before = snapshot();
                let _ = client.enqueue(&request);
                let after = snapshot();
                assert!(
                    owned(&before.0, &before.1, true) == owned(&after.0, &after.1, true),
                    "the client wrote the driver's bytes"
                );
            }
            2 => {
                let before = snapshot();
                for _ in 0..=cap {
                    match client.dequeue() {
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                let after = snapshot();
                assert!(owned(&before.0, &before.1, true) == owned(&after.0, &after.1, true));
            }
            _ => {
                // Scribble: [which ring, offset, len, bytes...].
                let h = take(&mut steps, 3);
                if h.len() < 3 {
                    return;
                }
                let b = if h[0] & 1 == 0 { rb } else { sb };
                let at = usize::from(h[1]) % b.len();
                let bytes = take(&mut steps, usize::from(h[2] % 16));
                let n = bytes.len().min(b.len() - at);
                b.write(at, &bytes[..n]).unwrap();
            }
        }
    }
}
