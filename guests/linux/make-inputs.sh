#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds the Linux guest's inputs from Debian's arm64 packages, fetched by
# name with apt (nothing here is committed):
#   OUT/Image            the kernel (the package's vmlinuz is a raw arm64 Image)
#   OUT/initrd.cpio.gz   busybox, the modules the disk needs, and ./init
#   OUT/disk.img         an ext4 image (with a journal) of ./disk: the disk
#                        file's first contents (BLK=device) or the RAM disk
# Usage: make-inputs.sh OUT [DISK_MIB]. Called by the Makefile (GUEST=linux).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
disk_mib=${2:-16}
mkdir -p "$out"
out=$(cd "$out" && pwd)

die() { echo "linux guest inputs: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg dpkg-deb cpio gzip mke2fs sha256sum; do
    command -v $tool >/dev/null || die "needs $tool (Debian: apt-get install cpio e2fsprogs)"
done

# The modules the disk needs (and the N-VM system's console and network), in load order (the package has no
# modules.dep: the order is their .modinfo dependencies). /init loads them.
modules="crc32c_generic crc16 mbcache jbd2 ext4 virtio_mmio virtio_blk virtio_console failover net_failover virtio_net"

debs=$out/debs
mkdir -p "$debs"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64 || die "cannot add the arm64 architecture (run as root, or pass LINUX_IMAGE= and INITRD=)"
    apt-get update -qq
fi
# The kernel the linux-image-arm64 metapackage points at, unsigned flavour.
signed=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-arm64\).*/\1/p' | head -1)
if [ -z "$signed" ]; then
    apt-get update -qq
    signed=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-arm64\).*/\1/p' | head -1)
fi
[ -n "$signed" ] || die "apt knows no linux-image-arm64:arm64 (is the arm64 architecture added and apt updated?)"
kernel_pkg=${signed}-unsigned
version=${signed#linux-image-}
(cd "$debs" && { ls ${kernel_pkg}_*.deb >/dev/null 2>&1 || apt-get download -q "$kernel_pkg:arm64"; } &&
    { ls busybox-static_*.deb >/dev/null 2>&1 || apt-get download -q busybox-static:arm64; }) ||
    die "apt-get download of $kernel_pkg:arm64 or busybox-static:arm64 failed"

root=$out/pkgroot
rm -rf "$root" && mkdir -p "$root"
for deb in "$debs"/${kernel_pkg}_*.deb "$debs"/busybox-static_*.deb; do
    dpkg-deb -x "$deb" "$root"
done
cp "$root/boot/vmlinuz-$version" "$out/Image"
# A raw arm64 Image carries "ARM\x64" at 0x38 (the VMM checks it too).
[ "$(dd if="$out/Image" bs=1 skip=56 count=4 2>/dev/null)" = "$(printf 'ARM\x64')" ] ||
    die "boot/vmlinuz-$version is not a raw arm64 Image"

initrd=$out/initrd-root
rm -rf "$initrd" && mkdir -p "$initrd"/{bin,dev,proc,sys,mnt,tmp,lib/modules}
cp "$root/bin/busybox" "$initrd/bin/busybox"
ln -s busybox "$initrd/bin/sh"
for m in $modules; do
    ko=$(find "$root/lib/modules/$version" -name "$m.ko" -o -name "$m.ko.xz" | head -1)
    [ -n "$ko" ] || die "module $m not in $kernel_pkg"
    case $ko in
        *.xz) xz -dc "$ko" > "$initrd/lib/modules/$m.ko" ;;
        *) cp "$ko" "$initrd/lib/modules/$m.ko" ;;
    esac
done
cp "$here/init" "$initrd/init"
chmod +x "$initrd/init"
sha256sum "$here/disk/hello.txt" | cut -d' ' -f1 > "$initrd/expected.sha256"
(cd "$initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$out/initrd.cpio.gz"

rm -f "$out/disk.img"
# ext4 with a journal (mke2fs gives a 16 MiB file system a 4 MiB one) and
# 4 KiB blocks: BLK=device offers the guest 4 KiB logical blocks.
mke2fs -q -t ext4 -b 4096 -L guest-ram -d "$here/disk" "$out/disk.img" "${disk_mib}M" ||
    die "mke2fs -d failed (needs e2fsprogs >= 1.43)"
echo "linux guest inputs: $out: Image ($version), initrd.cpio.gz, disk.img (${disk_mib} MiB)"
