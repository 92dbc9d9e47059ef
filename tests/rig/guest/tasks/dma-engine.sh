#!/bin/sh
# Guest task: nestor's DMA engine (1b36:00f0) behind the virtio-iommu, as Linux
# enumerates it: its configuration space is 4 KiB (Linux found the PCI Express
# capability and reads extended space), its extended capabilities are PASID,
# ATS and PRI in that order, BAR 0's MAGIC register reads "NDMA" once memory
# decoding is on, and bound to vfio-pci (as a userspace driver would use it)
# it joins an IOMMU group of the virtio-iommu. Linux 6.12 reads a device's VIOT
# entry when a driver binds, so before that it has no group.
# Prints: GUEST dma KEY=VALUE...
# shellcheck shell=sh

dev=""
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1b36 ] && [ "$(cat "$d/device")" = 0x00f0 ]; then
        dev=$d
        break
    fi
done
if [ -z "$dev" ]; then
    echo "GUEST dma error=not-found devices=$(ls /sys/bus/pci/devices | tr '\n' ,)"
    exit 1
fi

config_size=$(wc -c < "$dev/config" | tr -d ' ')
dword() { od -An -tx4 -j "$1" -N4 "$dev/config" | tr -d ' '; }
caps=""
at=256
hops=0
while [ "$at" -ne 0 ] && [ "$hops" -lt 16 ]; do
    header=$((0x$(dword "$at")))
    [ "$header" -eq 0 ] && break
    caps="$caps$(printf '0x%x' $((header & 0xffff))),"
    at=$(((header >> 20) & 0xffc))
    hops=$((hops + 1))
done
group_of() { [ -e "$dev/iommu_group" ] && basename "$(readlink -f "$dev/iommu_group")" || echo none; }
unbound_group=$(group_of)

bar0=$(head -n1 "$dev/resource" | cut -d' ' -f1)
command=$(dd if="$dev/config" bs=1 skip=4 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
printf "\\$(printf '%03o' $((command | 2)))" | dd of="$dev/config" bs=1 seek=4 count=1 conv=notrunc 2>/dev/null
magic=$(devmem "$bar0" 32 | tr 'A-F' 'a-f')

echo vfio-pci > "$dev/driver_override"
echo "${dev##*/}" > /sys/bus/pci/drivers_probe
driver=none
[ -e "$dev/driver" ] && driver=$(basename "$(readlink -f "$dev/driver")")
group=$(group_of)
vfio_node=no
[ -c "/dev/vfio/$group" ] && vfio_node=yes

echo "GUEST dma dev=${dev##*/} config_size=$config_size ext_caps=${caps:-none} bar0=$bar0 magic=$magic unbound_group=$unbound_group driver=$driver group=$group vfio_node=$vfio_node"
dmesg | grep -i -E '1b36:00f0|iommu' | sed 's/^/GUEST dmesg: /'
