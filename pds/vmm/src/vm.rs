// SPDX-License-Identifier: BSD-2-Clause
//! The guest VM: loading its image into guest RAM, starting its vCPU, and
//! the fault handler (virtio-mmio emulation, hypercalls). Glue only: the
//! syndrome decoding is `vcpu_fault`, the device `virtio::device`.

use common::{DMA_LEN, LAYOUT, VIRTIO_BLK_GPA};
use guest_ram::SharedBuffer;
use sel4::Fault;
use sel4_microkit::{debug_println, Channel, Child, MessageInfo};
use vcpu_fault::esr::decode_data_abort;
use vcpu_fault::hvc::{self, Hypercall, Text};
use virtio::device::{Action, BlkFrontend};

use crate::Ram;

/// Microkit's capability layout for virtual machines (the tool's
/// `PD_BASE_VM_TCB_CAP`, libmicrokit's `BASE_VM_TCB_CAP`): a VM's TCB sits
/// at this slot plus its vCPU id in the VMM's CSpace. rust-sel4 v5.0.0's
/// `sel4-microkit` has no accessor for it (its `Child::tcb` is a child
/// PD's, at another base), so this is the one place that knows.
const BASE_VM_TCB_CAP: u64 = 266;

/// The TCB of the VM's vCPU `id`.
fn vm_tcb(id: usize) -> sel4::cap::Tcb {
    sel4::cap::Tcb::from_bits(BASE_VM_TCB_CAP + id as u64)
}

/// SPSR for the first instruction: EL1h, D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// The running guest.
pub struct Vm {
    frontend: BlkFrontend,
    blk: Channel,
}

impl Vm {
    /// Loads `image` at the start of guest RAM, sets aside the DMA area,
    /// and starts vCPU 0 at the image's first byte with x0/x1 the DMA area
    /// and x2 the virtio-blk window. Returns the VM and its DMA area.
    pub fn start(
        ram: &mut Ram,
        image: &SharedBuffer,
        page: SharedBuffer,
        blk: Channel,
    ) -> Result<(Vm, u64), &'static str> {
        let image_len = (image.len() as u64).next_multiple_of(0x1000);
        ram.mark_allocated(LAYOUT.gpa, image_len)
            .map_err(|_| "guest image does not fit guest RAM")?;
        ram.write_from_buffer(LAYOUT.gpa, image.len() as u64, image, 0)
            .map_err(|_| "guest image copy failed")?;
        // The self-test client writes its read-write window; keep the
        // allocator (and so the guest's DMA area) out of it.
        ram.mark_allocated(LAYOUT.rw(), 8 << 20)
            .map_err(|_| "self-test window is not free RAM")?;
        let dma = ram
            .allocate_aligned(DMA_LEN, 1 << 20)
            .map_err(|_| "no room for the guest's DMA area")?;
        log::info!(
            "vmm: guest image {:#x}..{:#x} ({} bytes), DMA area {dma:#x}..{:#x}, virtio-blk at {VIRTIO_BLK_GPA:#x}",
            LAYOUT.gpa,
            LAYOUT.gpa + image_len,
            image.len(),
            dma + DMA_LEN
        );

        let mut regs = sel4::UserContext::default();
        *regs.pc_mut() = LAYOUT.gpa;
        *regs.spsr_mut() = SPSR_EL1H_MASKED;
        *regs.gpr_mut(0) = dma;
        *regs.gpr_mut(1) = DMA_LEN;
        *regs.gpr_mut(2) = VIRTIO_BLK_GPA;
        vm_tcb(0)
            .tcb_write_all_registers(true, &mut regs)
            .map_err(|_| "starting vCPU 0 failed (TCB_WriteRegisters)")?;
        let vm = Vm {
            frontend: BlkFrontend::new(page),
            blk,
        };
        Ok((vm, dma))
    }

    /// The blk PD signalled.
    pub fn backend_signalled(&mut self) {
        self.frontend.backend_signalled();
    }

    /// A fault from vCPU `child`: emulate, resume (a reply), or stop.
    pub fn fault(&mut self, ram: &Ram, child: Child, info: MessageInfo) -> Option<MessageInfo> {
        let id = child.index();
        match self.handle(ram, id, info.fault()) {
            Ok(Resume::Yes) => Some(MessageInfo::new(0, 0)),
            Ok(Resume::Stop) => suspend(id),
            Err(why) => stop(id, why),
        }
    }

    fn handle(&mut self, ram: &Ram, id: usize, fault: Fault) -> Result<Resume, &'static str> {
        let tcb = vm_tcb(id);
        match fault {
            Fault::VmFault(f) => {
                if f.is_prefetch() {
                    log::error!("vmm: instruction abort at {:#x}", f.addr());
                    return Err("instruction fetch from unmapped memory");
                }
                let access = decode_data_abort(f.fsr(), f.addr()).map_err(|e| {
                    log::error!("vmm: data abort at {:#x} (pc {:#x}): {e}", f.addr(), f.ip());
                    "cannot emulate this data abort"
                })?;
                let mut regs = tcb
                    .tcb_read_all_registers(false)
                    .map_err(|_| "TCB_ReadRegisters failed")?;
                let register = usize::from(access.register);
                let value = if register < 31 {
                    *regs.gpr(register)
                } else {
                    0
                };
                let Some((load, action)) = self.frontend.emulate(VIRTIO_BLK_GPA, &access, value)
                else {
                    log::error!(
                        "vmm: guest access to unmapped gpa {:#x} (pc {:#x})",
                        f.addr(),
                        f.ip()
                    );
                    return Err("access outside RAM and every device");
                };
                if let (Some(load), true) = (load, register < 31) {
                    *regs.gpr_mut(register) = load;
                }
                *regs.pc_mut() += u64::from(access.instruction_len);
                tcb.tcb_write_all_registers(false, &mut regs)
                    .map_err(|_| "TCB_WriteRegisters failed")?;
                if action == Action::SignalBackend {
                    self.blk.notify();
                }
                Ok(Resume::Yes)
            }
            Fault::UnknownSyscall(s) => {
                let x: [u64; 8] = core::array::from_fn(|i| s.gpr(i));
                let (ret, resume) = match hvc::decode(&x) {
                    Ok(call) => hypercall(ram, call),
                    Err(e) => {
                        log::warn!("vmm: guest hypercall refused: {e}");
                        (e.code(), Resume::Yes)
                    }
                };
                if let Resume::Stop = resume {
                    return Ok(Resume::Stop);
                }
                let mut regs = tcb
                    .tcb_read_all_registers(false)
                    .map_err(|_| "TCB_ReadRegisters failed")?;
                *regs.gpr_mut(0) = ret;
                *regs.pc_mut() = s.fault_ip() + 4;
                tcb.tcb_write_all_registers(false, &mut regs)
                    .map_err(|_| "TCB_WriteRegisters failed")?;
                Ok(Resume::Yes)
            }
            other => {
                log::error!("vmm: unexpected fault from the guest: {other:?}");
                Err("unhandled fault")
            }
        }
    }
}

enum Resume {
    Yes,
    Stop,
}

/// Suspends the vCPU and answers nothing: the guest stays stopped.
fn stop(id: usize, why: &str) -> Option<MessageInfo> {
    log::error!("vmm: stopping the guest (vCPU {id}): {why}");
    suspend(id)
}

/// Suspends vCPU `id`, loudly if that fails; no reply.
fn suspend(id: usize) -> Option<MessageInfo> {
    if vm_tcb(id).tcb_suspend().is_err() {
        log::error!("vmm: TCB_Suspend of vCPU {id} failed");
    }
    None
}

/// Reads `len` (at most `MAX_PRINT`) bytes of guest RAM at `gpa` into
/// `text`, for printing.
fn guest_text<'a>(ram: &Ram, gpa: u64, len: u64, text: &'a mut [u8]) -> Option<&'a [u8]> {
    let bytes = text.get_mut(..len as usize)?;
    (len == 0 || ram.read(gpa, bytes).is_ok()).then_some(&*bytes)
}

/// Carries out a hypercall: the value for x0, and whether to go on.
fn hypercall(ram: &Ram, call: Hypercall) -> (u64, Resume) {
    let mut text = [0u8; hvc::MAX_PRINT as usize];
    match call {
        Hypercall::Print { gpa, len } => match guest_text(ram, gpa, len, &mut text) {
            Some(line) => {
                debug_println!("guest: {}", Text(line));
                (hvc::RET_OK, Resume::Yes)
            }
            None => (hvc::RET_INVALID, Resume::Yes),
        },
        Hypercall::Result {
            passed,
            total,
            name_gpa,
            name_len,
        } => match guest_text(ram, name_gpa, name_len, &mut text) {
            Some(name) => {
                debug_println!("guest: {} {passed}/{total} passed", Text(name));
                (hvc::RET_OK, Resume::Yes)
            }
            None => (hvc::RET_INVALID, Resume::Yes),
        },
        Hypercall::Exit { code } => {
            log::info!("vmm: guest exited with code {code}");
            (hvc::RET_OK, Resume::Stop)
        }
    }
}
