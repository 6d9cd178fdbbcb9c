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
# seL4's RAM (the SDK's QEMU_MEMORY); LINUX_LOAD=qemu adds LINUX_BUNDLE_RAM.
QEMU_RAM := 2048M
QEMU_CMD = qemu-system-aarch64 -machine virt,virtualization=on -cpu cortex-a53 -m size=$(QEMU_RAM) \
    -serial mon:stdio -nographic $(if $(filter smp-%,$(MICROKIT_CONFIG)),-smp 4) \
    -device loader,file=$(IMAGE_FILE),addr=0x70000000,cpu-num=0
# GUEST=linux: QEMU virt's devices as the Linux guest sees them (GICv2,
# PL011, the virtio-mmio window, PSCI over SMC).
LINUX_DTS := guests/linux/linux.dts
# GUEST=linux, LINUX_LOAD=qemu (the default here): QEMU gets 64 MiB more
# RAM than the 2 GiB at 0x40000000 that seL4 is built for, and its loader
# puts the kernel and initrd's boot bundle at its start, where seL4 sees
# device memory that no one zeroes.
LINUX_BUNDLE_PADDR := 0xc0000000
LINUX_BUNDLE_RAM := 2112M
LINUX_BUNDLE_MAX := 0x4000000
# GUEST=linux: each VM's guest RAM in QEMU's RAM after the bundle's (VM n's
# at LINUX_GUEST_RAM_PADDR + n * 128 MiB; QEMU gets that much more RAM),
# device untyped to seL4: not zeroed at boot, and QEMU's RAM starts zeroed.
QEMU_RAM_BASE := 0x40000000
LINUX_GUEST_RAM_PADDR := 0xc4000000
