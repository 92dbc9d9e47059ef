#!/bin/sh
# /init of the guest under test (L3, booted by nestor). Prints one GUEST line,
# marks "init reached" on nestor's boot-timer port (0x440, code 1), runs the
# task named by rig.task= on the kernel command line, if any, and powers off
# (ACPI S5: nestor exits 0).
# shellcheck shell=sh

/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true

# boot_mark 1|2: writes that byte to the boot-timer port through /dev/port.
boot_mark() {
    case $1 in
        1) printf '\001' ;;
        2) printf '\002' ;;
    esac | dd of=/dev/port bs=1 seek=$((0x440)) count=1 conv=notrunc 2>/dev/null
}

boot_mark 1
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
echo "GUEST kernel=$(uname -r) cpus=$(nproc) mem_kb=$mem_kb"

task=$(sed -n 's/.*rig\.task=\([A-Za-z0-9_-]*\).*/\1/p' /proc/cmdline)
if [ -n "$task" ]; then
    if [ -f "/tasks/$task.sh" ]; then
        sh "/tasks/$task.sh"
        echo "GUEST task=$task exit=$?"
    else
        echo "GUEST task=$task exit=missing"
    fi
fi
boot_mark 2
# A VMM without ACPI (kvmtool, for comparisons) ends on a reset instead.
if grep -q 'rig\.end=reboot' /proc/cmdline; then
    reboot -f
fi
poweroff -f
sleep 5
echo "GUEST poweroff -f did not end the machine"
