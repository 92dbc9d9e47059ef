# Informational: what one exit from a guest to nestor costs in the rig, by kind
# (probe exit-cost: a port write and an MMIO write that change nothing, timed in
# the guest with the TSC). Every synchronous virtio-iommu request costs at least
# one such exit, so this is the floor under a translated device's MAP and UNMAP
# traffic. Reports "INFO guest-exit-cost run=N exit-cost: kind=pio|mmio ...";
# the figures are not judged.
# rig-default: no
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

for run in 1 2; do
    rig_nestor "exit-cost-$run" 200 run --cmdline "probe=exit-cost:500" --timeout 150
    rig_expect_clean_exit "exit-cost-$run"
    lines=$(grep '^exit-cost: ' "/tmp/exit-cost-$run.out" | tr -d '\r')
    [ "$(echo "$lines" | grep -c 'median_ns=')" = 2 ] ||
        rig_fail "run $run: the probe printed no timings"
    echo "$lines" | while read -r l; do rig_info "run=$run $l"; done
done
rig_pass "exits timed"
