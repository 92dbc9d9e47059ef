# The bundled unikernel drives QEMU's edu device through VFIO: the rig host
# binds edu to vfio-pci and nestor boots the unikernel with `probe=edu`.
# Without the virtio-iommu (all guest RAM mapped at IOVA = GPA) edu copies a
# pattern from RAM to its buffer and back to another RAM buffer at
# guest-physical addresses, each transfer ending in an MSI. Behind the
# virtio-iommu (`iommu=on`) the guest attaches edu's endpoint to a domain and
# maps the buffers at other IOVAs; the copy goes through them, and after UNMAP
# a transfer to the stale IOVA must not reach guest memory. Behind the
# virtio-iommu it runs on the back-end nestor picks by default (iommufd).
# rig-timeout: 420
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

edu_probe edu-direct guest-physical "path=$RIG_EDU_PATH"
# Behind the virtio-iommu, on the back-end nestor picks (iommufd here; the
# vfio-iommufd scenario runs each explicitly).
edu_probe edu-viommu iova "path=$RIG_EDU_PATH,iommu=on"
grep -q 'over iommufd, behind the virtio-iommu' /tmp/edu-viommu.err ||
    rig_fail "edu-viommu: nestor did not pick iommufd: $(grep -m1 passthrough /tmp/edu-viommu.err)"
edu_expect_stale_iova_blocked edu-viommu
