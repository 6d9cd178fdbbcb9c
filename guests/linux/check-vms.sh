#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The N-VM Linux system's qemu-test verdict on a serial log so far:
#   check-vms.sh LOG VMS [exited]
# exits 0 when the test has passed, 1 when it has failed (and says why),
# 2 when it cannot tell yet. `exited` says QEMU has ended.
# Passes when: every VM passed its network suite (`vm<n>| linux: net: K/K
# passed`: ping, TCP, broadcast, spoofing, the ACL), every VM echoed the line typed at it (qemu-test types
# `Ctrl-\ n` and `line-for-vm<n>` when VM n waits for input), every boot's replay of its kernel log arrived whole, every VM n printed `vm<n>| linux: virtio-blk K/K passed`
# (VM 0 twice: before and after its own reset), VM 0 found no other VM's
# mark on its disk and came back from its reset, VM 1's VMM logged its
# power-off before VM 0's last pass line, `vmm0: guest powered off` is the
# last power-off, and QEMU ended by itself (the serial PD's PSCI SYSTEM_OFF
# once every VM was off).
log=$1 vms=$2 exited=${3:-}
fail() { echo "qemu-test: $*"; exit 1; }

grep -qE 'Kernel panic|end Kernel panic' "$log" && fail "a kernel panicked"
grep -qE 'vmm[0-9]*: (stopping the guest|guest not started)' "$log" && fail "a VMM stopped its guest"
grep -E '^vm[0-9]\| linux: virtio-blk [0-9]+/[0-9]+ passed' "$log" | grep -qvE 'virtio-blk ([0-9]+)/\1 passed' &&
    fail "a suite failed"
grep -q '^vm0| linux: isolation: FAILED' "$log" && fail "VM 0 found another VM's mark on its disk"
grep -E '^vm[0-9]\| linux: net: [0-9]+/[0-9]+ passed' "$log" | grep -qvE 'net: ([0-9]+)/\1 passed' &&
    fail "a network suite failed"

# Every boot's log replay (a burst) arrived whole: as many vm<n>| lines
# between its start and end lines as it announced (or more: the kernel
# may print meanwhile).
bad_burst=$(awk -v vms="$vms" '
    match($0, /^vm[0-9]\| linux: boot log, [0-9]+ lines:/) { vm = substr($0, 3, 1); want[vm] = $5; got[vm] = 0; open[vm] = 1; next }
    match($0, /^vm[0-9]\| linux: boot log end, /) { vm = substr($0, 3, 1); if (open[vm] && got[vm] < want[vm]) print "vm" vm ": " got[vm] " of " want[vm]; open[vm] = 0; next }
    /^vm[0-9]\| / { vm = substr($0, 3, 1); if (open[vm]) got[vm]++ }' "$log")
[ -z "$bad_burst" ] || fail "a boot log burst lost lines ($bad_burst)"

pass_line() { grep -nE "^vm$1\| linux: virtio-blk ([0-9]+)/\1 passed" "$log" | cut -d: -f1; }
done=yes
n=1
while [ "$n" -lt "$vms" ]; do
    [ -n "$(pass_line $n)" ] || done=no
    n=$((n + 1))
done
[ "$(pass_line 0 | wc -l)" -ge 2 ] || done=no
n=0
while [ "$n" -lt "$vms" ]; do
    grep -q "^vm$n| linux: console input: line-for-vm$n" "$log" || done=no
    n=$((n + 1))
done
n=0
while [ "$n" -lt "$vms" ]; do
    grep -qE "^vm$n\| linux: net: ([0-9]+)/\1 passed" "$log" || done=no
    n=$((n + 1))
done
grep -q "^vm0| linux: isolation: ok" "$log" || done=no
grep -q "^vm0| linux: reset: ok, booted again" "$log" || done=no
grep -q "vmm0: guest powered off" "$log" || done=no
if [ $done = no ]; then
    [ -n "$exited" ] && fail "QEMU ended before every line was there"
    exit 2
fi
off1=$(grep -n "vmm1: guest powered off" "$log" | head -1 | cut -d: -f1)
last0=$(pass_line 0 | tail -1)
[ -n "$off1" ] && [ "$off1" -lt "$last0" ] || fail "VM 1 did not power off before VM 0's last pass line"
last_off=$(grep -E 'vmm[0-9]+: guest powered off' "$log" | tail -1)
case $last_off in *vmm0:*) ;; *) fail "the last VM to power off was not VM 0 ($last_off)" ;; esac
[ -n "$exited" ] || exit 2
echo "qemu-test: every VM passed; vmm1 off before VM 0's last pass line; vmm0 off last; QEMU powered off"
exit 0
