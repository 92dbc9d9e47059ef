#!/usr/bin/env bash
# Host side of linux-boot-profile: names the guest's slowest initcalls (the
# kernel has no kallsyms) from vmlinux's symbol table.
# env: RIG_GUEST_LOG, RIG_VMLINUX
set -euo pipefail

symbols=$(mktemp)
trap 'rm -f "$symbols"' EXIT
nm "$RIG_VMLINUX" | awk '$2 ~ /^[tT]$/ { print $1, $3 }' > "$symbols"
tr -d '\r' < "$RIG_GUEST_LOG" | sed -n 's/^GUEST initcall \([0-9]*\) 0x\([0-9a-f]*\)$/\1 \2/p' |
    while read -r usecs addr; do
        name=$(awk -v a="$addr" '$1 == a { print $2; exit }' "$symbols")
        printf 'INFO initcall_us=%s %s\n' "$usecs" "${name:-0x$addr}"
    done
