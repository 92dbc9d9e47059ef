# Rig self-test: the rig host (L2) boots, has a working /dev/kvm (nested SVM),
# sees QEMU's AMD IOMMU and the edu device, and its kernel (6.15 or later) has
# /dev/iommu and the iommufd test driver. Needs no nestor.
# rig-timeout: 120
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

[ -c /dev/kvm ] || rig_fail "/dev/kvm missing in L2"
rig_pass "/dev/kvm present"
grep -q svm /proc/cpuinfo || rig_fail "no svm flag in L2 /proc/cpuinfo"
rig_pass "svm in L2"
iommus=""
for d in /sys/class/iommu/*; do
    [ -e "$d" ] && iommus="$iommus${d##*/},"
done
[ -n "$iommus" ] || rig_fail "no IOMMU in /sys/class/iommu"
rig_info "iommus=$iommus"
edu=$(grep -l 0x11e8 /sys/bus/pci/devices/*/device 2>/dev/null | head -n1)
[ -n "$edu" ] || rig_fail "edu device (1234:11e8) not found"
rig_info "edu=$(basename "$(dirname "$edu")") group=$(basename "$(readlink -f "$(dirname "$edu")/iommu_group")")"
rig_info "kernel=$(uname -r)"
[ -c /dev/iommu ] || rig_fail "/dev/iommu missing in L2 (CONFIG_IOMMUFD)"
[ -d /sys/bus/iommufd_mock ] ||
    rig_fail "the rig host kernel has no iommufd test driver (CONFIG_IOMMUFD_TEST)"
rig_pass "/dev/iommu and the iommufd test driver"
