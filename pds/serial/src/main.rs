// SPDX-License-Identifier: BSD-2-Clause
//! The serial PD (the N-VM Linux system): owns QEMU virt's PL011 and is
//! the backend of every VM's virtio console. Each VM's output goes to the
//! UART line by line, prefixed `vm<n>| `; keyboard input goes to one VM at
//! a time (`Ctrl-\` then a digit switches, see `serial_mux::input`). It
//! never maps guest RAM: console bytes move through each VMM's copy
//! service like every device byte. When the last VM powers off it flushes
//! what it holds and powers the machine off (PSCI SYSTEM_OFF).
//!
//! Glue only: the multiplexing is `serial_mux`, the queues
//! `virtio::console::ConsoleService`.
//!
//! Channels (guest_ram_sdf.linux, through `setvar_id`): VM n's console, a
//! copy client of VMM n, on channel n (the channel is the VM's index here);
//! its power signal on `vm<n>_power_channel`.
#![allow(
    unsafe_code,
    reason = "maps the UART's registers and the console buffers and pages system.xml gives it"
)]
#![no_std]
#![no_main]

use core::ptr::NonNull;

use common::Ppc;
use guest_ram::client::Client;
use guest_ram::SharedBuffer;
use sel4_microkit::{
    memory_region_symbol, protection_domain, var, Channel, ChannelSet, Handler, Infallible,
};
use serial_mux::input::Routed;
use serial_mux::{Input, Output, PowerTracker};
use virtio::console::{ConsoleService, ConsoleSink};

/// The most VMs (guest_ram_sdf.linux's MAX_VMS).
const VMS: usize = 4;
/// A VM's output line is held until its `\n`, up to this many bytes.
const LINE: usize = 256;
/// Keyboard input held per VM until its guest posts receive buffers.
const INPUT_QUEUE: usize = 1024;

/// QEMU virt's PL011: polled output, interrupt-driven input.
struct Pl011(NonNull<u32>);

impl Pl011 {
    const DR: usize = 0;
    const FR: usize = 0x18 / 4;
    const IMSC: usize = 0x38 / 4;
    const ICR: usize = 0x44 / 4;
    const FR_RXFE: u32 = 1 << 4;
    const FR_TXFF: u32 = 1 << 5;
    /// The receive and receive-timeout interrupts.
    const RX_INTERRUPTS: u32 = (1 << 4) | (1 << 6);

    fn read(&self, reg: usize) -> u32 {
        // SAFETY: `reg` is one of the PL011's registers, inside the page
        // system.xml maps here uncached for the PD's whole life.
        unsafe { self.0.as_ptr().add(reg).read_volatile() }
    }

    fn set(&self, reg: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.0.as_ptr().add(reg).write_volatile(value) }
    }

    fn put(&self, byte: u8) {
        while self.read(Self::FR) & Self::FR_TXFF != 0 {}
        self.set(Self::DR, u32::from(byte));
    }

    fn put_all(&self, bytes: &[u8]) {
        for &b in bytes {
            self.put(b);
        }
    }

    fn get(&self) -> Option<u8> {
        (self.read(Self::FR) & Self::FR_RXFE == 0).then(|| self.read(Self::DR) as u8)
    }
}

/// One VM's console: the channel to its VMM (copies and signals), its
/// power signal, the copy client over the buffer the VMM serves, and the
/// console's queues.
struct Port {
    channel: Channel,
    power: Channel,
    client: Client<Ppc>,
    service: ConsoleService,
}

/// Transmitted bytes of VM `vm` go to the multiplexer, which writes whole
/// lines to the UART at once (polling its FIFO): it never runs out of room.
struct Sink<'a> {
    vm: usize,
    output: &'a mut Output<VMS, LINE>,
    uart: &'a Pl011,
}

impl ConsoleSink for Sink<'_> {
    fn room(&self) -> usize {
        usize::MAX
    }
    fn write(&mut self, bytes: &[u8]) {
        let uart = self.uart;
        let _ = self
            .output
            .push(self.vm, bytes, &mut |b: &[u8]| uart.put_all(b));
    }
}

struct Serial {
    uart: Pl011,
    uart_irq: Channel,
    ports: [Option<Port>; VMS],
    output: Output<VMS, LINE>,
    input: Input<VMS, INPUT_QUEUE>,
    power: PowerTracker<VMS>,
}

/// VM `n`'s console, if the system description gives it one (every symbol
/// it needs was written).
fn port(
    n: usize,
    vaddrs: [usize; 2],
    sizes: [usize; 2],
    [channel, power]: [usize; 2],
) -> Option<Port> {
    let [buffer_vaddr, device_vaddr] = vaddrs.map(|v| NonNull::new(v as *mut u8));
    let (buffer_vaddr, device_vaddr) = (buffer_vaddr?, device_vaddr?);
    // The client's channel is the VM's index in the tables here.
    if channel != n {
        log::error!("serial: VM {n}'s console is on channel {channel}, not {n}; left out");
        return None;
    }
    // SAFETY: system.xml maps VM n's console buffer and device page here
    // for the PD's whole life, at these addresses and sizes (setvar), and
    // nothing here takes references into them.
    let (buffer, page) = unsafe {
        (
            SharedBuffer::new(buffer_vaddr, sizes[0]),
            SharedBuffer::new(device_vaddr, sizes[1]),
        )
    };
    Some(Port {
        channel: Channel::new(n),
        power: Channel::new(power),
        client: Client::new(Ppc(Channel::new(n)), buffer),
        service: ConsoleService::new(page),
    })
}

#[protection_domain]
fn init() -> Serial {
    common::init_logging(log::LevelFilter::Info);
    let uart = Pl011(memory_region_symbol!(uart_vaddr: *mut u32));
    uart.set(Pl011::IMSC, uart.read(Pl011::IMSC) | Pl011::RX_INTERRUPTS);
    // One entry per VM: the setvar symbols of guest_ram_sdf.linux; a VM
    // the system does not have leaves its symbols 0.
    let ports = [
        port(
            0,
            [
                *var!(vm0_buffer_vaddr: usize = 0),
                *var!(vm0_device_vaddr: usize = 0),
            ],
            [
                *var!(vm0_buffer_size: usize = 0),
                *var!(vm0_device_size: usize = 0),
            ],
            [
                *var!(vm0_channel: usize = 0),
                *var!(vm0_power_channel: usize = 4),
            ],
        ),
        port(
            1,
            [
                *var!(vm1_buffer_vaddr: usize = 0),
                *var!(vm1_device_vaddr: usize = 0),
            ],
            [
                *var!(vm1_buffer_size: usize = 0),
                *var!(vm1_device_size: usize = 0),
            ],
            [
                *var!(vm1_channel: usize = 1),
                *var!(vm1_power_channel: usize = 5),
            ],
        ),
        port(
            2,
            [
                *var!(vm2_buffer_vaddr: usize = 0),
                *var!(vm2_device_vaddr: usize = 0),
            ],
            [
                *var!(vm2_buffer_size: usize = 0),
                *var!(vm2_device_size: usize = 0),
            ],
            [
                *var!(vm2_channel: usize = 2),
                *var!(vm2_power_channel: usize = 6),
            ],
        ),
        port(
            3,
            [
                *var!(vm3_buffer_vaddr: usize = 0),
                *var!(vm3_device_vaddr: usize = 0),
            ],
            [
                *var!(vm3_buffer_size: usize = 0),
                *var!(vm3_device_size: usize = 0),
            ],
            [
                *var!(vm3_channel: usize = 3),
                *var!(vm3_power_channel: usize = 7),
            ],
        ),
    ];
    let mut power = PowerTracker::new();
    for (n, p) in ports.iter().enumerate() {
        if p.is_none() {
            let _ = power.powered_off(n);
        }
    }
    log::info!(
        "serial: {} VM console(s); input goes to vm0, Ctrl-\\ then a digit switches",
        power.running()
    );
    Serial {
        uart,
        uart_irq: Channel::new(*var!(uart_irq_channel: usize = 12)),
        ports,
        output: Output::new(),
        input: Input::new(),
        power,
    }
}

impl Serial {
    /// Hands VM `vm`'s pending input to its receive queue, as far as the
    /// guest has posted buffers.
    fn deliver_input(&mut self, vm: usize) {
        let Some(port) = self.ports.get_mut(vm).and_then(Option::as_mut) else {
            return;
        };
        let mut signal = false;
        // The queue is a ring: its pending bytes come as up to two runs.
        for _ in 0..2 {
            let Ok((first, _)) = self.input.pending(vm) else {
                return;
            };
            if first.is_empty() {
                break;
            }
            let done = port.service.receive(&mut port.client, first);
            signal |= done.signal;
            let whole = done.consumed == first.len();
            let _ = self.input.consume(vm, done.consumed);
            if !whole {
                break;
            }
        }
        if signal {
            port.channel.notify();
        }
    }

    /// VM `vm`'s VMM signalled: its guest wrote, or posted receive buffers.
    fn console(&mut self, vm: usize) {
        let Some(port) = self.ports.get_mut(vm).and_then(Option::as_mut) else {
            return;
        };
        let mut sink = Sink {
            vm,
            output: &mut self.output,
            uart: &self.uart,
        };
        if port.service.transmit(&mut port.client, &mut sink).signal {
            port.channel.notify();
        }
        self.deliver_input(vm);
    }

    /// Keyboard input: route every byte the UART holds.
    fn keyboard(&mut self) {
        let mut touched = [false; VMS];
        while let Some(byte) = self.uart.get() {
            match self.input.input(byte) {
                Routed::Queued { vm } => {
                    if let Some(t) = touched.get_mut(vm) {
                        *t = true;
                    }
                }
                Routed::Dropped { .. } | Routed::Escape => {}
                Routed::Switched { vm } => {
                    self.uart.put_all(b"\r\nserial: input to vm");
                    self.uart.put(b'0'.wrapping_add(vm as u8));
                    self.uart.put_all(b"\r\n");
                }
            }
        }
        self.uart.set(Pl011::ICR, Pl011::RX_INTERRUPTS);
        for (vm, queued) in touched.into_iter().enumerate() {
            if queued {
                self.deliver_input(vm);
            }
        }
    }

    /// VM `vm`'s guest powered off: print what it left, and once every VM
    /// is off, power the machine off.
    fn powered_off(&mut self, vm: usize) {
        let uart = &self.uart;
        let _ = self.output.flush(vm, &mut |b: &[u8]| uart.put_all(b));
        if let Some(port) = self.ports.get(vm).and_then(Option::as_ref) {
            let s = port.service.stats();
            let lines = self.output.lines(vm).unwrap_or(0);
            log::info!(
                "serial: vm{vm} off: {lines} lines, {} bytes out in {} chains, {} bytes in, {} dropped, {} copy calls ({}.{:02} per line)",
                s.bytes_out,
                s.chains_out,
                s.bytes_in,
                s.dropped,
                s.calls,
                s.calls / lines.max(1),
                s.calls * 100 / lines.max(1) % 100
            );
        }
        if self.power.powered_off(vm).unwrap_or(false) {
            log::info!("serial: every VM is off: powering the machine off");
            if let Err(e) = common::system_off() {
                log::error!("serial: PSCI SYSTEM_OFF failed: {e:?}");
            }
        }
    }
}

impl Handler for Serial {
    type Error = Infallible;

    fn notified(&mut self, set: ChannelSet) -> Result<(), Self::Error> {
        // Consoles first, so that a VM's last output is out before its
        // power-off is handled.
        for vm in 0..VMS {
            let channel = self.ports[vm].as_ref().map(|p| p.channel);
            if channel.is_some_and(|c| set.contains(c)) {
                self.console(vm);
            }
        }
        if set.contains(self.uart_irq) {
            self.keyboard();
            if self.uart_irq.irq_ack().is_err() {
                log::error!("serial: acknowledging the UART's interrupt failed");
            }
        }
        for vm in 0..VMS {
            let power = self.ports[vm].as_ref().map(|p| p.power);
            if power.is_some_and(|c| set.contains(c)) {
                self.powered_off(vm);
            }
        }
        Ok(())
    }
}
