#!/bin/sh
# Guest task: how this guest keeps time. Marks codes 3 and 4 on nestor's
# boot-timer port around a 5 s sleep, so the host measures the same sleep the
# guest measures. Prints:
#   GUEST clock current=CS available=CS,CS events=DEV,DEV broadcast=DEV irq0=N loc=N slept_ms=N
#   GUEST clock-log LINE (the kernel's clock and timer messages)
# current/available are clocksources, events the per-CPU clock event devices
# and broadcast the broadcast one (none: no PIT or HPET serves as one); irq0 is
# the IO-APIC timer pin (the PIT) and loc the local APIC timer, both counted
# across the sleep on every CPU; slept_ms is the guest's own measure.
# shellcheck shell=sh

# mark 3|4: writes that byte to the boot-timer port through /dev/port.
mark() {
    case $1 in
        3) printf '\003' ;;
        4) printf '\004' ;;
    esac | dd of=/dev/port bs=1 seek=$((0x440)) count=1 conv=notrunc 2>/dev/null
}
# count NAME: the sum of that /proc/interrupts row over every CPU (0 if absent).
count() {
    awk -v row="$1:" '$1 == row { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; print n; found = 1 }
                      END { if (!found) print 0 }' /proc/interrupts
}
uptime_ms() { awk '{ split($1, t, "."); print t[1] * 1000 + t[2] * 10 }' /proc/uptime; }

cs=/sys/devices/system/clocksource/clocksource0
ce=/sys/devices/system/clockevents
events=$(cat $ce/clockevent*/current_device 2>/dev/null | sort -u | tr '\n' ',' | sed 's/,$//')
broadcast=$(cat $ce/broadcast/current_device 2>/dev/null)
irq0=$(count 0) loc=$(count LOC) start=$(uptime_ms)
mark 3
sleep 5
mark 4
slept=$(( $(uptime_ms) - start ))
irq0=$(( $(count 0) - irq0 )) loc=$(( $(count LOC) - loc ))
echo "GUEST clock current=$(cat $cs/current_clocksource)" \
    "available=$(tr ' ' ',' < $cs/available_clocksource | sed 's/,*$//')" \
    "events=${events:-none} broadcast=${broadcast:-none} irq0=$irq0 loc=$loc slept_ms=$slept"
dmesg | grep -i -E 'clocksource|tsc|kvm-clock|apic.*timer|deadline|pit|8254|timer|hpet|calibrat' |
    sed 's/^/GUEST clock-log /'
