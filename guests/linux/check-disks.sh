#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The N-VM system with BLK=device: after qemu-test's run, reads each VM's
# disk file on the host (debugfs, read-only) for what its guest wrote
# through the blk and driver PDs, and for nothing another VM wrote:
#   check-disks.sh DISK-VM0 DISK-VM1 ...
# VM 0's disk must hold the 8 files its guest wrote after its reset, each
# matching the checksum the guest recorded (/kept/SHA256SUMS); VM n > 0's
# must hold the mark its guest wrote (/vm-mark-<n>, "vm<n>"). No disk may
# hold another VM's mark. Exits 1 (saying why) if anything is missing.
fail() { echo "qemu-test: $*"; exit 1; }
command -v debugfs >/dev/null || fail "check-disks.sh needs debugfs (Debian: e2fsprogs)"
n=0
for disk in "$@"; do
    name=$(basename "$disk")
    listing=$(debugfs -R "ls /" "$disk" 2>/dev/null)
    others=$(echo "$listing" | tr -s ' ' '\n' | grep '^vm-mark-' | grep -v "^vm-mark-$n$")
    [ -z "$others" ] && [ -n "$listing" ] ||
        fail "$name: unreadable, or holds another VM's mark ($others)"
    if [ "$n" = 0 ]; then
        dir=$(mktemp -d) || fail "no temporary directory"
        debugfs -R "rdump /kept $dir" "$disk" > /dev/null 2>&1
        want=$(wc -l < "$dir/kept/SHA256SUMS" 2>/dev/null || echo 0)
        good=$(cd "$dir/kept" 2>/dev/null && sha256sum -c SHA256SUMS 2>/dev/null | grep -c ': OK$')
        rm -rf "$dir"
        [ "$want" -gt 0 ] && [ "$good" = "$want" ] ||
            fail "$name: ${good:-0} of $want files its guest wrote match their checksums on the host"
        echo "qemu-test: $name: the $good files VM 0 wrote match their checksums, read on the host"
    else
        mark=$(debugfs -R "cat /vm-mark-$n" "$disk" 2>/dev/null)
        [ "$mark" = "vm$n" ] || fail "$name: VM $n's mark is not there (found '$mark')"
        echo "qemu-test: $name: VM $n's mark is there, read on the host, and no other VM's"
    fi
    n=$((n + 1))
done
