#!/bin/sh
# Guest task: a storm of port I/O exits. Writes rig.lines= (default 2000)
# lines of 80 characters to the kernel log; the kernel's serial console prints
# each character with an OUT to the UART's data port and an IN of its line
# status register, so every line costs the VMM about 160 port exits.
# Prints "GUEST console-storm lines=N".
# shellcheck shell=sh

lines=$(sed -n 's/.*rig\.lines=\([0-9]*\).*/\1/p' /proc/cmdline)
lines=${lines:-2000}
i=0
while [ "$i" -lt "$lines" ]; do
    echo "storm $i: 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456" > /dev/kmsg
    i=$((i + 1))
done
echo "GUEST console-storm lines=$lines"
