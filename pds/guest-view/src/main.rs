// SPDX-License-Identifier: BSD-2-Clause
//! A client PD that also sees guest RAM the way the guest does: mapped
//! read-only at its guest-physical address. Asked by the self-test, it
//! checks that a pattern written through the VMM is at the right gpa, both
//! in its own mapping and through its read-only window over PPC.
#![allow(
    unsafe_code,
    reason = "maps guest RAM (read-only) and its buffer, as system.xml gives them"
)]
#![no_std]
#![no_main]

use common::{Ppc, LAYOUT};
use guest_ram::client::Client;
use guest_ram::{selftest, MappedRegion, ReadOnly, SharedBuffer};
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, with_msg_regs, Channel, Handler, Infallible,
    MessageInfo,
};

struct GuestView {
    /// This PD's own (guest-like) mapping of guest RAM, read-only.
    ram: MappedRegion<ReadOnly>,
    client: Client<Ppc>,
}

#[protection_domain]
fn init() -> GuestView {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps both regions here for the PD's whole life,
    // guest RAM read-only (`perms="r"`), the buffer read-write.
    let (region, buffer) = unsafe {
        (
            MappedRegion::new_read_only(
                LAYOUT.gpa,
                memory_region_symbol!(guest_ram_vaddr: *mut u8),
                *var!(guest_ram_size: usize = 0) as u64,
            ),
            SharedBuffer::new(
                memory_region_symbol!(buffer_vaddr: *mut u8),
                *var!(buffer_size: usize = 0),
            ),
        )
    };
    let vaddr = region.vaddr().as_ptr() as u64;
    assert_eq!(
        vaddr, LAYOUT.gpa,
        "system.xml must map guest RAM at its gpa here"
    );
    GuestView {
        ram: region,
        client: Client::new(Ppc(Channel::new(*var!(vmm_channel: usize = 0))), buffer),
    }
}

impl Handler for GuestView {
    type Error = Infallible;

    fn protected(&mut self, _: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        let [gpa, len, seed] = with_msg_regs(|regs| [regs[0], regs[1], regs[2]]);
        let ok = msg_info.count() == 3 && seed <= u64::from(u8::MAX) && {
            let seed = seed as u8;
            let mut scratch = [0u8; 0x800];
            let ram = &self.ram;
            let client = &mut self.client;
            selftest::verify(gpa, len, seed, &mut scratch, |g, b| ram.read(g, b).is_ok())
                && selftest::verify(gpa, len, seed, &mut scratch, |g, b| {
                    client.read(g, b).is_ok()
                })
        };
        Ok(MessageInfo::new(u64::from(ok), 0))
    }
}
