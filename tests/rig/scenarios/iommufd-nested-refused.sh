# A passed-through device asked for nested translation on a host IOMMU that
# cannot nest (the rig's emulated AMD IOMMU): with nested=require nestor stops
# before the guest runs, exit 2, one line naming the iommufd call that refused
# and what to do; with nested=prefer it warns and runs the device behind the
# virtio-iommu's MAP and UNMAP (probe=edu passes, a DMA to an unmapped IOVA is
# kept out). nested= without iommu=on, or with backend=container, is refused
# as a usage mistake.
# rig-timeout: 420
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

# expect_refusal TAG WANT VFIO: nestor exits 2 with one stderr line containing WANT.
expect_refusal() {
    rig_nestor "$1" 60 run --memory 64M --cmdline "probe=edu" --timeout 30 --vfio "$3"
    [ "$NESTOR_RC" = 2 ] || rig_fail "$1: exit $NESTOR_RC, want 2: $(tail -n1 "/tmp/$1.err")"
    lines=$(wc -l < "/tmp/$1.err")
    [ "$lines" = 1 ] || rig_fail "$1: $lines lines on stderr, want 1: $(head -n3 "/tmp/$1.err")"
    grep -q -- "$2" "/tmp/$1.err" || rig_fail "$1: stderr lacks '$2': $(cat "/tmp/$1.err")"
    rig_info "$1: $(cat "/tmp/$1.err")"
    rig_pass "$1: one-line refusal, exit 2"
}

expect_refusal require "IOMMU_GET_HW_INFO" "path=$RIG_EDU_PATH,iommu=on,nested=require"
grep -q "nested=prefer" /tmp/require.err || rig_fail "require: the refusal does not say what to do"
expect_refusal no-viommu "iommu=on" "path=$RIG_EDU_PATH,nested=require"
expect_refusal container "backend=container" "path=$RIG_EDU_PATH,iommu=on,backend=container,nested=prefer"

edu_probe prefer iova "path=$RIG_EDU_PATH,iommu=on,nested=prefer"
grep -q "nested=prefer: the host IOMMU cannot nest: IOMMU_GET_HW_INFO" /tmp/prefer.err ||
    rig_fail "prefer: nestor did not say why it fell back: $(grep -m1 nested /tmp/prefer.err)"
edu_expect_stale_iova_blocked prefer
rig_pass "nested=prefer falls back to MAP and UNMAP, with the reason"
