# SPDX-License-Identifier: BSD-2-Clause
# QEMU virt, RISC-V 64 (RV64GC).
ARCH := riscv64
GUEST_RAM_GPA := 0x40000000
GUEST_RAM_SIZE := 0x1000000
GUEST_RAM_PAGE_SIZE := 0x1000
QEMU_CMD = qemu-system-riscv64 -machine virt -m size=2G -nographic -serial mon:stdio \
    -kernel $(IMAGE_FILE)
