//! The VMM PD: owns guest RAM (pre-mapped by `system.xml`), keeps its
//! bookkeeping, and serves copies to client PDs over PPC. Glue only: the
//! bookkeeping is `GuestRam`, the request handling `Server::handle`.
#![no_std]
#![no_main]

use common::{channels, BUFFER_SIZE, LAYOUT};
use guest_ram::server::{ClientConfig, Server};
use guest_ram::{GuestRam, MappedRegion, SharedBuffer};
use sel4_microkit::{
    memory_region_symbol, protection_domain, with_msg_regs_mut, Channel, Handler, Infallible,
    MessageInfo,
};

/// One backing region; up to 64 RAM extents.
type Ram = GuestRam<1, 64>;

const KERNEL_SIZE: u64 = 2 << 20;
const DTB_SIZE: u64 = 64 << 10;
const INITRD_SIZE: u64 = 1 << 20;

struct Vmm {
    ram: Ram,
    server: Server<2>,
}

#[protection_domain]
fn init() -> Vmm {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps these regions into this PD for its whole
    // life, at the addresses the microkit tool writes into these symbols.
    let (region, selftest_buffer, guest_view_buffer) = unsafe {
        (
            MappedRegion::new(
                LAYOUT.gpa,
                memory_region_symbol!(guest_ram_vaddr: *mut u8),
                LAYOUT.size,
            ),
            SharedBuffer::new(
                memory_region_symbol!(selftest_buffer_vaddr: *mut u8),
                BUFFER_SIZE,
            ),
            SharedBuffer::new(
                memory_region_symbol!(guest_view_buffer_vaddr: *mut u8),
                BUFFER_SIZE,
            ),
        )
    };
    let mut ram = Ram::new(&[region]).expect("guest RAM backing");

    // What a VMM does before it starts a guest: declare RAM, place the
    // kernel where the guest expects it, find room for the rest.
    ram.register_at(LAYOUT.gpa, LAYOUT.ram_len())
        .expect("register guest RAM");
    ram.mark_allocated(LAYOUT.gpa, KERNEL_SIZE)
        .expect("kernel image");
    let dtb = ram.allocate_aligned(DTB_SIZE, 0x1000).expect("device tree");
    let initrd = ram.allocate_aligned(INITRD_SIZE, 2 << 20).expect("initrd");
    log::info!(
        "guest-ram: kernel at {:#x}, dtb at {dtb:#x}, initrd at {initrd:#x}",
        LAYOUT.gpa
    );
    for extent in ram.extents() {
        let r = extent.range;
        let state = if extent.allocated {
            "allocated"
        } else {
            "free"
        };
        log::info!("guest-ram: {:#x}..{:#x} {state}", r.gpa, r.gpa + r.len);
    }
    if let Ok(largest) = ram.find_largest_free_region() {
        log::info!(
            "guest-ram: largest free region {:#x} ({} KiB)",
            largest.gpa,
            largest.len >> 10
        );
    }

    let mut server = Server::new();
    let clients = [
        ClientConfig::new(
            channels::VMM_SELFTEST,
            selftest_buffer,
            &LAYOUT.selftest_windows(),
        ),
        ClientConfig::new(
            channels::VMM_GUEST_VIEW,
            guest_view_buffer,
            &LAYOUT.guest_view_windows(),
        ),
    ];
    for client in clients {
        server
            .add_client(client.expect("client windows"))
            .expect("client table");
    }
    log::info!("guest-ram: serving 2 clients");
    Vmm { ram, server }
}

impl Handler for Vmm {
    type Error = Infallible;

    fn protected(
        &mut self,
        channel: Channel,
        msg_info: MessageInfo,
    ) -> Result<MessageInfo, Self::Error> {
        let (label, words) = with_msg_regs_mut(|regs| {
            self.server.handle(
                &self.ram,
                channel.index(),
                msg_info.label(),
                msg_info.count(),
                regs,
            )
        });
        Ok(MessageInfo::new(label, words))
    }
}
