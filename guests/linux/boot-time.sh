#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Boot time of every Linux VM: runs a QEMU command, stamps each line of its
# output with the milliseconds since QEMU started, and prints the time to
# each VM's first suite summary line (`linux: virtio-blk K/K passed`, or
# `vm<n>| linux: ...` with several VMs).
#   boot-time.sh LOG TIMEOUT QEMU-COMMAND...
# The run ends when QEMU does (the system powers itself off) or after
# TIMEOUT seconds.
set -u
log=$1 limit=$2
shift 2
start=$EPOCHREALTIME
timeout "$limit" "$@" < /dev/null 2>&1 | while IFS= read -r line; do
    now=$EPOCHREALTIME
    printf '%d %s\n' $(( (${now/./} - ${start/./}) / 1000 )) "$line"
done > "$log"
found=$(grep -aE '^[0-9]+ (vm[0-9]\| )?linux: virtio-blk [0-9]+/[0-9]+ passed' "$log" |
    awk '{ vm = ($2 ~ /^vm[0-9]\|$/) ? substr($2, 1, 3) : "vm0"; if (!(vm in t)) { t[vm] = $1; order[++n] = vm } }
         END { for (i = 1; i <= n; i++) printf "boot-time: %s: QEMU start to its first pass line: %d ms\n", order[i], t[order[i]] }')
[ -n "$found" ] || { echo "boot-time: no pass line (see $log)"; exit 1; }
echo "$found"
