# SPDX-License-Identifier: BSD-2-Clause
# Generic x86-64 (QEMU q35/pc or a PC). The tool also writes sel4_32.elf,
# the 32-bit kernel QEMU's multiboot loader starts.
ARCH := x86_64
GUEST_RAM_GPA := 0x40000000
GUEST_RAM_SIZE := 0x1000000
GUEST_RAM_PAGE_SIZE := 0x1000
QEMU_CMD = qemu-system-x86_64 -cpu qemu64,+fsgsbase,+pdpe1gb,+xsaveopt,+xsave -m 1G \
    -display none -serial mon:stdio -kernel $(BUILD_DIR)/sel4_32.elf -initrd $(IMAGE_FILE)
