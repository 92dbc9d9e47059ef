#!/bin/sh
# Guest task: QEMU's edu device (1234:11e8), passed through by nestor. Finds it,
# turns memory decoding on, reads BAR 0's identification register (offset 0)
# and checks the liveness register (offset 4 returns the bitwise NOT of what
# was written), through /dev/mem (the BAR has no driver).
# Prints: GUEST edu KEY=VALUE...
# shellcheck shell=sh

dev=""
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
        dev=$d
        break
    fi
done
if [ -z "$dev" ]; then
    echo "GUEST edu error=not-found devices=$(ls /sys/bus/pci/devices | tr '\n' ,)"
    exit 1
fi

bar0=$(head -n1 "$dev/resource" | cut -d' ' -f1)
# Command register (offset 4): set Memory Space Enable (bit 1).
command=$(dd if="$dev/config" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
enabled=$((command | 2))
printf "\\$(printf '%03o' "$enabled")" | dd of="$dev/config" bs=1 seek=4 count=1 conv=notrunc 2>/dev/null
command_after=$(dd if="$dev/config" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')

lower() { tr 'A-F' 'a-f'; }
id=$(devmem "$bar0" 32 | lower)
devmem $((bar0 + 4)) 32 0x12345678
liveness=$(devmem $((bar0 + 4)) 32 | lower)
devmem $((bar0 + 4)) 32 0x0000ffff
liveness2=$(devmem $((bar0 + 4)) 32 | lower)

# Behind the virtio-iommu, Linux 6.12 gives the device an IOMMU group (and a
# domain) only when a driver binds: vfio-pci, as a userspace driver would.
group_type=none
if [ -d /sys/class/iommu ] && [ -n "$(ls /sys/class/iommu)" ]; then
    echo vfio-pci > "$dev/driver_override"
    echo "${dev##*/}" > /sys/bus/pci/drivers_probe
fi
[ -e "$dev/iommu_group/type" ] && group_type=$(cat "$dev/iommu_group/type")
echo "GUEST edu dev=${dev##*/} group_type=$group_type bar0=$bar0 command=$command command_after=$command_after id=$id liveness=$liveness liveness2=$liveness2"
