# The bundled unikernel drives QEMU's edu device through VFIO: the rig host
# binds edu to vfio-pci and nestor boots the unikernel with `probe=edu`.
# Without the virtio-iommu (all guest RAM mapped at IOVA = GPA) edu copies a
# pattern from RAM to its buffer and back to another RAM buffer at
# guest-physical addresses, each transfer ending in an MSI. Behind the
# virtio-iommu (`iommu=on`) the guest attaches edu's endpoint to a domain and
# maps the buffers at other IOVAs; the copy goes through them, and after UNMAP
# a transfer to the stale IOVA must not reach guest memory. Behind the
# virtio-iommu it runs on both host back-ends, iommufd and the VFIO container.
# rig-timeout: 420
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rig_bind_edu

# edu_probe TAG MODE VFIO_OPTIONS: runs probe=edu and checks its verdict and the
# DMA mode it reports (dma=MODE).
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

edu_probe edu-direct guest-physical "path=$RIG_EDU_PATH"
# Behind the virtio-iommu, on each host back-end.
for backend in iommufd container; do
    tag=edu-viommu-$backend
    edu_probe "$tag" iova "path=$RIG_EDU_PATH,iommu=on,backend=$backend"
    case $(grep -m1 '^edu: ' "/tmp/$tag.out") in
        *stale-iova=blocked*) rig_pass "$tag: DMA to an unmapped IOVA did not reach guest memory" ;;
        *) rig_fail "$tag: the stale-IOVA check did not run" ;;
    esac
done
