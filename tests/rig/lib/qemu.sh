# shellcheck shell=bash
# Boots the rig host (L2) under QEMU TCG with emulated SVM. Sourced by run.sh.

# boot_l2 TIMEOUT KERNEL INITRD CMDLINE L2_LOG GUEST_LOG [QEMU ARGS...]
# L2 has one CPU unless RIG_SMP says otherwise: with two, QEMU's emulated SVM
# corrupts the guests L2 runs (README.md, "The rig's own fault").
# L2's ttyS0 (its console, the RIG-L2 protocol and a heartbeat line every 5 s,
# l2/init.sh) goes to L2_LOG, its ttyS1 (nestor's guest console) to GUEST_LOG,
# QEMU's own messages to L2_LOG.qemu. Returns QEMU's status (124: timeout), or
# 125 when L2_LOG did not grow for RIG_HUNG_AFTER seconds (default 120): a hung
# rig host is ended at once instead of at the timeout.
boot_l2() {
    local timeout=$1 kernel=$2 initrd=$3 cmdline=$4 l2_log=$5 guest_log=$6
    shift 6
    local hung_after=${RIG_HUNG_AFTER:-120}
    local rc=0 qemu_pid size last_size=-1 last_change=$SECONDS machine=q35 iommu=amd-iommu
    # RIG_IOMMU=intel: QEMU's VT-d model instead of its AMD IOMMU (with the
    # split irqchip its interrupt remapping asks for).
    case ${RIG_IOMMU:-amd} in
        amd) ;;
        intel) machine=q35,kernel-irqchip=split iommu=intel-iommu ;;
        *) die "RIG_IOMMU=${RIG_IOMMU}: want amd or intel" ;;
    esac
    timeout -k 10 "$timeout" qemu-system-x86_64 \
        -M "$machine" -accel "tcg${RIG_TCG:+,$RIG_TCG}" -cpu EPYC,+svm,+npt -m 2048 \
        -smp "${RIG_SMP:-1}" -device "$iommu" -nic none -nographic -no-reboot -monitor none \
        -serial stdio -serial "file:$guest_log" \
        -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
        "$@" </dev/null >"$l2_log" 2>"$l2_log.qemu" &
    qemu_pid=$!
    while kill -0 "$qemu_pid" 2>/dev/null; do
        sleep 1
        size=$(stat -c %s "$l2_log" 2>/dev/null || echo 0)
        if [[ $size != "$last_size" ]]; then
            last_size=$size last_change=$SECONDS
        elif (( SECONDS - last_change > hung_after )); then
            log "the rig host has not beaten for ${hung_after}s: ending it"
            kill -TERM "$qemu_pid" 2>/dev/null || true
            wait "$qemu_pid" || true
            return 125
        fi
    done
    wait "$qemu_pid" || rc=$?
    return "$rc"
}
