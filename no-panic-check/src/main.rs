// SPDX-License-Identifier: BSD-2-Clause
//! The "never panics" promise, checked by the linker (the technique of
//! Hubris's userlib): this program calls every entry point that a client
//! PD or a guest drives, with inputs the optimiser cannot see
//! (`black_box`), and its panic handler calls a function that does not
//! exist. Built with optimisation and `panic = "abort"`, it links only if
//! the optimiser removed every path to a panic; otherwise ld.lld fails
//! with `undefined symbol: guest_ram_panic_is_reachable` and names the
//! caller.
//!
//! It is never run: the addresses it hands out are made up.
#![allow(
    unsafe_code,
    reason = "declares the undefined panic symbol and fake mappings for a program that is linked, never run"
)]
#![no_std]
#![no_main]

use core::hint::black_box;
use core::ptr::NonNull;

use guest_ram::client::{Client, Placed, Transport};
use guest_ram::protocol::MSG_WORDS;
use guest_ram::server::{ClientConfig, Server, Window};
use guest_ram::{GpaRange, GuestRam, MappedRegion, SharedBuffer};
use linux_boot::fdt;
use net_switch::{Config, Mac, Pairs, PortRouter, PortSet, Switch};
use serial_mux::{Input, Output, PowerTracker};
use timer_mux::Deadlines;
use vcpu_fault::{esr, hvc, psci, trap};
use vgic::VGic;
use virtio::blk::RamDisk;
use virtio::console::{ConsoleFrontend, ConsoleService, ConsoleSink};
use virtio::device::{BlkFrontend, BlkService};
use virtio::net::{Burst, NetFrontend, NetService, Router};

extern "C" {
    /// Deliberately undefined: referencing it is the failure.
    fn guest_ram_panic_is_reachable() -> !;
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: never called in a program that links.
    unsafe { guest_ram_panic_is_reachable() }
}

fn word() -> u64 {
    black_box(0)
}

fn buffer(len: usize) -> SharedBuffer {
    // SAFETY: never run (see the module docs).
    unsafe { SharedBuffer::new(black_box(NonNull::dangling()), black_box(len)) }
}

/// A transport whose replies the optimiser cannot predict: a hostile VMM.
struct Opaque;

impl Transport for Opaque {
    fn call(&mut self, _: u64, _: usize, msg: &mut [u64; MSG_WORDS]) -> (u64, usize) {
        for w in msg.iter_mut() {
            *w = word();
        }
        (word(), word() as usize)
    }
}

/// A router whose answers the optimiser cannot predict.
impl Router for Opaque {
    fn must_peek(&self) -> bool {
        word() & 1 != 0
    }
    fn route(&mut self, _: usize, head: Option<&[u8]>) -> u8 {
        black_box(head);
        word() as u8
    }
}

/// A UART buffer whose room the optimiser cannot predict.
struct OpaqueSink;

impl ConsoleSink for OpaqueSink {
    fn room(&self) -> usize {
        word() as usize
    }
    fn capacity(&self) -> usize {
        word() as usize
    }
    fn write(&mut self, bytes: &[u8]) {
        black_box(bytes);
    }
}

/// A block device whose answers the optimiser cannot predict.
struct OpaqueDevice;

impl blk_queue::driver::BlockDevice for OpaqueDevice {
    fn start(
        &mut self,
        _: usize,
        _: blk_queue::Code,
        _: &blk_queue::Transfer,
    ) -> Result<(), blk_queue::Status> {
        if word() == 0 {
            Ok(())
        } else {
            Err(blk_queue::Status::Unknown(word() as u32))
        }
    }
    fn poll(&mut self) -> Option<(usize, blk_queue::Status)> {
        (word() == 0).then(|| (word() as usize, blk_queue::Status::Unknown(word() as u32)))
    }
}

/// A driver PD that may or may not answer.
struct OpaqueDoorbell;

impl blk_queue::disk::Doorbell for OpaqueDoorbell {
    fn ring(&mut self) {
        black_box(());
    }
}

#[no_mangle]
extern "C" fn _start() -> ! {
    // SAFETY: never run (see the module docs).
    let regions: [MappedRegion; 2] = core::array::from_fn(|_| unsafe {
        MappedRegion::new(word(), black_box(NonNull::dangling()), word())
    });
    let Ok(mut ram) = GuestRam::<2, 64>::new(&regions) else {
        loop {}
    };
    // The bookkeeping a VMM drives.
    let _ = black_box(ram.register_at(word(), word()));
    let _ = black_box(ram.register(word()));
    let _ = black_box(ram.mark_allocated(word(), word()));
    let _ = black_box(ram.allocate_aligned(word(), word()));
    let _ = black_box(ram.free(word(), word()));
    let _ = black_box(ram.find_largest_free_region());
    let _ = black_box(ram.translate(word(), word()));
    let _ = black_box(ram.touch(word(), word(), |c| {
        black_box(c.len);
        black_box(Ok::<(), ()>(()))
    }));

    // The copy service, with a hostile client's registers.
    let mut server = Server::<2>::new();
    let windows = [Window::read_write(word(), word())];
    if let Ok(config) = ClientConfig::new(word() as usize, buffer(word() as usize), &windows) {
        let _ = server.add_client(config);
    }
    let mut regs = [0u64; MSG_WORDS];
    for r in regs.iter_mut() {
        *r = word();
    }
    let reply = server.handle(&ram, word() as usize, word(), word() as usize, &mut regs);
    black_box((reply, regs));

    // A guest's faults and register accesses.
    if let Ok(access) = esr::decode_data_abort(word(), word()) {
        black_box((access.load_value(word()), access.store_value(word())));
    }
    let x: [u64; 8] = core::array::from_fn(|_| word());
    let _ = black_box(hvc::decode(&x));
    let mut frontend = BlkFrontend::new(buffer(word() as usize));
    // With a register page (any length: a short one is refused).
    if word() != 0 {
        let _ = black_box(frontend.set_register_page(buffer(word() as usize)));
    }
    black_box(frontend.access(word(), word() as u8, Some(word())));
    black_box(frontend.access(word(), word() as u8, None));
    if let Ok(access) = esr::decode_data_abort(word(), word()) {
        black_box(frontend.emulate(word(), &access, word()));
    }
    frontend.backend_signalled();
    black_box(frontend.reset());
    black_box(frontend.backend_may_copy());
    let mut console = ConsoleFrontend::new(buffer(word() as usize));
    black_box(console.access(word(), word() as u8, Some(word())));
    black_box(console.access(word(), word() as u8, None));
    if let Ok(access) = esr::decode_data_abort(word(), word()) {
        black_box(console.emulate(word(), &access, word()));
    }
    console.backend_signalled();
    black_box(console.reset());
    let mut nic = NetFrontend::new(buffer(word() as usize), [word() as u8; 6]);
    if word() != 0 {
        let _ = black_box(nic.set_register_page(buffer(word() as usize)));
    }
    black_box(nic.access(word(), word() as u8, Some(word())));
    black_box(nic.access(word(), word() as u8, None));
    if let Ok(access) = esr::decode_data_abort(word(), word()) {
        black_box(nic.emulate(word(), &access, word()));
    }
    nic.backend_signalled();
    black_box(nic.reset());
    black_box(trap::decode(word()));
    black_box(psci::call(word(), word(), word(), word()));

    // The guest's interrupt controller.
    let mut gic = VGic::<4>::new();
    black_box(gic.mmio(word(), word() as u8, Some(word() as u32)));
    black_box(gic.mmio(word(), word() as u8, None));
    let _ = black_box(gic.raise(word()));
    black_box(gic.eoi(word()));
    black_box(gic.is_quiet());
    black_box(trap::vtimer_deadline(word(), word(), word()));
    while let Some(injection) = gic.next_injection() {
        if word() == 0 {
            gic.injection_failed(injection);
        }
        black_box(injection);
    }

    // Loading Linux: a header, a device tree and a placement the VMM's
    // user supplies.
    let mut blob = [0u8; 256];
    for b in blob.iter_mut() {
        *b = word() as u8;
    }
    if let Ok(tree) = fdt::Fdt::new(&blob) {
        let _ = black_box(tree.reg("/memory"));
        let _ = black_box(tree.u64_property("/chosen", "linux,initrd-start"));
    }
    let _ = black_box(fdt::set_u64(
        &mut blob,
        "/chosen",
        "linux,initrd-end",
        word(),
    ));
    let memory = GpaRange {
        gpa: word(),
        len: word(),
    };
    // The boot bundle a boot loader left in memory, split as the VMM does.
    let bundle = buffer(word() as usize);
    let _ = black_box(linux_boot::Bundle::split(&bundle));
    let loaded = linux_boot::load(
        &mut ram,
        memory,
        &buffer(word() as usize),
        word(),
        &buffer(word() as usize),
        word(),
        &mut blob,
    );
    if let Ok(layout) = loaded {
        let _ = black_box(linux_boot::load::agrees(&blob, &layout));
        let _ = black_box(linux_boot::load::unload(&mut ram, &layout));
    }

    // The blk PD: the guest's rings through a client whose VMM lies.
    let mut client = Client::new(Opaque, buffer(word() as usize));
    let mut dst = [0u8; 64];
    let _ = black_box(client.read(word(), &mut dst));
    let _ = black_box(client.write(word(), &dst));
    let segments = [GpaRange {
        gpa: word(),
        len: word(),
    }; 3];
    let _ = black_box(client.readv(&segments, &mut dst));
    let _ = black_box(client.readv_in_place(&segments));
    let _ = black_box(client.info());
    let mut service = BlkService::new(
        buffer(word() as usize),
        RamDisk::new(buffer(word() as usize)),
    );
    black_box(service.notified(&mut client));
    // The serial PD: a guest's console rings through the same client.
    let mut serial = ConsoleService::new(buffer(word() as usize));
    black_box(serial.transmit(&mut client, &mut OpaqueSink));
    let input = [0u8; 64];
    let len = (word() as usize).min(input.len());
    black_box(serial.receive(&mut client, input.get(..len).unwrap_or(&[])));
    black_box(serial.stats());
    // The net PD: a guest's virtio-net rings through the same client, a
    // burst buffer of any size, frames of any length to receive.
    let mut port = NetService::new(buffer(word() as usize));
    let mut burst_memory = [0u8; 4096];
    let burst_len = (word() as usize).min(burst_memory.len());
    let mut burst = Burst::new(burst_memory.get_mut(..burst_len).unwrap_or(&mut []));
    black_box(port.transmit(&mut client, &mut burst));
    for frame in burst.frames() {
        black_box(frame);
    }
    black_box(burst.slices().len());
    burst.clear();
    let frame = [0u8; 64].map(|_| word() as u8);
    let frame_len = (word() as usize).min(frame.len());
    let frames: [&[u8]; 2] = [frame.get(..frame_len).unwrap_or(&[]), &frame];
    // Staged in the caller's area, of any size.
    let mut staging = [0u8; 4096];
    let staging_len = (word() as usize).min(staging.len());
    black_box(port.receive(
        &mut client,
        frames.get(..word() as usize).unwrap_or(&frames),
        staging.get_mut(..staging_len).unwrap_or(&mut []),
    ));
    // The two-copy path: frames routed into areas of any size by a
    // router that answers anything, and received from where they lie.
    let mut area_a = [0u8; 2048];
    let mut area_b = [0u8; 2048];
    let (len_a, len_b) = ((word() as usize).min(2048), (word() as usize).min(2048));
    let mut router = Opaque;
    {
        let mut areas = [
            Burst::new(area_a.get_mut(..len_a).unwrap_or(&mut [])),
            Burst::new(area_b.get_mut(..len_b).unwrap_or(&mut [])),
        ];
        black_box(port.transmit_routed(&mut client, &mut router, &mut areas));
        black_box(areas[0].spans().len());
    }
    let spans = [(word() as usize, word() as usize); 2];
    black_box(port.receive_placed(
        &mut client,
        area_a.get_mut(..len_a).unwrap_or(&mut []),
        spans.get(..word() as usize).unwrap_or(&spans),
    ));
    black_box(port.stats());
    // The one-copy path: the disk in the client's shared buffer, a
    // staging area after it, placed transfers.
    if let Ok(mut staged) = Client::with_staging(
        Opaque,
        buffer(word() as usize),
        word() as usize,
        word() as usize,
    ) {
        let placed = [Placed {
            range: segments[0],
            buffer_offset: word(),
        }; 2];
        let _ = black_box(staged.readv_placed(&placed));
        let _ = black_box(staged.writev_placed(&placed));
        let _ = black_box(staged.readv_at(&segments, word()));
        let _ = black_box(staged.writev_at(&segments, word()));
        let mut one_copy = BlkService::new(
            buffer(word() as usize),
            RamDisk::in_buffer(buffer(word() as usize), word()),
        );
        black_box(one_copy.notified(&mut staged));
    }

    // The serial PD: guests' console output, keyboard input, power-offs.
    let mut console = Output::<3, 256>::new();
    let mut uart = |bytes: &[u8]| {
        black_box(bytes);
    };
    let guest_bytes = [0u8; 64].map(|_| word() as u8);
    let vm = word() as usize;
    let len = word() as usize;
    let _ = black_box(console.push(vm, guest_bytes.get(..len).unwrap_or(&[]), &mut uart));
    let _ = black_box(console.push(vm, &guest_bytes, &mut uart));
    let _ = black_box(console.flush(vm, &mut uart));
    let _ = black_box((console.held(vm), console.bytes(vm), console.lines(vm)));
    let mut keyboard = Input::<3, 128>::new();
    black_box(keyboard.input(word() as u8));
    let _ = black_box(keyboard.focus_on(vm));
    if let Ok((a, b)) = keyboard.pending(vm) {
        black_box((a, b));
    }
    let _ = black_box(keyboard.consume(vm, len));
    let _ = black_box(keyboard.dropped(vm));
    let mut power = PowerTracker::<3>::new();
    let _ = black_box(power.powered_off(vm));
    let _ = black_box(power.restarted(vm));
    black_box(power.all_off());

    // The timer PD: a VMM's request, and the timer firing.
    let mut timer = Deadlines::<4>::new();
    let words = x.get(..word() as usize).unwrap_or(&x);
    let result = timer.handle(word() as usize, word(), words);
    black_box(timer_mux::protocol::reply_label(&result));
    black_box(timer.fired(word(), |client| {
        black_box(client);
    }));
    let _ = black_box(timer.set(word() as usize, word()));
    let _ = black_box(timer.cancel(word() as usize));
    let _ = black_box(timer_mux::protocol::decode_reply(word()));

    // The net PD's switch: a configuration and deny list from the build,
    // frames and bursts a guest sends, the glue's no-buffer reports and
    // the debug build's counter lines.
    let macs: [Mac; 4] = core::array::from_fn(|_| {
        Mac((word() as u64).to_le_bytes()[..6]
            .try_into()
            .unwrap_or([0; 6]))
    });
    let mut list = [0u8; 16];
    for b in list.iter_mut() {
        *b = word() as u8;
    }
    if let Ok(mut config) = Config::new(macs) {
        if let Ok(list) = core::str::from_utf8(&list[..word() as usize % 17]) {
            let _ = black_box(config.deny_list(list));
        }
        let _ = black_box(config.deny(word() as usize, word() as usize));
        let mut switch = Switch::new(config);
        let mut frame = [0u8; 64];
        for b in frame.iter_mut() {
            *b = word() as u8;
        }
        let len = word() as usize % 65;
        black_box(switch.decide(word() as usize, &frame[..len]));
        let frames: [&[u8]; 3] = [&frame[..len], &frame, &frame[len / 2..]];
        if let Ok(plan) = switch.decide_burst(word() as usize, &frames[..word() as usize % 4]) {
            for port in plan.destinations() {
                for index in plan.frames(port) {
                    black_box((port, index, plan.bytes(port)));
                }
            }
        }
        black_box(switch.decide_head(word() as usize, word() as usize, &frame[..len]));
        // The two-copy path's layout and routing.
        if let Ok(pairs) = Pairs::new(PortSet(word()), word() as usize, word() as usize) {
            black_box(pairs.window_len(word() as usize));
            black_box(pairs.area(word() as usize, word() as usize, word() as usize));
            let mut router = PortRouter::new(&mut switch, &pairs, word() as usize);
            black_box((
                router.must_peek(),
                router.decided(),
                router.port(word() as usize),
            ));
            black_box(router.route(word() as usize, None));
            black_box(router.route(word() as usize, Some(&frame[..len])));
            // A transmit routed by the switch, and its deliveries.
            let mut net_client = Client::new(Opaque, buffer(word() as usize));
            let mut net_port = NetService::new(buffer(word() as usize));
            let mut area = [0u8; 2048];
            let area_len = (word() as usize).min(area.len());
            let mut areas = [Burst::new(area.get_mut(..area_len).unwrap_or(&mut []))];
            black_box(net_port.transmit_routed(&mut net_client, &mut router, &mut areas));
            black_box(router.deliveries(&areas));
        }
        let _ = black_box(switch.no_buffer(word() as usize));
        if let Some(report) = switch.report(word() as usize) {
            use core::fmt::Write;
            struct Sink;
            impl Write for Sink {
                fn write_str(&mut self, s: &str) -> core::fmt::Result {
                    black_box(s);
                    Ok(())
                }
            }
            let _ = black_box(write!(Sink, "{report}"));
        }
    }

    // The sDDF block rings: both sides over memory the other side
    // scribbles on, the driver loop over a device that answers anything,
    // and the blk PD's device disk behind the virtio-blk backend.
    if let Ok(rings) = blk_queue::Rings::new(
        buffer(word() as usize),
        buffer(word() as usize),
        word() as u32,
    ) {
        let mut ring_client = blk_queue::Client::new(rings);
        let request = blk_queue::Request::new(
            blk_queue::Code::Unknown(word() as u32),
            word(),
            word(),
            word() as u16,
            word() as u32,
        );
        let _ = black_box(ring_client.enqueue(&request));
        let _ = black_box(ring_client.dequeue());
        let _ = black_box(request.transfer(word(), word()));
        let mut driver = blk_queue::Driver::new(rings);
        let _ = black_box(driver.dequeue());
        let mut serve = blk_queue::driver::Serve::<5>::new(driver, word(), word());
        let _ = black_box(serve.run(&mut OpaqueDevice));
        let _ = black_box(blk_queue::read_storage_info(&buffer(word() as usize)));
        let disk = blk_queue::disk::QueueDisk::<_, 16>::new(
            ring_client,
            buffer(word() as usize),
            word(),
            word(),
            OpaqueDoorbell,
        );
        if let Ok(mut staged) = Client::with_staging(
            Opaque,
            buffer(word() as usize),
            word() as usize,
            word() as usize,
        ) {
            let mut device_path =
                virtio::device::AsyncBlkService::<_, 16>::new(buffer(word() as usize), disk);
            black_box(device_path.notified(&mut staged));
            black_box(device_path.notified(&mut staged));
        }
    }
    // The ring mechanics with event indices on or off, any published
    // chains and any guest-written indices (the services above reach
    // them too, through pages whose contents are opaque).
    if let Ok(layout) = virtio::queue::Layout::new(word() as u16, word(), word(), word()) {
        let layout = layout.with_event_idx(word() & 1 != 0);
        let mut queue = virtio::virtq::DeviceQueue::new();
        queue.set_no_notify(word() & 1 != 0);
        queue.take(word() as u16);
        let used = [virtio::queue::UsedElem {
            id: (word() as u32).into(),
            len: (word() as u32).into(),
        }; 4];
        let n = (word() as usize).min(used.len());
        let _ = black_box(queue.publish(&layout, &[], used.get(..n).unwrap_or(&[]), &mut client));
        black_box(queue.events(&layout, &mut client));
        black_box(virtio::virtq::need_event(
            word() as u16,
            word() as u16,
            word() as u16,
        ));
    }
    #[cfg(feature = "canary")]
    if word() == 1 {
        panic!("canary");
    }
    loop {}
}
