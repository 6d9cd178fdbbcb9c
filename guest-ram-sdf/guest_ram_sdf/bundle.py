# SPDX-License-Identifier: BSD-2-Clause
"""Writes a Linux boot bundle: the kernel Image and the initrd in one blob
with a 64-byte header saying where each lies (linux-boot's
``linux_boot::bundle``, which checks it). The kernel starts at 4 KiB, the
initrd at the next 4 KiB boundary after it.

    python -m guest_ram_sdf.bundle --kernel Image --initrd initrd.cpio.gz -o bundle.bin
"""

import argparse
import struct
from typing import List, Optional

MAGIC = b"GRLINUX\0"
VERSION = 1
HEADER_LEN = 64
KERNEL_OFFSET = 0x1000
ALIGN = 0x1000


def header(kernel_len: int, initrd_len: int) -> bytes:
    """The header for a kernel and initrd of these lengths."""
    initrd_offset = (KERNEL_OFFSET + kernel_len + ALIGN - 1) // ALIGN * ALIGN
    h = MAGIC + struct.pack("<IIQQQQ", VERSION, 0, KERNEL_OFFSET, kernel_len, initrd_offset,
                            initrd_len)
    return h + bytes(HEADER_LEN - len(h))


def bundle(kernel: bytes, initrd: bytes) -> bytes:
    """The whole blob."""
    if not kernel:
        raise ValueError("the kernel is empty")
    h = header(len(kernel), len(initrd))
    initrd_offset = struct.unpack_from("<Q", h, 32)[0]
    blob = h + bytes(KERNEL_OFFSET - HEADER_LEN) + kernel
    return blob + bytes(initrd_offset - len(blob)) + initrd


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args(argv)
    with open(a.kernel, "rb") as k, open(a.initrd, "rb") as i:
        blob = bundle(k.read(), i.read())
    with open(a.output, "wb") as out:
        out.write(blob)


if __name__ == "__main__":
    main()
