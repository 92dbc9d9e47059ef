# Helpers for scenario scripts running inside the rig host (L2, busybox sh).
# shellcheck shell=sh disable=SC2034

RIG_NESTOR=/rig/nestor
RIG_VMLINUX=/rig/l3/vmlinux
RIG_BZIMAGE=/rig/l3/bzImage
RIG_L3_INITRD=/rig/l3/initrd.cpio
RIG_GUEST_CONSOLE=/dev/ttyS1

# rig.pin=CPUS on the rig host's command line (RIG_L2_ARGS on the host) runs the
# VMM under taskset on those CPUs: with RIG_SMP=2, that tells the rig's own
# fault from the VMM's (README.md, "The rig's own fault").
RIG_PIN=$(sed -n 's/.*rig\.pin=\([0-9,-]*\).*/\1/p' /proc/cmdline)

rig_info() { echo "RIG-L2 info $*"; }

# Ends the scenario with a failure reason.
rig_fail() {
    echo "$*" > /tmp/rig-fail
    echo "RIG-L2 check FAIL $*"
    exit 1
}

rig_pass() { echo "RIG-L2 check ok $*"; }

# rig_field KEY: the value of KEY=VALUE in $line, the guest's result line the
# scenario read.
rig_field() { echo "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# rig_nestor TAG TIMEOUT ARGS...: runs nestor; its stdout (the guest console)
# goes to /tmp/TAG.out and to ttyS1, its stderr to /tmp/TAG.err and, once it
# has ended, to this console. Sets NESTOR_RC (124 or 143 on timeout).
rig_nestor() {
    _tag=$1 _timeout=$2
    shift 2
    [ -x "$RIG_NESTOR" ] || rig_fail "nestor is not in the rig image"
    rig_vmm "$_tag" "$_timeout" "$RIG_NESTOR" "$@"
}

# rig_vmm TAG TIMEOUT VMM ARGS...: rig_nestor for any VMM binary.
rig_vmm() {
    _tag=$1 _timeout=$2 _vmm=$3
    shift 3
    echo "===== ${_vmm##*/} $_tag: $*" > "$RIG_GUEST_CONSOLE"
    echo "RIG-L2 run $_tag: ${_vmm##*/} $*"
    { timeout "$_timeout" ${RIG_PIN:+taskset -c "$RIG_PIN"} "$_vmm" "$@" 2> "/tmp/$_tag.err"
      echo $? > "/tmp/$_tag.rc"; } | tee "/tmp/$_tag.out" > "$RIG_GUEST_CONSOLE"
    NESTOR_RC=$(cat "/tmp/$_tag.rc")
    echo "===== ${_vmm##*/} $_tag exited $NESTOR_RC" > "$RIG_GUEST_CONSOLE"
    sed "s/^/nestor-stderr[$_tag]: /" "/tmp/$_tag.err"
    echo "RIG-L2 run $_tag: exit $NESTOR_RC"
}

# rig_boot_timer TAG: reports nestor's --boot-timer lines of a run as info.
rig_boot_timer() {
    grep -E '^nestor: (boot-timer|first KVM_RUN)' "/tmp/$1.err" | while read -r line; do
        rig_info "$1 ${line#nestor: }"
    done
}

# rig_expect_clean_exit TAG: fails the scenario unless nestor's run TAG exited 0,
# quoting nestor's error line.
rig_expect_clean_exit() {
    [ "$NESTOR_RC" = 0 ] && return 0
    _err=$(grep 'nestor: error' "/tmp/$1.err" | tail -n1)
    [ -n "$_err" ] || _err=$(tail -n1 "/tmp/$1.err")
    case $NESTOR_RC in
        124|143) rig_fail "$1: nestor timed out (killed): ${_err:-no stderr}" ;;
        *) rig_fail "$1: nestor exited $NESTOR_RC: ${_err:-no stderr}" ;;
    esac
}

# rig_bind_edu: finds QEMU's edu device (1234:11e8), checks it is alone in its
# IOMMU group and binds it to vfio-pci. Sets RIG_EDU (its BDF) and RIG_EDU_PATH
# (its sysfs directory, what --vfio path= takes); reports its group as info.
rig_bind_edu() {
    RIG_EDU=""
    for _d in /sys/bus/pci/devices/*; do
        if [ "$(cat "$_d/vendor")" = 0x1234 ] && [ "$(cat "$_d/device")" = 0x11e8 ]; then
            RIG_EDU=${_d##*/}
            break
        fi
    done
    [ -n "$RIG_EDU" ] || rig_fail "edu device (1234:11e8) not found in the rig host"
    RIG_EDU_PATH=/sys/bus/pci/devices/$RIG_EDU
    [ -e "$RIG_EDU_PATH/iommu_group" ] || rig_fail "$RIG_EDU has no IOMMU group"
    _group=$(basename "$(readlink -f "$RIG_EDU_PATH/iommu_group")")
    _members=""
    for _m in "$RIG_EDU_PATH"/iommu_group/devices/*; do _members="$_members${_m##*/} "; done
    rig_info "edu=$RIG_EDU group=$_group members=$_members"
    [ "$_members" = "$RIG_EDU " ] || rig_fail "edu shares IOMMU group $_group with: $_members"

    echo vfio-pci > "$RIG_EDU_PATH/driver_override"
    [ -e "$RIG_EDU_PATH/driver" ] && echo "$RIG_EDU" > "$RIG_EDU_PATH/driver/unbind"
    echo "$RIG_EDU" > /sys/bus/pci/drivers_probe
    _driver=$(basename "$(readlink -f "$RIG_EDU_PATH/driver")")
    [ "$_driver" = vfio-pci ] || rig_fail "edu is bound to '$_driver', not vfio-pci"
    [ -c "/dev/vfio/$_group" ] || rig_fail "/dev/vfio/$_group missing"
    rig_pass "edu bound to vfio-pci"
}

# edu_probe TAG MODE VFIO_OPTIONS: boots the bundled unikernel with probe=edu and
# --vfio VFIO_OPTIONS (after rig_bind_edu), and checks its verdict and the DMA
# mode it reports (dma=guest-physical or dma=iova).
edu_probe() {
    rig_nestor "$1" 120 -v run --memory 256M --cmdline "probe=edu" --vfio "$3" --timeout 100
    grep -E 'passthrough|mapped for DMA' "/tmp/$1.err" | while read -r l; do rig_info "$1 ${l#nestor: }"; done
    _line=$(grep -m1 '^edu: ' "/tmp/$1.out" | tr -d '\r')
    [ -n "$_line" ] && rig_info "$1 ${_line#edu: }"
    # The probe's own reason first: a failed probe also makes nestor exit 1.
    _verdict=$(grep -m1 '^PROBE edu ' "/tmp/$1.out" | tr -d '\r')
    case $_verdict in
        "PROBE edu ok") ;;
        "PROBE edu "*) rig_fail "$1: $_verdict" ;;
    esac
    rig_expect_clean_exit "$1"
    [ -n "$_verdict" ] || rig_fail "$1: no PROBE edu line"
    case $_line in
        *" dma=$2 "*) ;;
        *) rig_fail "$1: the probe did not run with dma=$2: $_line" ;;
    esac
    rig_pass "$1: edu DMA round trip with dma=$2, MSI on completion"
}

# edu_expect_stale_iova_blocked TAG: the probe run TAG (behind the virtio-iommu)
# showed a DMA to an unmapped IOVA does not reach guest memory.
edu_expect_stale_iova_blocked() {
    case $(grep -m1 '^edu: ' "/tmp/$1.out") in
        *stale-iova=blocked*) rig_pass "$1: DMA to an unmapped IOVA did not reach guest memory" ;;
        *) rig_fail "$1: the stale-IOVA check did not run" ;;
    esac
}

# rig_selftest CHECK...: runs nestor-iommufd-selftest's checks against the
# kernel's iommufd test driver, reports each check's line, and fails the
# scenario unless every named check ran and passed.
rig_selftest() {
    _bin=/rig/nestor-iommufd-selftest
    [ -x "$_bin" ] || rig_fail "nestor-iommufd-selftest is not in the rig image"
    [ -d /sys/bus/iommufd_mock ] ||
        rig_fail "the rig kernel has no iommufd test driver (CONFIG_IOMMUFD_TEST)"
    "$_bin" "$@" > /tmp/selftest.out 2> /tmp/selftest.err
    _rc=$?
    while read -r _line; do
        rig_info "${_line#iommufd-selftest: }"
    done < /tmp/selftest.out
    [ "$_rc" = 0 ] || rig_fail "nestor-iommufd-selftest exited $_rc: $(grep FAIL /tmp/selftest.out | head -n1)$(tail -n1 /tmp/selftest.err)"
    [ "$(grep -c '^iommufd-selftest: [a-z-]* ok' /tmp/selftest.out)" = $# ] ||
        rig_fail "not every check ran: $(cat /tmp/selftest.out /tmp/selftest.err | tail -n2)"
}
