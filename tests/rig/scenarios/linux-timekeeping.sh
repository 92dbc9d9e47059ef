# Linux keeps time on nestor without a PIT: boots the PVH and bzImage guests
# with nestor's defaults (no PIT) and once each with --pit, and checks that the
# guest's clocksource is kvm-clock or tsc, that its local APIC timer fires, and
# that a 5 s `sleep` in the guest takes 5 s of the rig host's time too (nestor
# timestamps the guest's boot-timer writes before and after it). Reports the
# guest kernel's clock and timer messages and the boot-timer marks.
# rig-timeout: 600
# rig-nestor: yes
# shellcheck shell=sh
set -u

cmdline="console=ttyS0 loglevel=4 panic=-1 rdinit=/init rig.task=timekeeping"

# mark_us TAG CODE: when nestor saw the guest write CODE, in us since it started.
mark_us() {
    sed -n "s/^nestor: boot-timer code=$2 at \([0-9]*\) us.*/\1/p" "/tmp/$1.err" | head -n1
}

boot_one() {
    tag=$1 kernel=$2
    shift 2
    rig_nestor "$tag" 150 run --kernel "$kernel" --initrd "$RIG_L3_INITRD" \
        --cpus 2 --memory 512M --cmdline "$cmdline" --boot-timer "$@"
    rig_boot_timer "$tag"
    rig_expect_clean_exit "$tag"
    line=$(grep -m1 '^GUEST clock ' "/tmp/$tag.out" | tr -d '\r')
    [ -n "$line" ] || rig_fail "$tag: the guest printed no GUEST clock line"
    grep '^GUEST clock-log ' "/tmp/$tag.out" | tr -d '\r' | while read -r log; do
        rig_info "$tag ${log#GUEST }"
    done
    t3=$(mark_us "$tag" 3) t4=$(mark_us "$tag" 4)
    if [ -z "$t3" ] || [ -z "$t4" ]; then
        rig_fail "$tag: nestor saw no boot-timer codes 3 and 4"
    fi
    host_ms=$(( (t4 - t3) / 1000 )) guest_ms=$(rig_field slept_ms)
    rig_info "$tag ${line#GUEST } host_ms=$host_ms"
    case $(rig_field current) in
        kvm-clock|tsc) ;;
        *) rig_fail "$tag: clocksource $(rig_field current), not kvm-clock or tsc" ;;
    esac
    [ "$(rig_field loc)" -gt 0 ] || rig_fail "$tag: no local APIC timer interrupt during the sleep"
    # sleep 5 takes 5 s and a wake-up; both clocks must agree within 10%.
    if [ "$host_ms" -lt 5000 ] || [ "$host_ms" -gt 6000 ]; then
        rig_fail "$tag: the guest's 5 s sleep took $host_ms ms of host time"
    fi
    diff=$(( guest_ms > host_ms ? guest_ms - host_ms : host_ms - guest_ms ))
    [ $(( diff * 10 )) -le "$host_ms" ] ||
        rig_fail "$tag: the guest measured $guest_ms ms for a sleep the host timed at $host_ms ms"
    rig_pass "$tag"
}

boot_one pvh "$RIG_VMLINUX"
boot_one bzimage "$RIG_BZIMAGE"
boot_one pvh-pit "$RIG_VMLINUX" --pit
boot_one bzimage-pit "$RIG_BZIMAGE" --pit
