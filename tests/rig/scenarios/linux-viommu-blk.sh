# A virtio-blk disk behind nestor's virtio-iommu (strict mode): the guest finds
# the IOMMU and the disk's IOMMU group, writes a checksummed pattern to
# /dev/vda and reads it back with no IOMMU fault. nestor's disk is a file in
# the rig host; afterwards it is copied to the rig host's /dev/vda, a raw
# image on the host that linux-viommu-blk.host.sh reads back.
# rig-timeout: 420
# rig-nestor: yes
# rig-disk: 16M
# shellcheck shell=sh
set -u

[ -b /dev/vda ] || rig_fail "rig host has no /dev/vda (QEMU disk missing)"
disk=/tmp/l3-disk.img
dd if=/dev/zero of="$disk" bs=1M count=16 2>/dev/null
cmdline="console=ttyS0 earlyprintk=serial loglevel=6 panic=-1 rdinit=/init iommu.strict=1 rig.task=viommu-blk"
rig_nestor blk 150 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
    --cpus 2 --memory 512M --cmdline "$cmdline" --disk "path=$disk,iommu=on" --boot-timer
rig_boot_timer blk
dd if="$disk" of=/dev/vda bs=1M conv=fsync 2>/dev/null || rig_fail "copying the disk to /dev/vda"
rig_expect_clean_exit blk
line=$(grep -m1 '^GUEST blk ' /tmp/blk.out | tr -d '\r')
[ -n "$line" ] || rig_fail "guest printed no 'GUEST blk' line"
rig_info "$line"
[ "$(rig_field error)" = "" ] || rig_fail "guest block task: error=$(rig_field error)"
[ "$(rig_field iommus)" != none ] || rig_fail "no IOMMU in the guest's /sys/class/iommu"
[ "$(rig_field group)" != none ] || rig_fail "/dev/vda has no iommu_group"
[ "$(rig_field written_sha256)" = "$(rig_field read_sha256)" ] || rig_fail "read-back checksum differs"
[ "$(rig_field faults)" = 0 ] || rig_fail "guest dmesg reports IOMMU faults"
rig_pass "viommu-blk in guest"
