# The host back-ends of passthrough, each named: the bundled unikernel drives
# QEMU's edu device (probe=edu, see vfio-edu-viommu) over iommufd
# (backend=iommufd: the device's VFIO cdev bound to /dev/iommu, an IOAS per
# address space) and over the legacy VFIO container (backend=container), each
# without the virtio-iommu (guest RAM mapped at IOVA = GPA) and behind it
# (iommu=on: MAP and UNMAP become host mappings; a DMA to an unmapped IOVA must
# not land). Then the default: iommufd while the rig host has /dev/iommu, the
# container once it is gone, and backend=iommufd refused with a one-line error
# and exit status 2.
# rig-timeout: 600
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

for backend in iommufd container; do
    case $backend in
        iommufd) said="over iommufd" ;;
        container) said="over the VFIO container" ;;
    esac
    edu_probe "$backend-direct" guest-physical "path=$RIG_EDU_PATH,backend=$backend"
    grep -q "$said, all guest RAM mapped" "/tmp/$backend-direct.err" ||
        rig_fail "$backend-direct: nestor did not use $backend"
    edu_probe "$backend-viommu" iova "path=$RIG_EDU_PATH,backend=$backend,iommu=on"
    grep -q "$said, behind the virtio-iommu" "/tmp/$backend-viommu.err" ||
        rig_fail "$backend-viommu: nestor did not use $backend"
    edu_expect_stale_iova_blocked "$backend-viommu"
done

# The default follows the host: iommufd while /dev/iommu exists...
[ -c /dev/iommu ] || rig_fail "the rig host has no /dev/iommu"
edu_probe default-iommufd guest-physical "path=$RIG_EDU_PATH"
grep -q "over iommufd" /tmp/default-iommufd.err ||
    rig_fail "default-iommufd: nestor did not pick iommufd with /dev/iommu present"
rig_pass "default back-end with /dev/iommu: iommufd"

# ...and the container once it is gone.
mv /dev/iommu /dev/iommu.hidden
edu_probe default-container guest-physical "path=$RIG_EDU_PATH"
grep -q "over the VFIO container" /tmp/default-container.err || {
    mv /dev/iommu.hidden /dev/iommu
    rig_fail "default-container: nestor did not fall back to the container"
}
rig_pass "default back-end without /dev/iommu: the VFIO container"
rig_nestor no-iommufd 60 run --memory 64M --cmdline "probe=edu" --timeout 30 \
    --vfio "path=$RIG_EDU_PATH,backend=iommufd"
mv /dev/iommu.hidden /dev/iommu
[ "$NESTOR_RC" = 2 ] || rig_fail "backend=iommufd without /dev/iommu: exit $NESTOR_RC, want 2"
lines=$(wc -l < /tmp/no-iommufd.err)
[ "$lines" = 1 ] || rig_fail "backend=iommufd without /dev/iommu: $lines lines on stderr, want 1"
grep -q '/dev/iommu' /tmp/no-iommufd.err ||
    rig_fail "backend=iommufd without /dev/iommu: $(cat /tmp/no-iommufd.err)"
rig_info "no-iommufd: $(cat /tmp/no-iommufd.err)"
rig_pass "backend=iommufd without /dev/iommu: one-line error, exit 2"
