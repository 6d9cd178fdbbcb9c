// SPDX-License-Identifier: BSD-2-Clause
//! The timer PD (the N-VM system): owns core 0's EL1 physical timer (PPI
//! 30, one per core, exported to user level by seL4) and multiplexes it
//! for every VMM's idle wake-ups, on whichever core the VMM runs (the
//! counter is the same on every core; a notification crosses cores). A VMM whose guest idles at `wfi` calls
//! `SET` with the guest's virtual-timer deadline (or `CANCEL`); when a
//! deadline passes, this PD notifies that VMM, which resumes its vCPU.
//! Above the VMMs that call it; passive on one core, with a scheduling
//! context of its own on SMP (a VMM on another core calls it). Glue only: the deadlines and the
//! wire protocol are `timer_mux`.
//!
//! Client n is VMM n on channel n (guest_ram_sdf.linux's convention).
#![no_std]
#![no_main]

use common::el1_timer;
use sel4_microkit::{
    protection_domain, var, with_msg_regs, Channel, ChannelSet, Handler, Infallible, MessageInfo,
};
use timer_mux::protocol;
use timer_mux::{Deadlines, Program};

/// VMMs served: guest_ram_sdf.linux's MAX_VMS.
const CLIENTS: usize = 4;

struct Timer {
    deadlines: Deadlines<CLIENTS>,
    irq: Channel,
}

fn program(p: Program) {
    match p {
        Program::At(at) => el1_timer::arm(at),
        Program::Off => el1_timer::disarm(),
    }
}

#[protection_domain]
fn init() -> Timer {
    common::init_logging(log::LevelFilter::Info);
    el1_timer::disarm();
    Timer {
        deadlines: Deadlines::new(),
        irq: Channel::new(*var!(timer_irq_channel: usize = 8)),
    }
}

impl Handler for Timer {
    type Error = Infallible;

    fn protected(
        &mut self,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, Self::Error> {
        // decode refuses a request of the wrong length (BadLength).
        let result = with_msg_regs(|regs| {
            let words = regs.get(..info.count()).unwrap_or(regs);
            self.deadlines.handle(channel.index(), info.label(), words)
        });
        if let Ok(p) = result {
            program(p);
        }
        Ok(MessageInfo::new(protocol::reply_label(&result), 0))
    }

    fn notified(&mut self, set: ChannelSet) -> Result<(), Self::Error> {
        if set.contains(self.irq) {
            let (now, _) = common::counter();
            let p = self
                .deadlines
                .fired(now, |client| Channel::new(client).notify());
            program(p);
            if self.irq.irq_ack().is_err() {
                log::error!("timer: acknowledging PPI 30 failed");
            }
        }
        Ok(())
    }
}
