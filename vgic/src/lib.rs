// SPDX-License-Identifier: BSD-2-Clause
//! A virtual GICv2 for a Microkit VMM whose guest has one vCPU.
//!
//! On Arm, seL4 gives a VMM the hardware's virtual CPU interface (the GICV
//! frame, mapped into the guest as its GICC) and a way to put an interrupt
//! into one of the vCPU's list registers (`seL4_ARM_VCPU_InjectIRQ`). The
//! rest is the VMM's:
//!
//! - [`dist`]: the distributor (GICD), which the guest programs through
//!   trapped loads and stores: enables, pending and active bits,
//!   priorities, targets, trigger modes, software-generated interrupts.
//! - [`lr`]: which list register holds which interrupt. seL4 silently
//!   overwrites a list register that still holds a *pending* interrupt, so
//!   the VMM must never hand it one it believes busy; interrupts that find
//!   every list register busy wait in a FIFO queue.
//!
//! [`VGic`] ties them together. The glue calls [`VGic::raise`] when a line
//! fires (a VPPI event, a device, a forwarded hardware IRQ),
//! [`VGic::eoi`] on each `VGICMaintenance` fault, [`VGic::mmio`] on each
//! trapped distributor access, and after any of them drains
//! [`VGic::next_injection`] into `InjectIRQ`.
//!
//! ```
//! use vgic::{dist, Injection, VGic};
//! let mut gic = VGic::<4>::new();
//! // The guest enables the distributor and SPI 16 (INTID 48).
//! gic.mmio(dist::reg::CTLR, 4, Some(1));
//! gic.mmio(dist::reg::ISENABLER + 4, 4, Some(1 << 16));
//! gic.raise(48).unwrap();
//! assert_eq!(gic.next_injection(), Some(Injection { irq: 48, lr: 0 }));
//! assert_eq!(gic.next_injection(), None);
//! // The guest's EOI frees list register 0 (a maintenance fault).
//! assert_eq!(gic.eoi(0), Some(48));
//! ```
//!
//! `#![no_std]`, no allocation, no panics on guest input: every access the
//! guest makes gets a defined answer.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod dist;
pub mod lr;

pub use dist::{Access, Distributor, NUM_IRQS};
pub use lr::{Injection, ListRegisters};

use core::fmt;

/// An interrupt id the vGIC does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIrq(pub u64);

impl fmt::Display for BadIrq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupt {} is not one of the vGIC's {NUM_IRQS}",
            self.0
        )
    }
}

/// The distributor and `LRS` list registers of one vCPU.
pub struct VGic<const LRS: usize> {
    dist: Distributor,
    lrs: ListRegisters<LRS>,
}

impl<const LRS: usize> Default for VGic<LRS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const LRS: usize> VGic<LRS> {
    /// A vGIC in its reset state: distributor off, every interrupt
    /// disabled, every list register free.
    pub const fn new() -> Self {
        VGic {
            dist: Distributor::new(),
            lrs: ListRegisters::new(),
        }
    }

    /// The distributor.
    pub fn distributor(&self) -> &Distributor {
        &self.dist
    }

    /// The list-register bookkeeping.
    pub fn list_registers(&self) -> &ListRegisters<LRS> {
        &self.lrs
    }

    /// Interrupt `irq`'s line fired: it becomes pending, and is injected
    /// (by [`next_injection`](Self::next_injection)) once the guest has it
    /// enabled and a list register is free. Raising an interrupt that is
    /// already pending or in a list register leaves one more delivery
    /// owed, as an edge would.
    pub fn raise(&mut self, irq: u64) -> Result<(), BadIrq> {
        let irq = u16::try_from(irq)
            .ok()
            .filter(|irq| usize::from(*irq) < NUM_IRQS)
            .ok_or(BadIrq(irq))?;
        self.dist.set_pending(irq);
        Ok(())
    }

    /// The next interrupt to put into a list register, if one is pending,
    /// enabled (and the distributor on) and a list register is free; the
    /// list register is then taken, and the interrupt no longer pending.
    /// Oldest raised first among the deliverable ones.
    pub fn next_injection(&mut self) -> Option<Injection> {
        if !self.lrs.has_free() {
            return None;
        }
        let irq = self.dist.take_deliverable(|irq| !self.lrs.holds(irq))?;
        let injection = self.lrs.take(irq);
        if injection.is_none() {
            // Not reached (a free list register was checked above); keep
            // the interrupt rather than lose it.
            self.dist.set_pending(irq);
        }
        injection
    }

    /// `InjectIRQ` failed for `injection`: the list register is free again
    /// and the interrupt pending, to be tried at the next drain.
    pub fn injection_failed(&mut self, injection: Injection) {
        self.lrs.free(injection.lr);
        self.dist.set_pending(injection.irq);
    }

    /// Whether nothing would wake a `wfi` now: no list register holds an
    /// interrupt and none is pending that the guest has enabled (with the
    /// distributor on). A VMM may then stop the vCPU until an interrupt
    /// arrives.
    ///
    /// ```
    /// use vgic::{dist, VGic};
    /// let mut gic = VGic::<4>::new();
    /// gic.raise(48).unwrap();
    /// assert!(gic.is_quiet()); // pending, but not enabled
    /// gic.mmio(dist::reg::CTLR, 4, Some(1));
    /// gic.mmio(dist::reg::ISENABLER + 4, 4, Some(1 << 16));
    /// assert!(!gic.is_quiet());
    /// ```
    pub fn is_quiet(&self) -> bool {
        let held = (0..=u8::MAX).take(LRS).any(|lr| self.lrs.get(lr).is_some());
        let deliverable = self.dist.is_on()
            && self
                .dist
                .pending()
                .iter()
                .any(|irq| self.dist.is_enabled(*irq));
        !held && !deliverable
    }

    /// The guest's end of interrupt for list register `lr` (a
    /// `VGICMaintenance` fault): the list register is free. Returns the
    /// interrupt it held, which the glue acknowledges at its source (a
    /// VPPI, a forwarded hardware IRQ); `None` if `lr` held nothing.
    pub fn eoi(&mut self, lr: u64) -> Option<u16> {
        let lr = u8::try_from(lr).ok()?;
        self.lrs.free(lr)
    }

    /// A trapped distributor access at `offset` (from the distributor's
    /// base) of `width` bytes: a load when `write` is `None`. See
    /// [`Distributor::access`].
    pub fn mmio(&mut self, offset: u64, width: u8, write: Option<u32>) -> Access {
        self.dist.access(offset, width, write)
    }
}
