#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# The disk-keeps-its-data tests of the Linux guest with BLK=device (the
# blk PD on QEMU's virtio-blk device through the blk-driver PD), run by
# the Makefile:
#   disk-test.sh keep  DISK_IMAGE DISK_FILE BUILD_DIR TIMEOUT QEMU_CMD...
#   disk-test.sh crash DISK_IMAGE DISK_FILE BUILD_DIR TIMEOUT QEMU_CMD...
# keep: a fresh DISK_FILE from DISK_IMAGE; QEMU runs the suite, a guest
# reset, the suite again, writes files with checksums and powers off; QEMU
# is ended; a second QEMU on the same file runs the suite and checks every
# file ("linux: disk kept K/K files"); then e2fsck -fn on the file.
# crash: the guest (guest_ram.crash=1 on its command line) writes and
# fsyncs files, printing each completed one, until this script SIGKILLs
# QEMU midway; a second QEMU's guest replays the journal and lists the
# files it has: every file reported fsynced must be there with its
# checksum ("linux: crash kept K/K fsynced files"); then e2fsck -fn.
set -u
mode=$1 image=$2 disk=$3 dir=$4 timeout=$5
shift 5
cmd=("$@")

die() { echo "$mode-test: FAILED: $*"; exit 1; }
command -v e2fsck >/dev/null || die "needs e2fsck (Debian: e2fsprogs)"
[ -f "$image" ] || die "no disk image $image"
cp "$image" "$disk" || die "cannot make $disk"

# qemu LOG NEED PASS FAIL [SIGNAL]: runs QEMU until LOG has NEED lines
# matching PASS (then 0), a line matching FAIL, QEMU's end or the timeout
# (then 1); ends QEMU with SIGNAL (TERM by default).
qemu() {
    local log=$1 need=$2 pass=$3 fail=$4 signal=${5:-TERM} result=1 pid i
    rm -f "$log"
    "${cmd[@]}" < /dev/null > "$log" 2>&1 &
    pid=$!
    for i in $(seq $((timeout * 10))); do
        if [ "$(tr -d '\r' < "$log" | grep -cE "$pass")" -ge "$need" ]; then result=0; break; fi
        if tr -d '\r' < "$log" | grep -qE "$fail" || ! kill -0 $pid 2>/dev/null; then break; fi
        # Powered off without every line: nothing more will come.
        if grep -q 'vmm: guest powered off' "$log"; then sleep 1; [ "$(tr -d '\r' < "$log" | grep -cE "$pass")" -ge "$need" ] && result=0; break; fi
        sleep 0.1
    done
    kill -"$signal" $pid 2>/dev/null
    wait $pid 2>/dev/null
    return $result
}

FAIL='linux: FAILED|vmm: (stopping the guest|guest not started)|Kernel panic|linux: crash: no disk'
fsck() {
    if e2fsck -fn "$disk" > "$dir/e2fsck.log" 2>&1; then
        echo "$mode-test: e2fsck -fn $disk: clean"
    else
        cat "$dir/e2fsck.log"
        die "e2fsck -fn $disk is not clean (see $dir/e2fsck.log)"
    fi
}

case $mode in
keep)
    start=$(date +%s%N)
    qemu "$dir/qemu.log" 5 \
        '^(linux: virtio-blk ([0-9]+)/\2 passed|linux: reset: ok, booted again|linux: disk wrote [0-9]+ files|INFO: vmm: guest powered off)' \
        "$FAIL" || { cat "$dir/qemu.log"; die "first QEMU (see $dir/qemu.log)"; }
    first=$(( ($(date +%s%N) - start) / 1000000 ))
    tr -d '\r' < "$dir/qemu.log" | grep -E '^linux: (virtio-blk|reset|disk|dd)'
    start=$(date +%s%N)
    qemu "$dir/qemu-2.log" 3 \
        '^(linux: virtio-blk ([0-9]+)/\2 passed|linux: disk kept ([0-9]+)/\3 files|INFO: vmm: guest powered off)' \
        "$FAIL" || {
        cat "$dir/qemu-2.log"
        die "second QEMU (see $dir/qemu-2.log)"
    }
    second=$(( ($(date +%s%N) - start) / 1000000 ))
    tr -d '\r' < "$dir/qemu-2.log" | grep -E '^linux: (virtio-blk|disk)'
    echo "$mode-test: first QEMU $first ms (two boots), second $second ms (one boot)"
    fsck
    echo "qemu-test: PASSED"
    ;;
crash)
    # Killed after a number of completed files that varies from run to run.
    kill_at=$((20 + RANDOM % 40))
    qemu "$dir/qemu.log" $kill_at '^linux: crash: fsynced ' "$FAIL|linux: crash: all written" KILL ||
        { cat "$dir/qemu.log"; die "no $kill_at fsynced files before the timeout (see $dir/qemu.log)"; }
    tr -d '\r' < "$dir/qemu.log" | sed -n 's/^linux: crash: fsynced //p' > "$dir/fsynced.txt"
    echo "$mode-test: QEMU SIGKILLed after $(wc -l < "$dir/fsynced.txt") fsynced files"
    qemu "$dir/qemu-2.log" 2 '^(linux: crash: listed|INFO: vmm: guest powered off)' "$FAIL" ||
        { cat "$dir/qemu-2.log"; die "second QEMU (see $dir/qemu-2.log)"; }
    tr -d '\r' < "$dir/qemu-2.log" | sed -n 's/^linux: crash: have //p' > "$dir/found.txt"
    total=$(wc -l < "$dir/fsynced.txt")
    kept=$(grep -cxFf "$dir/found.txt" "$dir/fsynced.txt")
    echo "linux: crash kept $kept/$total fsynced files"
    [ "$kept" = "$total" ] && [ "$total" -gt 0 ] || die "fsynced files lost or changed"
    fsck
    echo "crash-test: PASSED"
    ;;
*) die "mode must be keep or crash" ;;
esac
