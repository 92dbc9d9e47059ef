# A Linux guest reads, from user mode, MMIO pages it has never touched (the
# configuration space of absent PCI functions), each read by a new process
# right after its start's page faults: every one is KVM's first, emulated
# access to that page. The rig host's KVM must emulate each; without the rig
# host's patches/rig-host/0001-kvm-svm-exitintinfo-valid-bit.patch, QEMU's TCG
# SVM made such an access end the VM (KVM internal error, suberror 3).
# rig-timeout: 420
# rig-nestor: yes
# shellcheck shell=sh
set -u

cmdline="console=ttyS0 loglevel=4 panic=-1 rdinit=/init rig.task=user-mmio"
rig_nestor mmio 360 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
    --cpus 1 --memory 256M --cmdline "$cmdline"
rig_expect_clean_exit mmio
line=$(grep -m1 '^GUEST user-mmio ' /tmp/mmio.out | tr -d '\r')
[ -n "$line" ] || rig_fail "guest printed no 'GUEST user-mmio' line"
rig_info "$line"
[ "$(rig_field error)" = "" ] || rig_fail "guest user-mmio task: error=$(rig_field error)"
reads=$(rig_field reads)
[ "${reads:-0}" -ge 200 ] || rig_fail "only ${reads:-0} first-touch reads (expected at least 200)"
[ "$(rig_field all_ones)" = "$reads" ] ||
    rig_fail "$(rig_field all_ones) of $reads reads of absent functions' configuration space read all ones"
rig_pass "$reads user-mode first reads of MMIO pages, each emulated, each all ones"
