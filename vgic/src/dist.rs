// SPDX-License-Identifier: BSD-2-Clause
//! The GICv2 distributor's register file (Arm IHI 0048B, chapter 4.3), as
//! a guest with one CPU interface sees it.
//!
//! Widths follow the architecture: every register takes 32-bit accesses;
//! `IPRIORITYR`, `ITARGETSR`, `CPENDSGIR` and `SPENDSGIR` also take byte
//! accesses; nothing takes half-words or double words. An access the
//! architecture does not define (a bad width, a misaligned offset, an
//! offset with no register, a write to a read-only register) reads as zero,
//! changes nothing, and is reported as [`Access::Ignored`] with the reason,
//! so that the VMM can log it. Registers for interrupts past [`NUM_IRQS`]
//! read as zero and ignore writes, as the architecture says of
//! unimplemented interrupts, and are not reported.
//!
//! ```
//! use vgic::dist::{reg, Access, Distributor};
//! let mut gicd = Distributor::new();
//! // 128 interrupt lines, one CPU interface.
//! assert_eq!(gicd.access(reg::TYPER, 4, None), Access::Done(3));
//! // Byte-wide ITARGETSR writes, as Linux makes them.
//! gicd.access(reg::ITARGETSR + 48, 1, Some(1));
//! assert_eq!(gicd.access(reg::ITARGETSR + 48, 4, None), Access::Done(1));
//! // A half-word access is not GICv2's.
//! assert!(matches!(gicd.access(reg::CTLR, 2, None), Access::Ignored(_)));
//! ```

use heapless::Vec;

/// Interrupt ids the distributor has: 16 SGIs, 16 PPIs and 96 SPIs.
/// Enough for QEMU virt's devices (the virtio-mmio SPIs start at INTID 48)
/// and small enough that `TYPER.ITLinesNumber` is 3.
pub const NUM_IRQS: usize = 128;
const WORDS: usize = NUM_IRQS / 32;

/// Bytes of distributor registers (the GICD frame).
pub const FRAME_SIZE: u64 = 0x1000;

/// Register offsets from the distributor's base.
pub mod reg {
    /// Distributor control: bit 0 enables forwarding.
    pub const CTLR: u64 = 0x000;
    /// Interrupt controller type (RO).
    pub const TYPER: u64 = 0x004;
    /// Implementer identification (RO).
    pub const IIDR: u64 = 0x008;
    /// Interrupt group bits, 32 interrupts a word.
    pub const IGROUPR: u64 = 0x080;
    /// Set-enable, 32 a word.
    pub const ISENABLER: u64 = 0x100;
    /// Clear-enable.
    pub const ICENABLER: u64 = 0x180;
    /// Set-pending.
    pub const ISPENDR: u64 = 0x200;
    /// Clear-pending.
    pub const ICPENDR: u64 = 0x280;
    /// Set-active.
    pub const ISACTIVER: u64 = 0x300;
    /// Clear-active.
    pub const ICACTIVER: u64 = 0x380;
    /// Priorities, a byte per interrupt.
    pub const IPRIORITYR: u64 = 0x400;
    /// CPU targets, a byte per interrupt.
    pub const ITARGETSR: u64 = 0x800;
    /// Trigger configuration, 2 bits per interrupt.
    pub const ICFGR: u64 = 0xc00;
    /// Non-secure access control (RAZ/WI here).
    pub const NSACR: u64 = 0xe00;
    /// Software-generated interrupt (WO).
    pub const SGIR: u64 = 0xf00;
    /// SGI clear-pending, a byte per SGI.
    pub const CPENDSGIR: u64 = 0xf10;
    /// SGI set-pending, a byte per SGI.
    pub const SPENDSGIR: u64 = 0xf20;
    /// Peripheral and component identification registers (RO).
    pub const ID: u64 = 0xfd0;
}

/// The answer to one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Done; for a load, the value (zero-extended to the access width).
    Done(u32),
    /// Not a GICv2 access: reads 0, changes nothing. The reason, for a log.
    Ignored(&'static str),
}

impl Access {
    /// The value a load returns (0 for an ignored one).
    pub fn value(&self) -> u32 {
        match self {
            Access::Done(v) => *v,
            Access::Ignored(_) => 0,
        }
    }
}

/// `IIDR`: Arm as implementer, product 0x02, variant and revision 0 (a
/// GIC-400's value, which is what QEMU's GICv2 reports too).
const IIDR: u32 = 0x0200_043b;
/// `ICFGR0`: the SGIs are edge-triggered and read-only.
const ICFGR_SGI: u32 = 0xaaaa_aaaa;
/// The one CPU interface's target bit.
const CPU0: u8 = 0x01;
/// The priority bits implemented: 5, like the GICH_VTR of the virtual
/// interface (QEMU's reads `PRIbits` = 4, i.e. 5 bits).
const PRIORITY_MASK: u8 = 0xf8;
/// `GICD_PIDR4..7, PIDR0..3, CIDR0..3`: a GICv2 (`PIDR2.ArchRev` = 2).
const ID_REGS: [u8; 12] = [
    0x04, 0x00, 0x00, 0x00, 0x90, 0xb4, 0x2b, 0x00, 0x0d, 0xf0, 0x05, 0xb1,
];

/// The distributor's state for one CPU interface.
pub struct Distributor {
    ctlr: u32,
    group: [u32; WORDS],
    enabled: [u32; WORDS],
    pending: [u32; WORDS],
    active: [u32; WORDS],
    priority: [u8; NUM_IRQS],
    targets: [u8; NUM_IRQS],
    config: [u32; NUM_IRQS / 16],
    /// Pending interrupts in the order they became pending (each at most
    /// once: an id is here exactly when its `pending` bit is set).
    order: Vec<u16, NUM_IRQS>,
}

impl Default for Distributor {
    fn default() -> Self {
        Self::new()
    }
}

fn bit(irq: u16) -> (usize, u32) {
    (usize::from(irq / 32), 1 << (irq % 32))
}

impl Distributor {
    /// The reset state: off, every interrupt disabled and inactive, group
    /// 0, priority 0, targets CPU 0 for SGIs and PPIs, SPIs level.
    pub const fn new() -> Self {
        let mut config = [0; NUM_IRQS / 16];
        config[0] = ICFGR_SGI;
        Distributor {
            ctlr: 0,
            group: [0; WORDS],
            enabled: [0; WORDS],
            pending: [0; WORDS],
            active: [0; WORDS],
            priority: [0; NUM_IRQS],
            targets: [0; NUM_IRQS],
            config,
            order: Vec::new(),
        }
    }

    /// Whether the guest turned forwarding on (`CTLR` bit 0).
    pub fn is_on(&self) -> bool {
        self.ctlr & 1 != 0
    }

    /// Whether `irq` is enabled.
    pub fn is_enabled(&self, irq: u16) -> bool {
        let (w, m) = bit(irq);
        self.enabled.get(w).is_some_and(|word| word & m != 0)
    }

    /// Whether `irq` is pending.
    pub fn is_pending(&self, irq: u16) -> bool {
        let (w, m) = bit(irq);
        self.pending.get(w).is_some_and(|word| word & m != 0)
    }

    /// Pending interrupts, oldest first.
    pub fn pending(&self) -> &[u16] {
        &self.order
    }

    /// Makes `irq` (< [`NUM_IRQS`]) pending; a no-op if it already is.
    pub(crate) fn set_pending(&mut self, irq: u16) {
        if usize::from(irq) >= NUM_IRQS || self.is_pending(irq) {
            return;
        }
        let (w, m) = bit(irq);
        // `order` holds exactly the pending ids, fewer than NUM_IRQS of
        // them while `irq` is not: the push cannot fail.
        if let (Some(word), Ok(())) = (self.pending.get_mut(w), self.order.push(irq)) {
            *word |= m;
        }
    }

    fn clear_pending(&mut self, irq: u16) {
        let (w, m) = bit(irq);
        if let Some(word) = self.pending.get_mut(w) {
            *word &= !m;
        }
        // `retain` rather than `remove(position)`: the same O(n), and no
        // index the optimiser must prove in bounds (make no-panic).
        self.order.retain(|p| *p != irq);
    }

    /// Takes the oldest pending interrupt that the guest would take now
    /// (forwarding on, the interrupt enabled) and for which `free` holds;
    /// it is no longer pending.
    pub(crate) fn take_deliverable(&mut self, free: impl Fn(u16) -> bool) -> Option<u16> {
        if !self.is_on() {
            return None;
        }
        let i = self
            .order
            .iter()
            .position(|irq| self.is_enabled(*irq) && free(*irq))?;
        let irq = *self.order.get(i)?;
        self.clear_pending(irq);
        Some(irq)
    }

    /// One guest access at `offset` of `width` bytes; `write` is the
    /// stored value for a store, `None` for a load.
    pub fn access(&mut self, offset: u64, width: u8, write: Option<u32>) -> Access {
        if offset >= FRAME_SIZE {
            return Access::Ignored("offset past the distributor's registers");
        }
        let byte_ok = matches!(
            offset,
            reg::IPRIORITYR..=0x7ff | reg::ITARGETSR..=0xbff | reg::CPENDSGIR..=0xf2f
        );
        match width {
            4 => {}
            1 if byte_ok => {}
            1 => return Access::Ignored("byte access to a register that takes words only"),
            _ => return Access::Ignored("width not 1 or 4 bytes (GICv2 has no other)"),
        }
        if offset % u64::from(width) != 0 {
            return Access::Ignored("misaligned access");
        }
        // In range and aligned: `offset` < 0x1000 fits every index below.
        let o = offset as usize;
        match (offset, write) {
            (reg::CTLR, None) => Access::Done(self.ctlr),
            (reg::CTLR, Some(v)) => {
                self.ctlr = v & 1;
                Access::Done(0)
            }
            (reg::TYPER, None) => Access::Done((WORDS as u32) - 1),
            (reg::IIDR, None) => Access::Done(IIDR),
            (reg::TYPER | reg::IIDR, Some(_)) => Access::Ignored("write to a read-only register"),
            (0x080..=0x0ff, _) => word(&mut self.group, o - 0x080, write, |r, v| *r = v),
            (0x100..=0x17f, _) => word(&mut self.enabled, o - 0x100, write, |r, v| *r |= v),
            (0x180..=0x1ff, _) => word(&mut self.enabled, o - 0x180, write, |r, v| *r &= !v),
            (0x200..=0x27f, None) => read_word(&self.pending, o - 0x200),
            (0x280..=0x2ff, None) => read_word(&self.pending, o - 0x280),
            (0x200..=0x2ff, Some(v)) => {
                let set = offset < reg::ICPENDR;
                let first = (o & 0x7f) / 4 * 32;
                for n in (0..32).filter(|n| v & (1 << n) != 0) {
                    if let Ok(irq) = u16::try_from(first + n) {
                        if set {
                            self.set_pending(irq);
                        } else {
                            self.clear_pending(irq);
                        }
                    }
                }
                Access::Done(0)
            }
            (0x300..=0x37f, _) => word(&mut self.active, o - 0x300, write, |r, v| *r |= v),
            (0x380..=0x3ff, _) => word(&mut self.active, o - 0x380, write, |r, v| *r &= !v),
            (0x400..=0x7fb, _) => bytes(&mut self.priority, o - 0x400, width, write, |b| {
                b & PRIORITY_MASK
            }),
            // SGI and PPI targets: banked, read-only, this CPU.
            (0x800..=0x81f, None) => Access::Done(if width == 4 {
                u32::from_ne_bytes([CPU0; 4])
            } else {
                u32::from(CPU0)
            }),
            (0x800..=0x81f, Some(_)) => Access::Done(0),
            (0x820..=0xbfb, _) => bytes(&mut self.targets, o - 0x800, width, write, |b| b & CPU0),
            (reg::ICFGR, None) => Access::Done(ICFGR_SGI),
            (reg::ICFGR, Some(_)) => Access::Done(0),
            // Linux checks that its trigger-mode writes read back.
            (0xc04..=0xcff, _) => word(&mut self.config, o - 0xc00, write, |r, v| *r = v),
            (0xe00..=0xeff, _) => Access::Done(0),
            (reg::SGIR, Some(v)) => {
                self.sgi(v);
                Access::Done(0)
            }
            (reg::SGIR, None) => Access::Ignored("read of the write-only SGIR"),
            (0xf10..=0xf2f, _) => Access::Done(0),
            (0xfd0..=0xfff, None) => {
                let id = ID_REGS.get((o - 0xfd0) / 4).copied().unwrap_or(0);
                Access::Done(u32::from(id))
            }
            (0xfd0..=0xfff, Some(_)) => Access::Ignored("write to a read-only register"),
            _ => Access::Ignored("no distributor register at this offset"),
        }
    }

    /// `SGIR`: a software-generated interrupt to this CPU, if the target
    /// filter and list name it (one CPU interface: bit 0).
    fn sgi(&mut self, value: u32) {
        let irq = (value & 0xf) as u16;
        let to_self = match (value >> 24) & 3 {
            0 => (value >> 16) & u32::from(CPU0) != 0,
            2 => true,
            _ => false, // "all but self", or reserved
        };
        if to_self {
            self.set_pending(irq);
        }
    }
}

/// A 32-bit register in a per-interrupt bitmap; registers past the
/// interrupts implemented read as zero and ignore writes.
fn word<const N: usize>(
    regs: &mut [u32; N],
    byte_offset: usize,
    write: Option<u32>,
    update: impl Fn(&mut u32, u32),
) -> Access {
    let Some(reg) = regs.get_mut(byte_offset / 4) else {
        return Access::Done(0);
    };
    match write {
        None => Access::Done(*reg),
        Some(v) => {
            update(reg, v);
            Access::Done(0)
        }
    }
}

fn read_word<const N: usize>(regs: &[u32; N], byte_offset: usize) -> Access {
    Access::Done(regs.get(byte_offset / 4).copied().unwrap_or(0))
}

/// A byte-per-interrupt register, accessed a byte or a word at a time;
/// `stored` is what a written byte keeps.
fn bytes(
    regs: &mut [u8; NUM_IRQS],
    first: usize,
    width: u8,
    write: Option<u32>,
    stored: impl Fn(u8) -> u8,
) -> Access {
    let mut value = 0u32;
    for i in 0..usize::from(width) {
        let Some(byte) = regs.get_mut(first + i) else {
            continue;
        };
        match write {
            None => value |= u32::from(*byte) << (8 * i),
            Some(v) => *byte = stored((v >> (8 * i)) as u8),
        }
    }
    Access::Done(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: &mut Distributor, offset: u64, width: u8) -> Access {
        d.access(offset, width, None)
    }

    #[test]
    fn identification() {
        let mut d = Distributor::new();
        assert_eq!(read(&mut d, reg::TYPER, 4), Access::Done(3));
        assert_eq!(read(&mut d, reg::IIDR, 4), Access::Done(IIDR));
        assert_eq!(read(&mut d, 0xfe8, 4), Access::Done(0x2b));
        assert!(matches!(
            d.access(reg::TYPER, 4, Some(7)),
            Access::Ignored(_)
        ));
        assert_eq!(read(&mut d, reg::TYPER, 4), Access::Done(3));
    }

    #[test]
    fn ctlr_keeps_only_the_enable_bit() {
        let mut d = Distributor::new();
        d.access(reg::CTLR, 4, Some(0xffff_ffff));
        assert_eq!(read(&mut d, reg::CTLR, 4), Access::Done(1));
        assert!(d.is_on());
    }

    #[test]
    fn enables_set_and_clear() {
        let mut d = Distributor::new();
        d.access(reg::ISENABLER + 4, 4, Some(0x0001_0003));
        assert!(d.is_enabled(48) && d.is_enabled(32) && d.is_enabled(33));
        d.access(reg::ICENABLER + 4, 4, Some(0x1));
        assert_eq!(
            read(&mut d, reg::ISENABLER + 4, 4),
            Access::Done(0x0001_0002)
        );
        assert_eq!(
            read(&mut d, reg::ICENABLER + 4, 4),
            Access::Done(0x0001_0002)
        );
        // Past the implemented interrupts: RAZ/WI, not an error.
        assert_eq!(d.access(reg::ISENABLER + 0x40, 4, Some(1)), Access::Done(0));
        assert_eq!(read(&mut d, reg::ISENABLER + 0x40, 4), Access::Done(0));
    }

    #[test]
    fn pending_keeps_order_and_clears() {
        let mut d = Distributor::new();
        d.access(reg::ISPENDR + 4, 4, Some(1 << 16));
        d.set_pending(33);
        d.set_pending(48);
        assert_eq!(d.pending(), &[48, 33]);
        assert_eq!(
            read(&mut d, reg::ICPENDR + 4, 4),
            Access::Done((1 << 16) | 2)
        );
        d.access(reg::ICPENDR + 4, 4, Some(1 << 16));
        assert_eq!(d.pending(), &[33]);
        assert!(!d.is_pending(48));
    }

    #[test]
    fn priorities_by_byte_and_word() {
        let mut d = Distributor::new();
        d.access(reg::IPRIORITYR + 48, 4, Some(0xa0a0_a0a7));
        assert_eq!(
            read(&mut d, reg::IPRIORITYR + 48, 4),
            Access::Done(0xa0a0_a0a0)
        );
        d.access(reg::IPRIORITYR + 49, 1, Some(0x10));
        assert_eq!(read(&mut d, reg::IPRIORITYR + 49, 1), Access::Done(0x10));
        assert_eq!(
            read(&mut d, reg::IPRIORITYR + 48, 4),
            Access::Done(0xa0a0_10a0)
        );
        // Past interrupt 127: RAZ/WI.
        d.access(reg::IPRIORITYR + 200, 4, Some(0xffff_ffff));
        assert_eq!(read(&mut d, reg::IPRIORITYR + 200, 4), Access::Done(0));
    }

    #[test]
    fn targets() {
        let mut d = Distributor::new();
        assert_eq!(read(&mut d, reg::ITARGETSR, 4), Access::Done(0x0101_0101));
        assert_eq!(read(&mut d, reg::ITARGETSR + 27, 1), Access::Done(1));
        d.access(reg::ITARGETSR + 32, 4, Some(0x0101_0101));
        d.access(reg::ITARGETSR + 48, 1, Some(0xff));
        assert_eq!(
            read(&mut d, reg::ITARGETSR + 32, 4),
            Access::Done(0x0101_0101)
        );
        assert_eq!(read(&mut d, reg::ITARGETSR + 48, 4), Access::Done(0x1));
    }

    #[test]
    fn trigger_configuration_reads_back() {
        let mut d = Distributor::new();
        assert_eq!(read(&mut d, reg::ICFGR, 4), Access::Done(ICFGR_SGI));
        d.access(reg::ICFGR, 4, Some(0));
        assert_eq!(read(&mut d, reg::ICFGR, 4), Access::Done(ICFGR_SGI));
        d.access(reg::ICFGR + 12, 4, Some(0x0000_0002));
        assert_eq!(read(&mut d, reg::ICFGR + 12, 4), Access::Done(2));
    }

    #[test]
    fn sgir() {
        let mut d = Distributor::new();
        d.access(reg::SGIR, 4, Some((2 << 24) | 5));
        d.access(reg::SGIR, 4, Some((1 << 16) | 3));
        d.access(reg::SGIR, 4, Some((2 << 16) | 4)); // another CPU: none here
        d.access(reg::SGIR, 4, Some((1 << 24) | 6)); // all but self
        assert_eq!(d.pending(), &[5, 3]);
        assert!(matches!(read(&mut d, reg::SGIR, 4), Access::Ignored(_)));
    }

    #[test]
    fn widths_and_alignment() {
        let mut d = Distributor::new();
        for (offset, width) in [
            (reg::CTLR, 1),
            (reg::CTLR, 2),
            (reg::CTLR, 8),
            (reg::ISENABLER, 1),
            (reg::IPRIORITYR, 2),
            (reg::IPRIORITYR + 1, 4),
            (reg::CTLR, 0),
            (0x00c, 4),
            (0xf04, 4),
            (FRAME_SIZE, 4),
            (u64::MAX, 1),
        ] {
            assert!(
                matches!(d.access(offset, width, Some(1)), Access::Ignored(_)),
                "{offset:#x}/{width}"
            );
            assert_eq!(read(&mut d, offset, width).value(), 0);
        }
        assert!(!d.is_on());
    }

    #[test]
    fn take_deliverable_needs_on_and_enabled() {
        let mut d = Distributor::new();
        d.set_pending(48);
        d.set_pending(27);
        assert_eq!(d.take_deliverable(|_| true), None);
        d.access(reg::CTLR, 4, Some(1));
        assert_eq!(d.take_deliverable(|_| true), None);
        d.access(reg::ISENABLER, 4, Some(1 << 27));
        d.access(reg::ISENABLER + 4, 4, Some(1 << 16));
        assert_eq!(d.take_deliverable(|irq| irq != 48), Some(27));
        assert_eq!(d.take_deliverable(|_| true), Some(48));
        assert_eq!(d.take_deliverable(|_| true), None);
        assert!(d.pending().is_empty());
    }
}
