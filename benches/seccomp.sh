#!/usr/bin/env bash
# What the seccomp filters cost on the exit path: the bundled unikernel writes the boot-timer
# port (0x440) N times (`probe=pio-loop:N`), each write one exit to nestor's vCPU thread and
# back, with `--seccomp on` and `--seccomp off`, runs alternating so both see the same noise.
# The same runs with N=0 give the fixed cost of a run, so
#   per-exit round trip = (median wall time at N - median wall time at 0) / N.
# Prints the medians per mode and the on/off ratios.
# Usage: benches/seccomp.sh [N] [RUNS]   (defaults 3000 and 15). Needs /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/.."
writes=${1:-3000}
runs=${2:-15}
cargo build --release --quiet
bin=target/release/nestor

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Wall time of one run in microseconds; fails the script if the guest did not pass.
time_run() {
    local mode=$1 count=$2 start end
    start=$(date +%s%N)
    "$bin" run --cmdline "probe=pio-loop:$count" --serial off --seccomp "$mode" --timeout 300
    end=$(date +%s%N)
    echo $(((end - start) / 1000))
}

declare -A samples
for _ in $(seq "$runs"); do
    for mode in on off; do
        samples[$mode-loop]+="$(time_run "$mode" "$writes") "
        samples[$mode-empty]+="$(time_run "$mode" 0) "
    done
done

declare -A med
for key in "${!samples[@]}"; do
    med[$key]=$(tr ' ' '\n' <<<"${samples[$key]}" | grep . | median)
done
per_exit() { awk -v t="${med[$1-loop]}" -v b="${med[$1-empty]}" -v n="$writes" 'BEGIN {printf "%.2f", (t - b) / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

on_exit=$(per_exit on) off_exit=$(per_exit off)
printf 'runs: %s per mode, N = %s port writes\n' "$runs" "$writes"
printf '%-8s %18s %18s %16s\n' mode "median run at N" "median run at 0" "per exit"
for mode in on off; do
    printf '%-8s %15s us %15s us %13s us\n' "$mode" "${med[$mode-loop]}" "${med[$mode-empty]}" "$(per_exit "$mode")"
done
printf 'on/off ratio: whole run at N %s, per exit %s\n' \
    "$(ratio "${med[on-loop]}" "${med[off-loop]}")" "$(ratio "$on_exit" "$off_exit")"
