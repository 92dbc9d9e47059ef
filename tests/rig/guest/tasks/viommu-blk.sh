#!/bin/sh
# Guest task: the virtio-blk disk sits behind the virtio-iommu; write a
# checksummed 4 MiB pattern at 1 MiB into /dev/vda, read it back uncached.
# Prints: GUEST blk KEY=VALUE...
# shellcheck shell=sh

iommus=""
for d in /sys/class/iommu/*; do
    [ -e "$d" ] && iommus="$iommus${d##*/},"
done
group=none
if [ -e /sys/block/vda ]; then
    pci=$(readlink -f /sys/block/vda/device/..)
    [ -e "$pci/iommu_group" ] && group=$(basename "$(readlink -f "$pci/iommu_group")")
else
    echo "GUEST blk error=no-vda iommus=${iommus:-none}"
    exit 1
fi

dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
wrote=$(sha256sum /tmp/pattern | cut -d' ' -f1)
dd if=/tmp/pattern of=/dev/vda bs=1M seek=1 conv=fsync 2>/dev/null || echo "GUEST blk error=write"
blockdev --flushbufs /dev/vda
read=$(dd if=/dev/vda bs=1M skip=1 count=4 2>/dev/null | sha256sum | cut -d' ' -f1)
# virtio-iommu reports faults as "... fault from EP N at ADDR ..."; -w keeps
# "Default domain type" out.
faults=$(dmesg | grep -ciw fault)

echo "GUEST blk iommus=${iommus:-none} group=$group written_sha256=$wrote read_sha256=$read faults=$faults"
dmesg | grep -i -E 'iommu|virtio|fault' | sed 's/^/GUEST dmesg: /'
