#!/bin/sh
# /init of the rig host (L2). Runs one scenario and reports on ttyS0 with
# machine-readable lines, then reboots so that QEMU (-no-reboot) exits:
#   RIG-L2 up ...              the rig host reached its init
#   RIG-L2 info KEY=VALUE...   facts for the report (timings, versions)
#   RIG-L2 result ok | RIG-L2 result FAIL REASON
# nestor's guest console goes to ttyS1, a separate log on the host.
# shellcheck shell=sh

/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
stty -F /dev/ttyS1 raw -echo 2>/dev/null || true

# The heartbeat, a line every 5 s on this console: the host ends a rig host that
# stops writing (hung). It shares the console because a third UART shares its
# IRQ with the first and stalls.
(while :; do echo "RIG-L2 beat $(cut -d' ' -f1 /proc/uptime)"; sleep 5; done) &
echo $! > /tmp/rig-heartbeat.pid

kvm=no
[ -c /dev/kvm ] && kvm=yes
echo "RIG-L2 up kernel=$(uname -r) cpus=$(nproc) kvm=$kvm scenario=$(sed -n 's/.*rig\.scenario=\([^ ]*\).*/\1/p' /proc/cmdline)"

if sh -c '. /rig/lib.sh; . /rig/scenario.sh' </dev/null; then
    echo "RIG-L2 result ok"
elif [ -s /tmp/rig-fail ]; then
    echo "RIG-L2 result FAIL $(cat /tmp/rig-fail)"
else
    echo "RIG-L2 result FAIL scenario script exited non-zero"
fi
sync
reboot -f
sleep 5
echo "RIG-L2 reboot -f did not end the machine"
