# SPDX-License-Identifier: BSD-2-Clause
# Avnet MaaXBoard (NXP i.MX8MQ, Cortex-A53). No QEMU: load loader.img with U-Boot as the Microkit manual says.
ARCH := aarch64
# seL4 is a hypervisor here: the system gets the guest VM, its virtio-blk
# device and the blk driver PD (the VM parts of system.xml).
VM := yes
# The guest's view of its RAM; any free range of the guest-physical map.
GUEST_RAM_GPA := 0x40000000
GUEST_RAM_SIZE := 0x1000000
# 2 MiB pages would also do on AArch64 when the region is 2 MiB aligned.
GUEST_RAM_PAGE_SIZE := 0x1000
QEMU_CMD =
