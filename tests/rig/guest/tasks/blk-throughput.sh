#!/bin/sh
# Guest task: O_DIRECT throughput of /dev/vda with dd, at 1 MiB blocks over
# the first rig.big_mib MiB and at 4 KiB blocks over the next rig.small_mib
# MiB: write a random pattern, read it back, compare checksums. rig.mode= is
# a label for the output. Times come from /proc/timer_list ("now at N nsecs",
# the kernel's monotonic clock, read without forking); ios= and io_ms= are
# the requests the disk completed in that direction and the time they spent
# in flight (/sys/block/vda/stat).
# Prints:
#   GUEST tput mode=M bs=1M|4K op=write|read bytes=N usec=N ios=N io_ms=N
#   GUEST tput-sum mode=M bs=1M|4K written_sha256=H read_sha256=H
#   GUEST tput-env mode=M iommus=LIST group=G domain=TYPE faults=N clock_usec=N
# and "GUEST tput error=WHAT" on a failed step.
# shellcheck shell=sh

arg() { sed -n "s/.*rig\.$1=\([A-Za-z0-9_-]*\).*/\1/p" /proc/cmdline; }
mode=$(arg mode)
big_mib=$(arg big_mib)
small_mib=$(arg small_mib)

# Sets NOW_NS.
now_ns() { { read -r _; read -r _; read -r _ _ NOW_NS _; } < /proc/timer_list; }

# io_stat read|write: sets IOS and IO_MS, that direction's completed requests
# and milliseconds in flight so far.
io_stat() {
    read -r _r _ _ _rms _w _ _ _wms _ < /sys/block/vda/stat
    if [ "$1" = read ]; then IOS=$_r IO_MS=$_rms; else IOS=$_w IO_MS=$_wms; fi
}

# timed OP BS BYTES DD_ARGS...: times one dd, prints its GUEST tput line.
timed() {
    _op=$1 _bs=$2 _bytes=$3
    shift 3
    io_stat "$_op"; _ios=$IOS _io_ms=$IO_MS
    now_ns; _t0=$NOW_NS
    if ! dd "$@" 2>/tmp/dd.err; then
        echo "GUEST tput error=dd-$_op-$_bs: $(tail -n1 /tmp/dd.err)"
        return 1
    fi
    now_ns
    io_stat "$_op"
    echo "GUEST tput mode=$mode bs=$_bs op=$_op bytes=$_bytes" \
        "usec=$(( (NOW_NS - _t0) / 1000 )) ios=$(( IOS - _ios )) io_ms=$(( IO_MS - _io_ms ))"
}

# measure BS BLOCK_BYTES MIB FIRST_MIB: write then read MIB MiB at FIRST_MIB.
measure() {
    _bs=$1 _block=$2 _mib=$3
    _count=$(( _mib * 1048576 / _block )) _at=$(( $4 * 1048576 / _block ))
    dd if=/dev/urandom of=/tmp/pattern bs=1M count="$_mib" 2>/dev/null
    # The read overwrites /tmp/back in place: it is not charged for the
    # guest's first touch of fresh pages.
    dd if=/dev/zero of=/tmp/back bs=1M count="$_mib" 2>/dev/null
    timed write "$_bs" $(( _mib * 1048576 )) if=/tmp/pattern of=/dev/vda \
        bs="$_block" count="$_count" seek="$_at" oflag=direct conv=notrunc,fsync || return 1
    timed read "$_bs" $(( _mib * 1048576 )) if=/dev/vda of=/tmp/back \
        bs="$_block" count="$_count" skip="$_at" iflag=direct conv=notrunc || return 1
    echo "GUEST tput-sum mode=$mode bs=$_bs" \
        "written_sha256=$(sha256sum /tmp/pattern | cut -d' ' -f1)" \
        "read_sha256=$(sha256sum /tmp/back | cut -d' ' -f1)"
    rm -f /tmp/pattern /tmp/back
}

[ -b /dev/vda ] || { echo "GUEST tput error=no-vda"; exit 1; }
[ -r /proc/timer_list ] || { echo "GUEST tput error=no-timer_list"; exit 1; }
iommus=""
for d in /sys/class/iommu/*; do
    [ -e "$d" ] && iommus="$iommus${d##*/},"
done
group=none domain=none
pci=$(readlink -f /sys/block/vda/device/..)
if [ -e "$pci/iommu_group" ]; then
    group=$(basename "$(readlink -f "$pci/iommu_group")")
    domain=$(cat "$pci/iommu_group/type")
fi
# What one measurement costs with no I/O in it.
now_ns; t0=$NOW_NS; now_ns
clock_usec=$(( (NOW_NS - t0) / 1000 ))

rc=0
measure 1M 1048576 "$big_mib" 0 || rc=1
measure 4K 4096 "$small_mib" "$big_mib" || rc=1
# virtio-iommu reports faults as "... fault from EP N at ADDR ..."; -w keeps
# "Default domain type" out.
faults=$(dmesg | grep -ciw fault)
echo "GUEST tput-env mode=$mode iommus=${iommus:-none} group=$group domain=$domain faults=$faults clock_usec=$clock_usec"
[ "$faults" = 0 ] || dmesg | grep -iw fault | head -n 5 | sed 's/^/GUEST dmesg: /'
exit "$rc"
