// SPDX-License-Identifier: BSD-2-Clause
//! The virtio-blk driver PD: serves the guest's virtqueue from a RAM disk,
//! moving every byte of guest memory through guest-ram's copy service. It
//! never maps guest RAM. Glue only: the queue walking and request handling
//! are `virtio::device::BlkService`.
#![no_std]
#![no_main]

use common::{counter, CountingPpc, Ppc};
use guest_ram::client::Client;
use guest_ram::SharedBuffer;
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, Channel, ChannelSet, Handler, Infallible,
};
use virtio::blk::RamDisk;
use virtio::device::BlkService;

struct Blk {
    vmm: Channel,
    /// Batches of at least 1 MiB served so far.
    large: u64,
    client: Client<CountingPpc>,
    service: BlkService<RamDisk>,
}

#[protection_domain]
fn init() -> Blk {
    common::init_logging(log::LevelFilter::Info);
    // SAFETY: `system.xml` maps these regions here, read-write, for the
    // PD's whole life, and nothing in this PD takes references into them.
    let (buffer, page, disk) = unsafe {
        (
            SharedBuffer::new(
                memory_region_symbol!(buffer_vaddr: *mut u8),
                *var!(buffer_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(device_vaddr: *mut u8),
                *var!(device_size: usize = 0),
            ),
            SharedBuffer::new(
                memory_region_symbol!(disk_vaddr: *mut u8),
                *var!(disk_size: usize = 0),
            ),
        )
    };
    // The baseline for the device path's figure: 1 MiB copied locally,
    // RAM disk → shared buffer, a buffer-full at a time.
    let (start, hz) = counter();
    let piece = buffer.len().min(disk.len()).max(1);
    for offset in (0..disk.len()).step_by(piece) {
        let _ = buffer.copy_from(0, &disk, offset, piece.min(disk.len() - offset));
    }
    let (end, _) = counter();
    log::info!(
        "blk: local copy of {} KiB: {} ticks at {hz} Hz ({} us)",
        disk.len() >> 10,
        end - start,
        (end - start) * 1_000_000 / hz.max(1)
    );
    let vmm = Channel::new(*var!(vmm_channel: usize = 0));
    Blk {
        vmm,
        large: 0,
        client: Client::new(
            CountingPpc {
                ppc: Ppc(vmm),
                calls: 0,
            },
            buffer,
        ),
        service: BlkService::new(page, RamDisk::new(disk)),
    }
}

impl Handler for Blk {
    type Error = Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        if !channels.contains(self.vmm) {
            return Ok(());
        }
        let before = (self.client_calls(), self.service.stats());
        let (start, hz) = counter();
        let signal = self.service.notified(&mut self.client);
        let (end, _) = counter();
        if signal {
            self.vmm.notify();
        }
        let (calls, stats) = (self.client_calls(), self.service.stats());
        let bytes = stats.bytes - before.1.bytes;
        if bytes >= 1 << 20 {
            self.large += 1;
        }
        // The first few megabyte batches, then every power-of-two-th: a
        // Linux guest's streaming I/O would otherwise flood the console.
        if bytes >= 1 << 20 && (self.large <= 4 || self.large.is_power_of_two()) {
            let ppcs = calls - before.0;
            log::info!(
                "blk: {} request(s), {bytes} bytes in {ppcs} PPCs ({} bytes/PPC), {} ticks ({} us)",
                stats.requests - before.1.requests,
                bytes / ppcs.max(1),
                end - start,
                (end - start) * 1_000_000 / hz.max(1)
            );
            log::info!(
                "blk: so far {} requests ({} failed), {} PPCs: {}.{:02} PPCs per request",
                stats.requests,
                stats.failed,
                calls,
                calls / stats.requests.max(1),
                calls * 100 / stats.requests.max(1) % 100
            );
        }
        Ok(())
    }
}

impl Blk {
    fn client_calls(&mut self) -> u64 {
        self.client.transport().calls
    }
}
