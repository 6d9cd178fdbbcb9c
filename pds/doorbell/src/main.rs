// SPDX-License-Identifier: BSD-2-Clause
//! The VMM's doorbell: notified by the VMM, it notifies the VMM back.
//!
//! The VMM is passive, so it runs a guest fault on the faulting vCPU's
//! scheduling context and must not suspend that vCPU from the fault
//! handler (seL4 would hand the scheduling context back to the vCPU and
//! leave the VMM mid-handler with none). To stop the vCPU, the handler
//! rings this PD and replies; this PD runs next (its priority is above the
//! guest's) and rings back, and the VMM suspends the vCPU in `notified`,
//! on its notification's scheduling context, before the vCPU runs.
//! A channel from the VMM to itself would do without this PD, but a
//! Microkit channel connects two PDs.
#![no_std]
#![no_main]

use core::convert::Infallible;

use sel4_microkit::{protection_domain, var, Channel, ChannelSet, Handler};

struct Doorbell {
    vmm: Channel,
}

#[protection_domain]
fn init() -> Doorbell {
    Doorbell {
        vmm: Channel::new(*var!(vmm_channel: usize = 0)),
    }
}

impl Handler for Doorbell {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        if channels.contains(self.vmm) {
            self.vmm.notify();
        }
        Ok(())
    }
}
