# SPDX-License-Identifier: BSD-2-Clause
"""The boot bundle's layout, as linux-boot's parser reads it."""

from guest_ram_sdf import bundle

# linux-boot/src/bundle.rs's WRITER_GOLDEN: the same bytes.
GOLDEN = ("47524c494e555800010000000000000000100000000000000500000000000000"
          "0020000000000000030000000000000000000000000000000000000000000000")


def test_header_is_what_the_parser_expects():
    assert bundle.header(5, 3).hex() == GOLDEN


def test_parts_lie_where_the_header_says():
    kernel, initrd = b"K" * 0x1234, b"initrd"
    blob = bundle.bundle(kernel, initrd)
    assert blob[0x1000:0x1000 + len(kernel)] == kernel
    assert blob[0x3000:] == initrd
    assert blob[:8] == bundle.MAGIC
