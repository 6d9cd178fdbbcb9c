// SPDX-License-Identifier: BSD-2-Clause
//! Which of the vCPU's list registers holds which interrupt.
//!
//! seL4's `InjectIRQ` writes the list register the VMM names. It refuses
//! one that holds an *active* interrupt, but silently overwrites one that
//! holds a *pending* one: the interrupt in it is lost. seL4 writes every
//! list register with EOI maintenance on, so the guest's end of interrupt
//! raises a `VGICMaintenance` fault naming the register, and only then is
//! it free. This table is the VMM's record of that: a register is taken
//! from [`take`](ListRegisters::take) until [`free`](ListRegisters::free).
//!
//! `LRS` is the hardware's number of list registers (one more than
//! `GICH_VTR.ListRegs`: 4 on QEMU and on Cortex-A53/A72 systems). Every
//! operation is `O(LRS)`.
//!
//! ```
//! use vgic::lr::{Injection, ListRegisters};
//! let mut lrs = ListRegisters::<2>::new();
//! assert_eq!(lrs.take(27), Some(Injection { irq: 27, lr: 0 }));
//! assert_eq!(lrs.take(48), Some(Injection { irq: 48, lr: 1 }));
//! assert_eq!(lrs.take(33), None); // both busy
//! assert_eq!(lrs.free(0), Some(27));
//! assert_eq!(lrs.free(0), None); // already free
//! ```

/// An interrupt to put into a list register with `InjectIRQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// The virtual interrupt id.
    pub irq: u16,
    /// The list register, free until now.
    pub lr: u8,
}

/// The occupancy of `LRS` list registers.
#[derive(Clone, Debug)]
pub struct ListRegisters<const LRS: usize> {
    held: [Option<u16>; LRS],
}

impl<const LRS: usize> Default for ListRegisters<LRS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LRS: usize> ListRegisters<LRS> {
    /// All free. `LRS` above 64 (GICv2's maximum) leaves the rest unused.
    pub const fn new() -> Self {
        ListRegisters { held: [None; LRS] }
    }

    /// Whether a list register is free.
    pub fn has_free(&self) -> bool {
        self.usable().iter().any(Option::is_none)
    }

    /// Whether some list register holds `irq`.
    pub fn holds(&self, irq: u16) -> bool {
        self.held.contains(&Some(irq))
    }

    /// What list register `lr` holds.
    pub fn get(&self, lr: u8) -> Option<u16> {
        self.held.get(usize::from(lr)).copied().flatten()
    }

    /// Takes the lowest free list register for `irq`; `None` if all are
    /// busy, or if one already holds `irq` (an interrupt is in at most
    /// one list register: the architecture leaves two UNPREDICTABLE).
    pub fn take(&mut self, irq: u16) -> Option<Injection> {
        if self.holds(irq) {
            return None;
        }
        let lr = self.usable().iter().position(Option::is_none)?;
        let slot = self.held.get_mut(lr)?;
        *slot = Some(irq);
        Some(Injection {
            irq,
            lr: u8::try_from(lr).ok()?,
        })
    }

    /// Frees list register `lr`: the interrupt it held, if any.
    pub fn free(&mut self, lr: u8) -> Option<u16> {
        self.held.get_mut(usize::from(lr))?.take()
    }

    /// The registers an `InjectIRQ` index (a `u8`, at most 64 in GICv2)
    /// can name.
    fn usable(&self) -> &[Option<u16>] {
        &self.held[..LRS.min(64)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first_and_no_duplicates() {
        let mut lrs = ListRegisters::<4>::new();
        assert_eq!(lrs.take(27).map(|i| i.lr), Some(0));
        assert_eq!(lrs.take(27), None);
        assert_eq!(lrs.take(48).map(|i| i.lr), Some(1));
        assert_eq!(lrs.free(0), Some(27));
        assert_eq!(lrs.take(33).map(|i| i.lr), Some(0));
        assert_eq!(lrs.get(0), Some(33));
        assert_eq!(lrs.get(200), None);
        assert_eq!(lrs.free(200), None);
    }

    #[test]
    fn zero_list_registers_inject_nothing() {
        let mut lrs = ListRegisters::<0>::new();
        assert!(!lrs.has_free());
        assert_eq!(lrs.take(1), None);
        assert_eq!(lrs.free(0), None);
    }
}
