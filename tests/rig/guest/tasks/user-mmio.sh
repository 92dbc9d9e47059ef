#!/bin/sh
# Guest task: reads from user mode of MMIO pages the guest has never touched,
# each by a new process (busybox devmem), so each is KVM's first, emulated
# access to that page, coming right after the page faults of the process's
# start. The pages are the configuration space (ECAM) of PCI functions that do
# not exist, which read all ones: functions 1-7 of every slot of bus 0 that
# Linux did not enumerate.
# Prints: GUEST user-mmio ecam=BASE reads=N all_ones=M
# shellcheck shell=sh

ecam=$(sed -n 's/^ *\([0-9a-f]*\)-[0-9a-f]* : PCI \(ECAM\|MMCONFIG\) .*/\1/p' /proc/iomem | head -n1)
if [ -z "$ecam" ]; then
    echo "GUEST user-mmio error=no-ecam-in-iomem"
    grep -i -E 'ecam|mmconfig|reserved' /proc/iomem | sed 's/^/GUEST iomem: /'
    exit 1
fi
reads=0
all_ones=0
for slot in $(seq 0 31); do
    for fn in 1 2 3 4 5 6 7; do
        [ -e "$(printf '/sys/bus/pci/devices/0000:00:%02x.%x' "$slot" "$fn")" ] && continue
        address=$(printf '0x%x' $((0x$ecam + (slot << 15) + (fn << 12))))
        value=$(devmem "$address" 32 | tr 'A-F' 'a-f')
        reads=$((reads + 1))
        [ "$value" = 0xffffffff ] && all_ones=$((all_ones + 1))
    done
done
echo "GUEST user-mmio ecam=0x$ecam reads=$reads all_ones=$all_ones"
