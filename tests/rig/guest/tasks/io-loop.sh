#!/bin/sh
# Guest task: the I/O workload of the crash loop. On every virtio-blk disk
# (/dev/vd*), busybox dd with O_DIRECT writes a random pattern at 1 MiB blocks
# (rig.big_mib MiB from offset 0) and at 4 KiB blocks (rig.small_mib MiB right
# after), reads both back and compares checksums.
# Prints "GUEST io-loop disks=N ok" or "GUEST io-loop error=WHAT".
# shellcheck shell=sh

arg() { sed -n "s/.*rig\.$1=\([0-9]*\).*/\1/p" /proc/cmdline; }
big_mib=$(arg big_mib)
small_mib=$(arg small_mib)

# pass DISK BLOCK MIB FIRST_MIB: write, read back and compare MIB MiB at FIRST_MIB.
pass() {
    _count=$(( $3 * 1048576 / $2 )) _at=$(( $4 * 1048576 / $2 ))
    dd if=/dev/urandom of=/tmp/pattern bs=1M count="$3" 2>/dev/null
    dd if=/tmp/pattern of="$1" bs="$2" count="$_count" seek="$_at" \
        oflag=direct conv=notrunc,fsync 2>/dev/null || { echo "write $1 bs=$2"; return 1; }
    dd if="$1" of=/tmp/back bs="$2" count="$_count" skip="$_at" \
        iflag=direct 2>/dev/null || { echo "read $1 bs=$2"; return 1; }
    [ "$(sha256sum < /tmp/pattern)" = "$(sha256sum < /tmp/back)" ] ||
        { echo "checksum $1 bs=$2"; return 1; }
    rm -f /tmp/pattern /tmp/back
}

disks=0
for disk in /dev/vd?; do
    [ -b "$disk" ] || continue
    disks=$((disks + 1))
    if ! why=$(pass "$disk" 1048576 "${big_mib:-16}" 0 &&
               pass "$disk" 4096 "${small_mib:-2}" "${big_mib:-16}"); then
        echo "GUEST io-loop error=$why"
        exit 1
    fi
done
[ "$disks" -gt 0 ] || { echo "GUEST io-loop error=no-disk"; exit 1; }
faults=$(dmesg | grep -ciw fault)
[ "$faults" = 0 ] || { echo "GUEST io-loop error=iommu-faults-$faults"; exit 1; }
echo "GUEST io-loop disks=$disks ok"
