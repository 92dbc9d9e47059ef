#!/bin/sh
# Guest task: the slowest initcalls of this boot (needs initcall_debug on the
# command line). Prints: GUEST initcall USECS NAME, slowest first.
# shellcheck shell=sh

dmesg | sed -n 's/.*initcall \([^ ]*\) returned [-0-9]* after \([0-9]*\) usecs.*/\2 \1/p' |
    sort -rn | head -n 12 | while read -r usecs name; do
        echo "GUEST initcall $usecs $name"
    done
