#!/bin/sh
# Guest task: QEMU's NVMe controller, passed through by nestor. Waits for
# /dev/nvme0n1, reads the first rig.nvme_pattern_mib MiB (the rig's known
# pattern) with O_DIRECT, then writes a random pattern at rig.at_mib MiB
# (rig.big_mib MiB at 1 MiB blocks, then rig.small_mib MiB at 4 KiB blocks)
# with O_DIRECT and reads it back the same way, then unbinds the controller
# from its driver. rig.mode= labels the output;
# times come from the kernel's monotonic clock (/proc/timer_list).
# Prints:
#   GUEST nvme-dev mode=M dev=BDF group=G domain=TYPE iommus=LIST queues=Q
#   GUEST nvme-pattern mode=M sha256=H bytes=N usec=N
#   GUEST nvme mode=M bs=1M|4K op=write|read bytes=N usec=N
#   GUEST nvme-sum mode=M bs=1M|4K at_mib=N mib=N written_sha256=H read_sha256=H
#   GUEST nvme-unbind mode=M usec=N
#   GUEST nvme-env mode=M faults=N errors=N
# and "GUEST nvme error=WHAT" on a failed step.
# shellcheck shell=sh

arg() { sed -n "s/.*rig\.$1=\([A-Za-z0-9_-]*\).*/\1/p" /proc/cmdline; }
mode=$(arg mode)
pattern_mib=$(arg nvme_pattern_mib)
at_mib=$(arg at_mib)
big_mib=$(arg big_mib)
small_mib=$(arg small_mib)
disk=/dev/nvme0n1

# Sets NOW_NS.
now_ns() { { read -r _; read -r _; read -r _ _ NOW_NS _; } < /proc/timer_list; }

# timed OP BS BYTES DD_ARGS...: times one dd, prints its GUEST nvme line.
timed() {
    _op=$1 _bs=$2 _bytes=$3
    shift 3
    now_ns; _t0=$NOW_NS
    if ! dd "$@" 2>/tmp/dd.err; then
        echo "GUEST nvme error=dd-$_op-$_bs: $(tail -n1 /tmp/dd.err)"
        return 1
    fi
    now_ns
    echo "GUEST nvme mode=$mode bs=$_bs op=$_op bytes=$_bytes usec=$(( (NOW_NS - _t0) / 1000 ))"
}

# measure BS BLOCK_BYTES MIB FIRST_MIB: write then read back MIB MiB at FIRST_MIB.
measure() {
    _bs=$1 _block=$2 _mib=$3
    _count=$(( _mib * 1048576 / _block )) _at=$(( $4 * 1048576 / _block ))
    dd if=/dev/urandom of=/tmp/pattern bs=1M count="$_mib" 2>/dev/null
    dd if=/dev/zero of=/tmp/back bs=1M count="$_mib" 2>/dev/null
    timed write "$_bs" $(( _mib * 1048576 )) if=/tmp/pattern of="$disk" \
        bs="$_block" count="$_count" seek="$_at" oflag=direct conv=notrunc,fsync || return 1
    timed read "$_bs" $(( _mib * 1048576 )) if="$disk" of=/tmp/back \
        bs="$_block" count="$_count" skip="$_at" iflag=direct conv=notrunc || return 1
    echo "GUEST nvme-sum mode=$mode bs=$_bs at_mib=$4 mib=$_mib" \
        "written_sha256=$(sha256sum /tmp/pattern | cut -d' ' -f1)" \
        "read_sha256=$(sha256sum /tmp/back | cut -d' ' -f1)"
    rm -f /tmp/pattern /tmp/back
}

dev=""
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/class")" = 0x010802 ]; then
        dev=$d
        break
    fi
done
if [ -z "$dev" ]; then
    echo "GUEST nvme error=no-nvme-function devices=$(ls /sys/bus/pci/devices | tr '\n' ,)"
    exit 1
fi
# The nvme driver probes asynchronously: the namespace may come after init.
waited=0
while [ ! -b "$disk" ] && [ "$waited" -lt 60 ]; do
    sleep 1
    waited=$((waited + 1))
done
if [ ! -b "$disk" ]; then
    echo "GUEST nvme error=no-$disk-after-${waited}s"
    dmesg | grep -i -E 'nvme|iommu|fault' | sed 's/^/GUEST dmesg: /'
    exit 1
fi
iommus=""
for d in /sys/class/iommu/*; do
    [ -e "$d" ] && iommus="$iommus${d##*/},"
done
group=none domain=none
if [ -e "$dev/iommu_group" ]; then
    group=$(basename "$(readlink -f "$dev/iommu_group")")
    domain=$(cat "$dev/iommu_group/type")
fi
queues=$(dmesg | sed -n 's/.*nvme nvme0: \([0-9/]*\) default\/read\/poll queues.*/\1/p' | head -n1)
echo "GUEST nvme-dev mode=$mode dev=${dev##*/} group=$group domain=$domain" \
    "iommus=${iommus:-none} queues=${queues:-unknown} waited_s=$waited"

rc=0
now_ns; t0=$NOW_NS
if dd if="$disk" of=/tmp/host-pattern bs=1M count="$pattern_mib" iflag=direct 2>/tmp/dd.err; then
    now_ns
    echo "GUEST nvme-pattern mode=$mode sha256=$(sha256sum /tmp/host-pattern | cut -d' ' -f1)" \
        "bytes=$(( pattern_mib * 1048576 )) usec=$(( (NOW_NS - t0) / 1000 ))"
else
    echo "GUEST nvme error=dd-pattern: $(tail -n1 /tmp/dd.err)"
    rc=1
fi
rm -f /tmp/host-pattern
measure 1M 1048576 "$big_mib" "$at_mib" || rc=1
measure 4K 4096 "$small_mib" $(( at_mib + big_mib )) || rc=1

# Shut the controller down while its IOMMU domain still maps its queues: at
# poweroff the kernel resets the virtio-iommu before the nvme driver's own
# shutdown, which then waits out its 60 s admin timeout on commands whose
# completions the blocked controller cannot write.
now_ns; t0=$NOW_NS
echo "${dev##*/}" > /sys/bus/pci/drivers/nvme/unbind || rc=1
now_ns
echo "GUEST nvme-unbind mode=$mode usec=$(( (NOW_NS - t0) / 1000 ))"

# virtio-iommu reports faults as "... fault from EP N at ADDR ..."; -w keeps
# "Default domain type" out. The nvme driver reports timeouts and I/O errors.
faults=$(dmesg | grep -ciw fault)
errors=$(dmesg | grep -i nvme | grep -ci -E 'timeout|error|abort|reset')
echo "GUEST nvme-env mode=$mode faults=$faults errors=$errors"
[ "$faults" = 0 ] && [ "$errors" = 0 ] && exit "$rc"
dmesg | grep -i -E -w 'fault|nvme' | tail -n 10 | sed 's/^/GUEST dmesg: /'
exit "$rc"
