# How long nestor takes to map memory for a passed-through device's DMA, with
# QEMU's edu device bound to vfio-pci in the rig host, on each host back-end
# (iommufd, the VFIO container). First, without the virtio-iommu, the time
# nestor logs (-v) for mapping all of a 512 MiB guest's RAM. Then behind it
# (--vfio ...,iommu=on): the bundled unikernel attaches edu to a domain, so
# every MAP and UNMAP is a host map and unmap in nestor, and times N MAP+UNMAP
# rounds of a 4 KiB and of a 2 MiB mapping with the TSC (probe
# viommu-map-bench; rig.rounds=N on the rig host's command line, default 100).
# Informational: the figures are not judged.
# rig-timeout: 420
# rig-nestor: yes
# rig-qemu: -device edu
# shellcheck shell=sh
set -u

rounds=$(sed -n 's/.*rig\.rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
rounds=${rounds:-100}

rig_bind_edu

# ram_map_time BACKEND: the 512 MiB guest's RAM mapped at IOVA = GPA.
ram_map_time() {
    rig_nestor "ram-$1" 120 -v run --memory 512M --cmdline "probe=hold:1" \
        --vfio "path=$RIG_EDU_PATH,backend=$1" --timeout 100
    rig_expect_clean_exit "ram-$1"
    _mapped=$(grep -m1 'mapped for DMA in' "/tmp/ram-$1.err")
    if [ -n "$_mapped" ]; then
        rig_info "backend=$1 512M guest: ${_mapped#*vfio: }"
    else
        rig_info "backend=$1 512M guest: nestor did not log how long mapping guest RAM for DMA took"
    fi
}

# map_bench BACKEND: MAP+UNMAP round trips behind the virtio-iommu.
map_bench() {
    _tag=bench-$1
    rig_nestor "$_tag" 240 run --memory 256M --cmdline "probe=viommu-map-bench:$rounds" \
        --vfio "path=$RIG_EDU_PATH,iommu=on,backend=$1" --timeout 220
    grep '^viommu-map-bench: ' "/tmp/$_tag.out" | tr -d '\r' | while read -r l; do
        rig_info "backend=$1 ${l#viommu-map-bench: }"
    done
    # The probe's own reason first: a failed probe also makes nestor exit 1.
    _verdict=$(grep -m1 '^PROBE viommu-map-bench ' "/tmp/$_tag.out" | tr -d '\r')
    case $_verdict in
        "PROBE viommu-map-bench ok") ;;
        "PROBE viommu-map-bench "*) rig_fail "$_tag: $_verdict" ;;
    esac
    rig_expect_clean_exit "$_tag"
    [ -n "$_verdict" ] || rig_fail "$_tag: no PROBE viommu-map-bench line"
    for _size in 4KiB 2MiB; do
        grep -q "^viommu-map-bench: map+unmap size=$_size " "/tmp/$_tag.out" ||
            rig_fail "$_tag: no map+unmap figures for $_size"
    done
    rig_pass "$_tag: MAP+UNMAP timed for 4 KiB and 2 MiB mappings"
}

for backend in iommufd container; do
    ram_map_time "$backend"
    map_bench "$backend"
done
