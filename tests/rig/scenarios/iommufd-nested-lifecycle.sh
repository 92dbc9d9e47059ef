# The iommufd nested back-end against the real kernel, through the kernel's
# iommufd test driver (CONFIG_IOMMUFD_TEST) in the rig host: the test
# driver's mock devices are the endpoints of a real virtio-iommu in nested
# mode over a vIOMMU, nest parent (guest RAM mapped), vDEVICEs and a nested
# HWPT per ATTACH_TABLE. ATTACH_TABLE, ATTACH, INVALIDATE, DETACH and hostile
# requests go through the requestq; the test driver's check operations show
# each nested HWPT made from the guest's STE and each invalidation reaching
# the right device; every kernel object is released at the end. Times one
# guest INVALIDATE through the vIOMMU (median). No guest is booted.
# rig-default: no
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

rig_selftest nested-lifecycle
median=$(sed -n 's/.*invalidate_median_us=\([0-9.]*\).*/\1/p' /tmp/selftest.out)
rig_info "invalidate through the vIOMMU: median_us=$median rounds=200"
rig_pass "nested lifecycle through the virtio-iommu against the kernel's iommufd"
