# The fault relay against the real kernel, through the kernel's iommufd test
# driver (CONFIG_IOMMUFD_TEST; vEVENTQ from 6.15) in the rig host:
# nestor-iommufd-selftest reads a page request the test driver injects from
# a real fault queue and answers it, a second answer refused (fault-queue),
# and sees the kernel answer the groups pending when their HWPT is replaced
# (fault-detach). Then a real virtio-iommu in nested mode over the iommufd
# nested back-end, a mock device its endpoint (fault-relay): vEVENTQ events
# arrive on the eventq as fault records, a depth-2 queue's overflow as a
# lost-events record; 200 page requests travel through nestor's fault relay
# thread and the eventq to a driver-side responder whose PAGE_RESP goes back
# through the requestq, each accepted by the kernel (round trip median);
# a DETACH with requests pending leaves them answered by the kernel and
# forgotten by the relay, the guest's late answers refused. No guest is
# booted.
# rig-default: no
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

rig_selftest fault-queue fault-detach fault-relay
median=$(sed -n 's/.*round_trip_median_us=\([0-9.]*\).*/\1/p' /tmp/selftest.out)
rig_info "page request round trip through the relay and the virtio-iommu: median_us=$median rounds=200"
rig_pass "fault relay through the virtio-iommu against the kernel's iommufd"
