#!/usr/bin/env bash
# Startup cost of nestor: the median over RUNS runs of
#   - process start -> first KVM_RUN (the VMM's share),
#   - process start -> first guest instruction (the unikernel writes boot-timer code 0 at
#     its PVH entry),
#   - process start -> exit, for `nestor run --cmdline probe=boot`.
# Usage: benches/startup.sh [RUNS]   (default 15). Needs /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-15}
cargo build --release --quiet
bin=target/release/nestor

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

first_run=() first_insn=() total=()
for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    err=$("$bin" run --cmdline probe=boot --boot-timer --serial off 2>&1 >/dev/null)
    end=$(date +%s%N)
    first_run+=("$(sed -n 's/^nestor: first KVM_RUN at \([0-9]*\) us$/\1/p' <<<"$err")")
    first_insn+=("$(sed -n 's/^nestor: boot-timer code=0 at \([0-9]*\) us$/\1/p' <<<"$err" | head -1)")
    total+=("$(( (end - start) / 1000 ))")
done

printf 'runs: %s\n' "$runs"
printf 'start -> first KVM_RUN:          median %s us\n' "$(printf '%s\n' "${first_run[@]}" | median)"
printf 'start -> first guest instruction: median %s us\n' "$(printf '%s\n' "${first_insn[@]}" | median)"
printf 'start -> exit (probe=boot):       median %s us\n' "$(printf '%s\n' "${total[@]}" | median)"
