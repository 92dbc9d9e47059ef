# nestor's iommufd fault code against the real kernel, through the kernel's
# iommufd test driver (CONFIG_IOMMUFD_TEST) in the rig host:
# nestor-iommufd-selftest reads page requests the test driver injects from a
# real fault queue and answers them (fault-queue), sees the kernel answer the
# groups still pending when their HWPT is replaced (fault-detach), relays 200
# page requests through nestor's fault relay thread to a responder and back,
# each answer accepted by the kernel, timing the round trip (relay), and reads
# a vEVENTQ that overflows into LOST_EVENTS (vevents). Needs a rig kernel with
# the test driver (6.15 or later for vEVENTQ).
# rig-default: no
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

bin=/rig/nestor-iommufd-selftest
[ -x "$bin" ] || rig_fail "nestor-iommufd-selftest is not in the rig image"
[ -d /sys/bus/iommufd_mock ] ||
    rig_fail "the rig kernel has no iommufd test driver (CONFIG_IOMMUFD_TEST)"
"$bin" > /tmp/selftest.out 2> /tmp/selftest.err
rc=$?
while read -r line; do
    case $line in
        "iommufd-selftest: "*" ok"*) rig_info "${line#iommufd-selftest: }" ;;
        *) rig_info "$line" ;;
    esac
done < /tmp/selftest.out
[ "$rc" = 0 ] || rig_fail "nestor-iommufd-selftest exited $rc: $(grep FAIL /tmp/selftest.out | head -n1)$(tail -n1 /tmp/selftest.err)"
[ "$(grep -c ' ok' /tmp/selftest.out)" = 4 ] || rig_fail "not every check ran"
rig_pass "4 checks against the kernel's iommufd"
