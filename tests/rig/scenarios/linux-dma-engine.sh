# nestor's DMA engine behind the virtio-iommu, as a real Linux enumerates it:
# a PCIe Root Complex Integrated Endpoint whose extended configuration space
# Linux reads (PASID, ATS and PRI capabilities in order), in an IOMMU group of
# the virtio-iommu once bound to vfio-pci, its BAR 0 registers reachable
# (MAGIC reads "NDMA").
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

cmdline="console=ttyS0 loglevel=6 panic=-1 rdinit=/init rig.task=dma-engine"
rig_nestor dma 240 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
    --cpus 1 --memory 256M --cmdline "$cmdline" --dma-engine iommu=on
grep -i -E 'DMA engine|PCI 00' "/tmp/dma.err" | while read -r l; do rig_info "nestor: $l"; done
rig_expect_clean_exit dma
line=$(grep -m1 '^GUEST dma ' /tmp/dma.out | tr -d '\r')
[ -n "$line" ] || rig_fail "guest printed no 'GUEST dma' line"
rig_info "$line"
grep '^GUEST dmesg: ' /tmp/dma.out | tr -d '\r' | while read -r l; do rig_info "$l"; done
[ "$(rig_field error)" = "" ] || rig_fail "guest dma task: error=$(rig_field error)"
grep -q 'GUEST dmesg: .*1b36:00f0.*Root Complex Integrated Endpoint' /tmp/dma.out ||
    rig_fail "Linux did not enumerate 1b36:00f0 as a Root Complex Integrated Endpoint"
rig_pass "Linux enumerates the engine as a PCIe RCiEP"
[ "$(rig_field config_size)" = 4096 ] || rig_fail "config space is $(rig_field config_size) bytes, not 4096"
[ "$(rig_field ext_caps)" = "0x1b,0xf,0x13," ] || rig_fail "extended capabilities $(rig_field ext_caps), not PASID,ATS,PRI"
rig_pass "extended capabilities PASID, ATS, PRI"
[ "$(rig_field magic)" = 0x414d444e ] || rig_fail "MAGIC reads $(rig_field magic), not 0x414d444e"
rig_pass "BAR 0 MAGIC reads NDMA"
[ "$(rig_field driver)" = vfio-pci ] || rig_fail "the engine is bound to '$(rig_field driver)', not vfio-pci"
[ "$(rig_field group)" != none ] || rig_fail "bound to vfio-pci, the engine has no IOMMU group"
[ "$(rig_field vfio_node)" = yes ] || rig_fail "no /dev/vfio/$(rig_field group) for the engine's group"
rig_pass "bound to vfio-pci, the engine is in IOMMU group $(rig_field group) of the virtio-iommu"
