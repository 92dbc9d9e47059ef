#!/usr/bin/env bash
# nestor's start and end next to the floor: the least KVM work that runs the same guest
# (benches/floor, `nestor-floor`). Medians over RUNS interleaved runs (default 21) of
#   - start -> first KVM_RUN: from the start of main() to the boot vCPU's first KVM_RUN
#     (nestor's --boot-timer line, the floor's own, both counted from main());
#   - start -> first guest instruction: to the guest's first exit, its write to the
#     boot-timer port;
#   - start -> exit: from this script launching the program to the program being gone;
#   - the page faults before main() and from main() to the first KVM_RUN (nestor's are its
#     VMM thread's, per --boot-timer step; the floor has one thread).
# The guest is the floor's (`nestor-floor --write-guest`, run by nestor with --kernel as a
# PVH ELF): it writes code 0 to the boot-timer port, then 0 to the exit port. 128 MiB and
# one vCPU throughout. Rows: the floor; nestor; nestor with a virtio-blk disk behind the
# virtio-iommu; and the floor and nestor with --pit, the PIT nestor no longer creates by
# default. With NESTOR_BASELINE=PATH, another nestor binary runs in the same rounds, with
# and without the disk (to compare two builds side by side).
# With --rt, every program runs at real-time priority (SCHED_FIFO, through chrt; needs root):
# on a host whose CPUs other work keeps busy, the scheduler's delays otherwise swamp what is
# measured, and this is the nearest such a host comes to one with a CPU to spare.
# Usage: benches/startup.sh [--rt] [RUNS]. Needs /dev/kvm and bash 5.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: benches/startup.sh [--rt] [RUNS]" >&2; exit 2; }
priority=()
if [[ ${1:-} == --rt ]]; then
    command -v chrt >/dev/null || { echo "benches/startup.sh --rt needs chrt" >&2; exit 2; }
    priority=(chrt --fifo 10)
    shift
fi
runs=${1:-21}
[[ $runs =~ ^[1-9][0-9]*$ && $# -le 1 ]] || usage
[[ -n ${EPOCHREALTIME:-} ]] || { echo "benches/startup.sh needs bash 5 (EPOCHREALTIME)" >&2; exit 2; }
cargo build --release --quiet --bin nestor --bin nestor-floor
baseline=${NESTOR_BASELINE:-}
[[ -z $baseline || -x $baseline ]] || { echo "NESTOR_BASELINE=$baseline is not executable" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The programs run from copies, as from an install: a binary the linker has just written
# sits in the page cache in small pieces, and mapping it in page by page cost nestor, which
# touches much more of its binary than the floor, 0.15-0.2 ms more per start than a copy.
nestor=$work/nestor
floor=$work/nestor-floor
cp target/release/nestor "$nestor"
cp target/release/nestor-floor "$floor"
if [[ -n $baseline ]]; then
    cp "$baseline" "$work/baseline"
    baseline=$work/baseline
fi
"$floor" --write-guest "$work/guest.elf"
truncate -s 64M "$work/disk.img"
guest=(run --kernel "$work/guest.elf" --memory 128M --serial off --boot-timer)
disk=(--disk "path=$work/disk.img,iommu=on")

labels=(floor nestor nestor+disk floor+pit nestor+pit)
declare -A cmd=(
    [floor]="$floor --memory 128"
    [nestor]="$nestor ${guest[*]}"
    [nestor+disk]="$nestor ${guest[*]} ${disk[*]}"
    [floor+pit]="$floor --memory 128 --pit"
    [nestor+pit]="$nestor ${guest[*]} --pit"
)
if [[ -n $baseline ]]; then
    labels+=(baseline baseline+disk)
    cmd[baseline]="$baseline ${guest[*]}"
    cmd[baseline+disk]="$baseline ${guest[*]} ${disk[*]}"
fi

# Microseconds from a "seconds.micros" EPOCHREALTIME.
us() { local s=${1%.*} f=${1#*.}; echo $(( 10#$s * 1000000 + 10#$f )); }

# "BEFORE_MAIN TO_FIRST_RUN" page faults from a --boot-timer report: step=main's count, and
# the sum of the counts of the lines up to the first KVM_RUN (a build without counts: "- -").
faults() {
    awk '/step=main / { split($0, f, "faults="); before = f[2]; next }
         / faults=/ { split($0, f, "faults="); upto += f[2] }
         /first KVM_RUN/ { found = 1; exit }
         END { if (found && before != "") print before, upto + 0; else print "-", "-" }' "$1"
}

declare -A first_run first_insn total faults_before faults_upto
for _ in $(seq "$runs"); do
    for label in "${labels[@]}"; do
        read -ra argv <<<"${cmd[$label]}"
        start=$EPOCHREALTIME
        if ! "${priority[@]}" "${argv[@]}" >/dev/null 2>"$work/err"; then
            echo "$label failed: ${cmd[$label]}" >&2
            cat "$work/err" >&2
            exit 1
        fi
        end=$EPOCHREALTIME
        first_run[$label]+=" $(sed -n 's/.*first KVM_RUN at \([0-9]*\) us.*/\1/p' "$work/err")"
        first_insn[$label]+=" $(sed -n 's/.*boot-timer code=0 at \([0-9]*\) us.*/\1/p' "$work/err" | head -n1)"
        total[$label]+=" $(( $(us "$end") - $(us "$start") ))"
        read -r before upto < <(faults "$work/err")
        faults_before[$label]+=" $before"
        faults_upto[$label]+=" $upto"
    done
done

median() { tr ' ' '\n' | awk '/^[0-9]/' | sort -n | awk '{ a[NR] = $1 } END { if (!NR) exit; print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
declare -A med
for label in "${labels[@]}"; do
    med[$label,run]=$(median <<<"${first_run[$label]}")
    med[$label,insn]=$(median <<<"${first_insn[$label]}")
    med[$label,exit]=$(median <<<"${total[$label]}")
    med[$label,before]=$(median <<<"${faults_before[$label]}")
    med[$label,upto]=$(median <<<"${faults_upto[$label]}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

# The floor a row is compared with: the floor with the same PIT.
floor_of() { case $1 in *pit) echo floor+pit ;; *) echo floor ;; esac; }

echo "startup: $runs interleaved runs${priority[*]:+ at real-time priority}, medians in us; ratios to the floor with the same PIT"
printf '%-16s %22s %22s %22s\n' "" "start->first KVM_RUN" "start->first insn" "start->exit"
for label in "${labels[@]}"; do
    base=$(floor_of "$label")
    row=$(printf '%-16s' "$label")
    for m in run insn exit; do
        if [[ $label == floor* ]]; then
            row+=$(printf ' %22s' "${med[$label,$m]}")
        else
            row+=$(printf ' %14s (%5s)' "${med[$label,$m]}" "$(ratio "${med[$label,$m]}" "${med[$base,$m]}")")
        fi
    done
    echo "$row"
done

echo
echo "page faults, medians: before main, main -> first KVM_RUN"
for label in "${labels[@]}"; do
    printf '%-16s %22s %22s\n' "$label" "${med[$label,before]:--}" "${med[$label,upto]:--}"
done

added() { printf '%+d' $(( med[$1+disk,$2] - med[$1,$2] )); }
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; then echo met; else echo "NOT met"; fi; }
run_ratio=$(awk -v a="${med[nestor,run]}" -v b="${med[floor,run]}" 'BEGIN { print a / b }')
exit_ratio=$(awk -v a="${med[nestor,exit]}" -v b="${med[floor,exit]}" 'BEGIN { print a / b }')
echo
echo "disk + virtio-iommu add: first KVM_RUN $(added nestor run) us, first insn $(added nestor insn) us, exit $(added nestor exit) us"
[[ -z $baseline ]] ||
    echo "  (baseline: first KVM_RUN $(added baseline run) us, first insn $(added baseline insn) us, exit $(added baseline exit) us)"
echo "targets: first KVM_RUN $(ratio "${med[nestor,run]}" "${med[floor,run]}") of the floor (<= 1.30x: $(verdict "$run_ratio" 1.3));" \
    "exit $(ratio "${med[nestor,exit]}" "${med[floor,exit]}") (<= 1.50x: $(verdict "$exit_ratio" 1.5));" \
    "disk + virtio-iommu $(added nestor run) us to first KVM_RUN, $(added nestor exit) us to exit" \
    "(< 1000 us: $(verdict "$(( $(added nestor run) > $(added nestor exit) ? $(added nestor run) : $(added nestor exit) ))" 999))"
