// SPDX-License-Identifier: BSD-2-Clause
//! Property tests: `VIRTIO_RING_F_EVENT_IDX` on the device side
//! (`DeviceQueue::publish`, `DeviceQueue::events`) against models.
//!
//! - **The suppression rule.** For any sequence of publications and
//!   `used_event` values the driver writes, the device interrupts after a
//!   publication exactly when the model says the driver asked: its
//!   `used_event` lies among the used indices that publication passed
//!   (the used index at the previous decision up to the new one).
//! - **No lost interrupt, no lost notification.** A device and a
//!   Linux-like driver in any interleaving of their steps (the driver
//!   adds chains and notifies only if it passes `avail_event`; it
//!   handles an interrupt by taking every used chain, re-enabling with
//!   `used_event` = its last used index and checking again, as
//!   `virtqueue_enable_cb_prepare` and `virtqueue_poll` do; the device
//!   snapshots, publishes and reads the event indices as separate steps,
//!   so the driver runs between them): once both go quiet, every chain the
//!   driver made available was used and every used chain was seen.

use guest_ram::{GpaRange, SharedBuffer};
use proptest::prelude::*;
use virtio::queue::{Desc, Layout, UsedElem};
use virtio::virtq::{need_event, DeviceQueue, GuestDma, Snapshot};
use zerocopy::IntoBytes;

const SIZE: u16 = 8;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;

/// Guest memory as a flat array at gpa 0.
struct Mem(Vec<u8>);

impl Mem {
    fn new() -> Self {
        let mut mem = Mem(vec![0; 0x4000]);
        for d in 0..SIZE {
            mem.put(
                DESC + 16 * u64::from(d),
                Desc::new(0x100, 8, 0, 0).as_bytes(),
            );
        }
        mem
    }
    fn put(&mut self, gpa: u64, bytes: &[u8]) {
        self.0[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
    }
    fn word(&self, gpa: u64) -> u16 {
        u16::from_le_bytes([self.0[gpa as usize], self.0[gpa as usize + 1]])
    }
}

impl GuestDma for Mem {
    type Error = &'static str;
    fn read(&mut self, gpa: u64, dst: &mut [u8]) -> Result<(), Self::Error> {
        let len = dst.len() as u64;
        self.readv(&[GpaRange { gpa, len }], dst)
    }
    fn readv(&mut self, segments: &[GpaRange], dst: &mut [u8]) -> Result<(), Self::Error> {
        let mut at = 0;
        for s in segments {
            let (g, n) = (s.gpa as usize, s.len as usize);
            dst[at..at + n].copy_from_slice(self.0.get(g..g + n).ok_or("outside")?);
            at += n;
        }
        Ok(())
    }
    fn write(&mut self, gpa: u64, src: &[u8]) -> Result<(), Self::Error> {
        let len = src.len() as u64;
        self.writev(&[GpaRange { gpa, len }], src)
    }
    fn writev(&mut self, segments: &[GpaRange], src: &[u8]) -> Result<(), Self::Error> {
        let mut at = 0;
        for s in segments {
            let (g, n) = (s.gpa as usize, s.len as usize);
            self.0
                .get_mut(g..g + n)
                .ok_or("outside")?
                .copy_from_slice(&src[at..at + n]);
            at += n;
        }
        Ok(())
    }
    fn staging(&self) -> &SharedBuffer {
        unimplemented!("not used by the ring code")
    }
    fn gather(&mut self, _: &[GpaRange]) -> Result<usize, Self::Error> {
        Err("no staging")
    }
    fn scatter(&mut self, _: &[GpaRange]) -> Result<usize, Self::Error> {
        Err("no staging")
    }
    fn gather_at(&mut self, _: &[GpaRange], _: u64) -> Result<usize, Self::Error> {
        Err("no staging")
    }
    fn scatter_at(&mut self, _: &[GpaRange], _: u64) -> Result<usize, Self::Error> {
        Err("no staging")
    }
}

fn layout() -> Layout {
    Layout::new(SIZE, DESC, AVAIL, USED)
        .unwrap()
        .with_event_idx(true)
}

fn used(n: u16) -> Vec<UsedElem> {
    (0..n)
        .map(|_| UsedElem {
            id: 0.into(),
            len: 0.into(),
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Step {
    /// The driver writes `used_event`: an offset from the device's used
    /// index (any value, a guest may write anything).
    UsedEvent(u16),
    /// The device uses `n` chains (1 to the queue size) and decides.
    Publish(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u16..12).prop_map(Step::UsedEvent),
        any::<u16>().prop_map(Step::UsedEvent),
        (1u16..=SIZE).prop_map(Step::Publish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 10 } else { 2000 }))]

    #[test]
    fn interrupts_exactly_when_the_driver_asked(
        start in any::<u16>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let layout = layout();
        let mut mem = Mem::new();
        let mut queue = DeviceQueue::new();
        // Start anywhere on the 16-bit circle: run the queue there first.
        let mut model_used = 0u16;
        let mut left = start;
        while left > 0 {
            let n = left.min(SIZE);
            mem.put(AVAIL + 2, &model_used.wrapping_add(n).to_le_bytes());
            queue.publish(&layout, &[], &used(n), &mut mem).unwrap();
            model_used = model_used.wrapping_add(n);
            left -= n;
            let _ = queue.events(&layout, &mut mem);
            if left > 0x7000 { left = 0; }
        }
        let mut decided = model_used;
        let mut used_event = mem.word(layout.used_event_gpa());
        for s in steps {
            match s {
                Step::UsedEvent(off) => {
                    used_event = model_used.wrapping_add(off);
                    mem.put(layout.used_event_gpa(), &used_event.to_le_bytes());
                }
                Step::Publish(n) => {
                    mem.put(AVAIL + 2, &model_used.wrapping_add(n).to_le_bytes());
                    queue.publish(&layout, &[], &used(n), &mut mem).unwrap();
                    model_used = model_used.wrapping_add(n);
                    let events = queue.events(&layout, &mut mem);
                    // The model: used_event among decided, ..., new - 1.
                    let asked = (0..n).any(|k| decided.wrapping_add(k) == used_event);
                    prop_assert_eq!(events.interrupt, asked);
                    prop_assert_eq!(events.interrupt, need_event(used_event, model_used, decided));
                    prop_assert!(!events.more);
                    // avail_event: the device's position, written with
                    // the used index.
                    prop_assert_eq!(mem.word(layout.avail_event_gpa()), model_used);
                    prop_assert_eq!(mem.word(USED + 2), model_used);
                    decided = model_used;
                }
            }
        }
    }

    #[test]
    fn no_lost_interrupt_or_notification(
        ops in proptest::collection::vec((0u8..4, 1u16..=4), 1..80),
    ) {
        let layout = layout();
        let mut mem = Mem::new();
        let mut queue = DeviceQueue::new();
        // Driver: its available index, the used index it has seen, a
        // notification and an interrupt in flight.
        let mut avail = 0u16;
        let mut last_used = 0u16;
        let mut kicked = false;
        let mut irq = false;
        // Device: what its current round took (between its snapshot and
        // its publication), whether it is in a round.
        let mut round: Option<u16> = None;
        let mut published = false;
        let mut more = false;
        let mut interrupts = 0u32;

        // One device step: start a round (on a notification or `more`),
        // publish it, or read the event indices.
        let device = |queue: &mut DeviceQueue, mem: &mut Mem, kicked: &mut bool,
                      more: &mut bool, round: &mut Option<u16>, published: &mut bool,
                      irq: &mut bool, interrupts: &mut u32| -> bool {
            match (*round, *published) {
                (None, _) if *kicked || *more => {
                    *kicked = false;
                    *more = false;
                    let snap = Snapshot::take(&layout, queue, mem).unwrap();
                    *round = Some(snap.pending());
                    *published = false;
                    true
                }
                (None, _) => false,
                (Some(n), false) => {
                    queue.publish(&layout, &[], &used(n), mem).unwrap();
                    *published = true;
                    true
                }
                (Some(n), true) => {
                    let e = queue.events(&layout, mem);
                    if e.interrupt {
                        *irq = true;
                        *interrupts += 1;
                    }
                    // A round that used nothing and found nothing more
                    // ends; `more` starts the next.
                    *more = e.more;
                    let _ = n;
                    *round = None;
                    true
                }
            }
        };
        // The driver handles an interrupt: takes every used chain,
        // re-enables (used_event = last used) and checks again.
        let driver_irq = |mem: &mut Mem, irq: &mut bool, last_used: &mut u16| -> bool {
            if !*irq {
                return false;
            }
            *irq = false;
            loop {
                *last_used = mem.word(USED + 2);
                mem.put(layout.used_event_gpa(), &last_used.to_le_bytes());
                if mem.word(USED + 2) == *last_used {
                    break;
                }
            }
            true
        };
        for (op, k) in ops {
            match op {
                0 | 1 => {
                    // The driver adds k chains if it has free descriptors.
                    let free = SIZE - avail.wrapping_sub(last_used);
                    let k = k.min(free);
                    if k == 0 { continue; }
                    let old = avail;
                    avail = avail.wrapping_add(k);
                    for i in 0..k {
                        let slot = AVAIL + 4 + 2 * u64::from(old.wrapping_add(i) % SIZE);
                        mem.put(slot, &0u16.to_le_bytes());
                    }
                    mem.put(AVAIL + 2, &avail.to_le_bytes());
                    if need_event(mem.word(layout.avail_event_gpa()), avail, old) {
                        kicked = true;
                    }
                }
                2 => {
                    device(&mut queue, &mut mem, &mut kicked, &mut more, &mut round,
                           &mut published, &mut irq, &mut interrupts);
                }
                _ => {
                    driver_irq(&mut mem, &mut irq, &mut last_used);
                }
            }
        }
        // Both run until quiet.
        for _ in 0..1000 {
            let d = device(&mut queue, &mut mem, &mut kicked, &mut more, &mut round,
                           &mut published, &mut irq, &mut interrupts);
            let r = driver_irq(&mut mem, &mut irq, &mut last_used);
            if !d && !r { break; }
        }
        prop_assert_eq!(queue.last_avail(), avail, "a chain made available was never used");
        prop_assert_eq!(queue.used_idx(), avail);
        prop_assert_eq!(last_used, avail, "a used chain was never seen: lost interrupt");
    }
}
