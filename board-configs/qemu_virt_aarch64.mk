# SPDX-License-Identifier: BSD-2-Clause
# QEMU virt, AArch64 (Cortex-A53), the default board.
ARCH := aarch64
# seL4 is a hypervisor here: the system gets the guest VM, its virtio-blk
# device and the blk driver PD (the VM parts of system.xml).
VM := yes
# Guest RAM as the guest sees it: QEMU virt puts RAM at 1 GiB.
GUEST_RAM_GPA := 0x40000000
GUEST_RAM_SIZE := 0x1000000
GUEST_RAM_PAGE_SIZE := 0x1000
QEMU_CMD = qemu-system-aarch64 -machine virt,virtualization=on -cpu cortex-a53 -m size=2G \
    -serial mon:stdio -nographic $(if $(filter smp-%,$(MICROKIT_CONFIG)),-smp 4) \
    -device loader,file=$(IMAGE_FILE),addr=0x70000000,cpu-num=0
# GUEST=linux: QEMU virt's devices as the Linux guest sees them (GICv2,
# PL011, the virtio-mmio window, PSCI over SMC).
LINUX_DTS := guests/linux/linux.dts
