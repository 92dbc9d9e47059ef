#!/usr/bin/env bash
# The nested rig: QEMU (TCG, emulated SVM + AMD IOMMU) boots a small Linux
# rig host (L2) that runs nestor on its own /dev/kvm against a Linux guest (L3).
#
# usage: tests/rig/run.sh [SCENARIO...]     (no arguments: every scenario
#                                           without a "# rig-default: no" header)
# Prints "RIG NAME ok|FAIL reason" per scenario, then
# "RIG done passed=N failed=M pending=P"; exits 0 only if nothing failed
# (pending scenarios excepted), 2 if host packages are missing and it cannot
# install them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/deps.sh
. "$rig_dir/lib/deps.sh"
# shellcheck source=lib/nestor.sh
. "$rig_dir/lib/nestor.sh"
# shellcheck source=lib/initramfs.sh
. "$rig_dir/lib/initramfs.sh"
# shellcheck source=lib/qemu.sh
. "$rig_dir/lib/qemu.sh"
# shellcheck source=lib/scenario.sh
. "$rig_dir/lib/scenario.sh"

scenarios=("$@")
if [[ ${#scenarios[@]} -eq 0 ]]; then
    for f in "$rig_dir"/scenarios/*.sh; do
        [[ $f == *.host.sh ]] && continue
        [[ $(scenario_meta "$f" default yes) == no ]] && continue
        scenarios+=("$(basename "$f" .sh)")
    done
fi

ensure_host_packages
busybox_bin=/bin/busybox
[[ -x $busybox_bin ]] || die "busybox-static is installed but $busybox_bin is missing"
if readelf -l "$busybox_bin" | grep -q INTERP; then
    die "$busybox_bin is dynamically linked: install busybox-static instead of busybox"
fi

# Two kernels: the guest kernel nestor boots (L3), and the rig host's (L2),
# newer, with the iommufd test driver.
kernel_out=$("$repo_dir/resources/guest/build-kernel.sh") || die "the guest kernel did not build"
kernel_vmlinux=$(sed -n 's/^vmlinux=//p' <<<"$kernel_out")
kernel_bzimage=$(sed -n 's/^bzImage=//p' <<<"$kernel_out")
rig_host_out=$("$repo_dir/resources/guest/build-kernel.sh" --rig-host) \
    || die "the rig host kernel did not build"
rig_host_bzimage=$(sed -n 's/^bzImage=//p' <<<"$rig_host_out")

nestor_bin=""
for s in "${scenarios[@]}"; do
    if [[ -f $rig_dir/scenarios/$s.sh &&
          $(scenario_meta "$rig_dir/scenarios/$s.sh" nestor no) == yes ]]; then
        nestor_bin=$(build_static_nestor) || nestor_bin=""
        break
    fi
done

guest_entries=(dir:proc dir:sys dir:dev dir:tmp
               "file:init:$rig_dir/guest/init.sh:755"
               "file:bin/busybox:$busybox_bin:755" link:bin/sh:busybox)
for t in "$rig_dir"/guest/tasks/*.sh; do
    guest_entries+=("file:tasks/$(basename "$t"):$t:644")
done
l3_initrd=$(make_initramfs "${guest_entries[@]}")

run_dir="$rig_cache/runs/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$run_dir"
# Keep the ten most recent runs' logs.
find "$rig_cache/runs" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
    sort -rn | tail -n +11 | cut -d' ' -f2- | xargs -r rm -rf
log "logs: $run_dir"

# A scenario with a "# rig-pending: WHY" header waits for a feature nestor does
# not have yet: it runs and reports FAIL as usual, but does not fail the rig.
passed=0 failed=0 pending=0
for s in "${scenarios[@]}"; do
    why=""
    [[ -f $rig_dir/scenarios/$s.sh ]] && why=$(scenario_meta "$rig_dir/scenarios/$s.sh" pending "")
    if run_scenario "$s"; then
        passed=$((passed + 1))
        [[ -z $why ]] || log "$s passes now: remove its rig-pending header"
    elif [[ -n $why ]]; then
        pending=$((pending + 1))
        echo "RIG $s pending: expected to fail until $why"
    else
        failed=$((failed + 1))
    fi
done
echo "RIG done passed=$passed failed=$failed pending=$pending"
echo "rig: $passed passed, $failed failed, $pending skipped"
[[ $failed -eq 0 ]]
