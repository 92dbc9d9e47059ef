# PCI passthrough without the virtio-iommu: the rig host binds QEMU's edu
# device (1234:11e8) to vfio-pci, and nestor hands it to a Linux guest over
# the VFIO container with all guest RAM mapped for its DMA. The guest finds it,
# turns memory decoding on, reads BAR 0's identification register (0x010000ed)
# and gets the bitwise NOT of what it writes to the liveness register, through
# the BAR nestor maps into the guest (a KVM memory slot over the host's mmap).
# Then the same behind the virtio-iommu with the guest's identity domains
# (iommu.passthrough=1): Linux attaches edu to a bypass domain, which nestor
# serves by mapping all guest RAM on the host IOMMU.
# rig-timeout: 600
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

# edu_linux TAG VFIO_SUFFIX CMDLINE_EXTRA GROUP_TYPE: one Linux guest running the
# vfio-edu task; its IOMMU group must have type GROUP_TYPE (none: no IOMMU).
edu_linux() {
    cmdline="console=ttyS0 earlyprintk=serial loglevel=6 panic=-1 rdinit=/init rig.task=vfio-edu $3"
    rig_nestor "$1" 300 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
        --cpus 1 --memory 256M --cmdline "$cmdline" --vfio "path=$RIG_EDU_PATH$2" --boot-timer -v
    rig_boot_timer "$1"
    grep -i -E 'vfio|passthrough|PCI 00|virtio-iommu' "/tmp/$1.err" | while read -r l; do rig_info "$1 nestor: $l"; done
    rig_expect_clean_exit "$1"
    line=$(grep -m1 '^GUEST edu ' "/tmp/$1.out" | tr -d '\r')
    [ -n "$line" ] || rig_fail "$1: guest printed no 'GUEST edu' line"
    rig_info "$1 $line"
    [ "$(rig_field error)" = "" ] || rig_fail "$1: guest edu task: error=$(rig_field error)"
    [ "$(rig_field group_type)" = "$4" ] || rig_fail "$1: edu's IOMMU group type is $(rig_field group_type), want $4"
    [ "$(rig_field id)" = 0x010000ed ] || rig_fail "$1: edu identification reads $(rig_field id), not 0x010000ed"
    rig_pass "$1: BAR 0 identification register through nestor"
    [ "$(rig_field liveness)" = 0xedcba987 ] || rig_fail "$1: liveness after 0x12345678 reads $(rig_field liveness)"
    [ "$(rig_field liveness2)" = 0xffff0000 ] || rig_fail "$1: liveness after 0x0000ffff reads $(rig_field liveness2)"
    rig_pass "$1: liveness register inverts what the guest writes"
}

edu_linux edu "" "" none
edu_linux edu-identity ",iommu=on" "iommu.passthrough=1" identity
grep -q 'could not be put' /tmp/edu-identity.err &&
    rig_fail "edu-identity: $(grep -m1 'could not be put' /tmp/edu-identity.err)"
grep -q 'a passthrough device bypasses' /tmp/edu-identity.err ||
    rig_fail "edu-identity: nestor did not put edu in bypass on the host"
rig_pass "edu-identity: the guest's identity domain is a host identity map"
grep -i 'virtio_iommu\|iommu.*fail' /tmp/edu-identity.out | while read -r l; do rig_info "edu-identity guest: $l"; done
