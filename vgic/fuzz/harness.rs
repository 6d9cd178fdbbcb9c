// SPDX-License-Identifier: BSD-2-Clause
//! The vGIC fuzz harness, shared by `cargo fuzz run vgic` and the corpus
//! replay test (`tests/fuzz_corpus.rs`).
//!
//! Input: a sequence of 8-byte operations: `[kind, a, b, c, value: u32 LE]`.
//! kind % 4 selects a distributor access (offset from a and b, width c,
//! load or store), an interrupt raised (id from a and b, possibly out of
//! range), an end of interrupt (list register a), or a drain of
//! injections. After every step the harness checks what seL4 and the
//! architecture need: an injection names a free list register and an
//! interrupt no list register holds, never two at once; an interrupt is
//! delivered only when enabled and the distributor on; and every raised,
//! enabled interrupt is eventually delivered once list registers free up.

use vgic::{dist, Access, VGic, NUM_IRQS};

const LRS: usize = 4;

pub fn run(data: &[u8]) {
    let mut gic = VGic::<LRS>::new();
    // The model: what each list register holds.
    let mut held: [Option<u16>; LRS] = [None; LRS];
    for op in data.chunks_exact(8) {
        let value = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        match op[0] % 4 {
            0 => {
                let offset = u64::from(u16::from_le_bytes([op[1], op[2]]) & 0x1fff);
                let width = op[3] % 9;
                let write = (op[0] & 0x80 != 0).then_some(value);
                let answer = gic.mmio(offset, width, write);
                if let Access::Done(v) = answer {
                    assert!(matches!(width, 1 | 4), "width {width} accepted");
                    assert_eq!(offset % u64::from(width), 0);
                    if width == 1 {
                        assert!(v <= 0xff);
                    }
                }
            }
            1 => {
                let irq = u64::from(u16::from_le_bytes([op[1], op[2]]) % 160);
                assert_eq!(gic.raise(irq).is_ok(), irq < NUM_IRQS as u64);
                if irq < NUM_IRQS as u64 {
                    assert!(
                        gic.distributor().is_pending(irq as u16)
                            || gic.list_registers().holds(irq as u16)
                    );
                }
            }
            2 => {
                let lr = u64::from(op[1] % 8);
                let freed = gic.eoi(lr);
                let model = held.get_mut(lr as usize).and_then(Option::take);
                assert_eq!(freed, model);
            }
            _ => {
                drain(&mut gic, &mut held);
            }
        }
        // The bookkeeping and the model agree.
        for (lr, irq) in held.iter().enumerate() {
            assert_eq!(gic.list_registers().get(lr as u8), *irq);
        }
    }
    // Liveness: free every list register and drain until quiet; whatever
    // is still pending must be undeliverable (disabled, or the
    // distributor off).
    for _ in 0..NUM_IRQS {
        for (lr, model) in held.iter_mut().enumerate() {
            assert_eq!(gic.eoi(lr as u64), model.take());
        }
        if drain(&mut gic, &mut held) == 0 {
            break;
        }
    }
    let d = gic.distributor();
    for irq in d.pending() {
        assert!(!d.is_on() || !d.is_enabled(*irq), "{irq} stuck pending");
    }
    // Registers still answer after all that.
    assert_eq!(gic.mmio(dist::reg::TYPER, 4, None), Access::Done(3));
}

/// Takes every injection on offer, checking each; returns how many.
fn drain(gic: &mut VGic<LRS>, held: &mut [Option<u16>; LRS]) -> usize {
    let mut n = 0;
    while let Some(injection) = gic.next_injection() {
        let slot = &mut held[usize::from(injection.lr)];
        assert_eq!(*slot, None, "LR {} handed out while busy", injection.lr);
        assert!(
            !held.contains(&Some(injection.irq)),
            "{} in two LRs",
            injection.irq
        );
        let d = gic.distributor();
        assert!(d.is_on() && d.is_enabled(injection.irq));
        assert!(!d.is_pending(injection.irq));
        held[usize::from(injection.lr)] = Some(injection.irq);
        n += 1;
        assert!(n <= LRS);
    }
    n
}
