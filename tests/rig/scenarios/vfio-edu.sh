# PCI passthrough without the virtio-iommu: the rig host binds QEMU's edu
# device (1234:11e8) to vfio-pci, and nestor hands it to a Linux guest over
# the VFIO container with all guest RAM mapped for its DMA. The guest finds it,
# turns memory decoding on, reads BAR 0's identification register (0x010000ed)
# and gets the bitwise NOT of what it writes to the liveness register, through
# the BAR nestor maps into the guest (a KVM memory slot over the host's mmap).
# rig-timeout: 420
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

cmdline="console=ttyS0 earlyprintk=serial loglevel=6 panic=-1 rdinit=/init rig.task=vfio-edu"
rig_nestor edu 300 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
    --cpus 1 --memory 256M --cmdline "$cmdline" --vfio "path=$RIG_EDU_PATH" --boot-timer
rig_boot_timer edu
grep -i -E 'vfio|passthrough|PCI 00' "/tmp/edu.err" | while read -r l; do rig_info "nestor: $l"; done
rig_expect_clean_exit edu
line=$(grep -m1 '^GUEST edu ' /tmp/edu.out | tr -d '\r')
[ -n "$line" ] || rig_fail "guest printed no 'GUEST edu' line"
rig_info "$line"
field() { echo "$line" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
[ "$(field error)" = "" ] || rig_fail "guest edu task: error=$(field error)"
[ "$(field id)" = 0x010000ed ] || rig_fail "edu identification reads $(field id), not 0x010000ed"
rig_pass "BAR 0 identification register through nestor"
[ "$(field liveness)" = 0xedcba987 ] || rig_fail "liveness after 0x12345678 reads $(field liveness)"
[ "$(field liveness2)" = 0xffff0000 ] || rig_fail "liveness after 0x0000ffff reads $(field liveness2)"
rig_pass "liveness register inverts what the guest writes"
