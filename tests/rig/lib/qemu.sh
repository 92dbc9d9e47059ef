# shellcheck shell=bash
# Boots the rig host (L2) under QEMU TCG with emulated SVM. Sourced by run.sh.

# boot_l2 TIMEOUT KERNEL INITRD CMDLINE L2_LOG GUEST_LOG [QEMU ARGS...]
# L2's ttyS0 (its console and the RIG-L2 protocol) goes to L2_LOG, its ttyS1
# (nestor's guest console) to GUEST_LOG, QEMU's own messages to
# L2_LOG.qemu. Returns QEMU's status (124: timeout).
boot_l2() {
    local timeout=$1 kernel=$2 initrd=$3 cmdline=$4 l2_log=$5 guest_log=$6
    shift 6
    local rc=0
    timeout -k 10 "$timeout" qemu-system-x86_64 \
        -M q35 -accel tcg -cpu EPYC,+svm,+npt -m 2048 -smp 2 \
        -device amd-iommu -nic none -nographic -no-reboot -monitor none \
        -serial stdio -serial "file:$guest_log" \
        -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
        "$@" </dev/null >"$l2_log" 2>"$l2_log.qemu" || rc=$?
    return "$rc"
}
