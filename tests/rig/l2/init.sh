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

# The heartbeat on ttyS2: the host ends a rig host that stops beating (hung).
stty -F /dev/ttyS2 raw -echo 2>/dev/null || true
(while :; do echo "beat $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS2; sleep 5; done) &

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
