# How long nestor takes to map memory for a passed-through device's DMA, with
# QEMU's edu device bound to vfio-pci in the rig host. First, without the
# virtio-iommu, the time nestor logs (-v) for mapping all of a 512 MiB guest's
# RAM. Then behind it (--vfio ...,iommu=on): the bundled unikernel attaches edu
# to a domain, so every MAP and UNMAP is a host VFIO map and unmap in nestor,
# and times N MAP+UNMAP rounds of a 4 KiB and of a 2 MiB mapping with the TSC
# (probe viommu-map-bench; rig.rounds=N on the rig host's command line, default
# 100). Informational: the figures are not judged.
# rig-timeout: 600
# rig-nestor: yes
# rig-default: no
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rounds=$(sed -n 's/.*rig\.rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
rounds=${rounds:-100}

rig_bind_edu

rig_nestor ram 120 -v run --memory 512M --cmdline "probe=hold:1" \
    --vfio "path=$RIG_EDU_PATH" --timeout 100
rig_expect_clean_exit ram
mapped=$(grep -m1 'mapped for DMA in' /tmp/ram.err)
if [ -n "$mapped" ]; then
    rig_info "512M guest: ${mapped#*vfio: }"
else
    rig_info "512M guest: nestor did not log how long mapping guest RAM for DMA took"
fi

rig_nestor bench 500 run --memory 256M --cmdline "probe=viommu-map-bench:$rounds" \
    --vfio "path=$RIG_EDU_PATH,iommu=on" --timeout 480
rig_expect_clean_exit bench
grep '^viommu-map-bench: ' /tmp/bench.out | tr -d '\r' | while read -r l; do
    rig_info "${l#viommu-map-bench: }"
done
verdict=$(grep -m1 '^PROBE viommu-map-bench ' /tmp/bench.out | tr -d '\r')
[ "$verdict" = "PROBE viommu-map-bench ok" ] || rig_fail "bench: ${verdict:-no PROBE line}"
for size in 4KiB 2MiB; do
    grep -q "^viommu-map-bench: map+unmap size=$size " /tmp/bench.out ||
        rig_fail "no map+unmap figures for $size"
done
rig_pass "MAP+UNMAP timed for 4 KiB and 2 MiB mappings"
