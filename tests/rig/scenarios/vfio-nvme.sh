# PCI passthrough of a device that does DMA: QEMU's NVMe controller, on an
# image whose first 8 MiB the host filled with random bytes it knows by their
# checksum (# rig-nvme). The rig host first reads that pattern through its own
# nvme driver (DMA through QEMU's emulated IOMMU), then binds the controller to
# vfio-pci, and nestor passes it to a Linux guest three times: without the
# virtio-iommu (all guest RAM mapped), behind it in strict mode (guest
# iommu.strict=1, domain DMA) and in lazy mode (iommu.strict=0, domain
# DMA-FQ). Each guest reads the pattern with O_DIRECT, writes a random
# pattern of its own to its own region and reads it back
# (guest/tasks/vfio-nvme.sh); vfio-nvme.host.sh then finds every guest's
# pattern, and the host's, in the image. An IOMMU fault in the guest or in the
# rig host (AMD-Vi IO_PAGE_FAULT, DMAR) fails it.
# rig.nvme_modes=untranslated,strict,lazy on the rig host's command line
# (RIG_L2_ARGS) picks the runs.
# The rig host gets QEMU's VT-d model: QEMU 7.2's AMD IOMMU translates this
# DMA as well, but drops a blocked access silently (an unmapped IOVA has a
# zero PTE, and it logs no event for that), so no fault would ever show.
# rig-timeout: 900
# rig-nestor: yes
# rig-nvme: 64M
# rig-iommu: intel
# shellcheck shell=sh
set -u

l2_arg() { sed -n "s/.*rig\.$1=\([A-Za-z0-9_,-]*\).*/\1/p" /proc/cmdline; }
pattern_mib=$(l2_arg nvme_pattern_mib)
pattern_sha=$(l2_arg nvme_sha256)
modes=$(l2_arg nvme_modes)
modes=${modes:-untranslated,strict,lazy}
big_mib=4 small_mib=1   # each run writes these at 1 MiB and 4 KiB blocks
if [ -z "$pattern_mib" ] || [ -z "$pattern_sha" ]; then
    rig_fail "no rig.nvme_pattern_mib/rig.nvme_sha256 on the rig host's command line"
fi

# host_iommu_faults: the rig host's IOMMU fault reports so far (AMD-Vi event
# log entries, Intel DMAR fault records).
host_iommu_faults() { dmesg | grep -E 'IO_PAGE_FAULT|AMD-Vi: Event logged|DMAR:.*[Ff]ault'; }

nvme=""
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/class")" = 0x010802 ]; then
        nvme=${d##*/}
        break
    fi
done
[ -n "$nvme" ] || rig_fail "no NVMe controller (class 0x010802) in the rig host"
sysdev=/sys/bus/pci/devices/$nvme
[ -e "$sysdev/iommu_group" ] || rig_fail "$nvme has no IOMMU group"
group=$(basename "$(readlink -f "$sysdev/iommu_group")")
members=$(ls "$sysdev/iommu_group/devices" | tr '\n' ' ')
rig_info "iommus=$(ls /sys/class/iommu | tr '\n' ,) controller=$nvme id=$(cat "$sysdev/vendor"):$(cat "$sysdev/device") group=$group" \
    "members=$members host_domain=$(cat "$sysdev/iommu_group/type")"
[ "$members" = "$nvme " ] || rig_fail "$nvme shares IOMMU group $group with: $members"

# The rig host's own driver first: if QEMU's IOMMU mistranslates the
# controller's DMA, this read says so before nestor is involved.
waited=0
while [ ! -b /dev/nvme0n1 ] && [ "$waited" -lt 60 ]; do
    sleep 1
    waited=$((waited + 1))
done
[ -b /dev/nvme0n1 ] || rig_fail "the rig host's nvme driver gave no /dev/nvme0n1 in ${waited}s: $(dmesg | grep -i nvme | tail -n1)"
got=$(dd if=/dev/nvme0n1 bs=1M count="$pattern_mib" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$pattern_sha" ] ||
    rig_fail "the rig host reads the pattern as $got through its nvme driver, want $pattern_sha"
faults=$(host_iommu_faults)
[ -z "$faults" ] || rig_fail "rig host IOMMU fault under its own nvme driver: $(echo "$faults" | head -n1)"
rig_pass "the rig host reads the host's pattern through its nvme driver"

echo vfio-pci > "$sysdev/driver_override"
[ -e "$sysdev/driver" ] && echo "$nvme" > "$sysdev/driver/unbind"
echo "$nvme" > /sys/bus/pci/drivers_probe
driver=$(basename "$(readlink -f "$sysdev/driver")")
[ "$driver" = vfio-pci ] || rig_fail "$nvme is bound to '$driver', not vfio-pci"
[ -c "/dev/vfio/$group" ] || rig_fail "/dev/vfio/$group missing"
rig_pass "$nvme bound to vfio-pci"

# run_mode MODE SLOT VFIO_SUFFIX DOMAIN CMDLINE_EXTRA: one nestor run; the
# guest writes at MiB pattern_mib * SLOT, its IOMMU group must have domain
# type DOMAIN (none: no IOMMU in the guest).
run_mode() {
    mode=$1 out=/tmp/$1.out
    at_mib=$((pattern_mib * $2))
    cmdline="console=ttyS0 loglevel=6 panic=-1 rdinit=/init rig.task=vfio-nvme rig.mode=$mode"
    cmdline="$cmdline rig.nvme_pattern_mib=$pattern_mib rig.at_mib=$at_mib"
    cmdline="$cmdline rig.big_mib=$big_mib rig.small_mib=$small_mib $5"
    rig_nestor "$mode" 300 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
        --cpus 1 --memory 256M --cmdline "$cmdline" --vfio "path=$sysdev$3" --boot-timer -v
    rig_boot_timer "$mode"
    rig_info "$mode poweroff_ms=$(poweroff_ms "/tmp/$mode.err")"
    grep -i -E 'vfio|passthrough|iommufd|container' "/tmp/$mode.err" |
        while read -r l; do rig_info "$mode nestor: $l"; done
    grep -q 'Kernel panic' "$out" &&
        rig_fail "$mode: guest kernel panic: $(grep -m1 'Kernel panic' "$out" | tr -d '\r')"
    rig_expect_clean_exit "$mode"
    faults=$(host_iommu_faults)
    [ -z "$faults" ] || rig_fail "$mode: rig host IOMMU fault: $(echo "$faults" | head -n1)"
    err=$(grep -m1 '^GUEST nvme error=' "$out" | tr -d '\r')
    [ -z "$err" ] || rig_fail "$mode: ${err#GUEST nvme }"
    line=$(grep -m1 '^GUEST nvme-dev ' "$out" | tr -d '\r')
    [ -n "$line" ] || rig_fail "$mode: guest printed no 'GUEST nvme-dev' line"
    rig_info "${line#GUEST }"
    [ "$(rig_field domain)" = "$4" ] || rig_fail "$mode: the controller's IOMMU domain is $(rig_field domain), want $4"
    line=$(grep -m1 '^GUEST nvme-env ' "$out" | tr -d '\r')
    [ -n "$line" ] || rig_fail "$mode: guest printed no 'GUEST nvme-env' line"
    [ "$(rig_field faults)" = 0 ] || rig_fail "$mode: guest dmesg reports IOMMU faults"
    [ "$(rig_field errors)" = 0 ] || rig_fail "$mode: guest dmesg reports nvme errors"
    line=$(grep -m1 '^GUEST nvme-pattern ' "$out" | tr -d '\r')
    [ "$(rig_field sha256)" = "$pattern_sha" ] ||
        rig_fail "$mode: the guest reads the pattern as '$(rig_field sha256)', want $pattern_sha"
    line=$(grep -m1 '^GUEST nvme-unbind ' "$out" | tr -d '\r')
    rig_info "$mode unbind_usec=$(rig_field usec)"
    line=$(grep -m1 '^GUEST nvme-pattern ' "$out" | tr -d '\r')
    rig_info "$mode pattern_sha256=$(rig_field sha256) read_MB/s=$(mbps "$(rig_field bytes)" "$(rig_field usec)")"
    rig_pass "$mode: the guest reads the host's pattern"
    for bs in 1M 4K; do
        line=$(grep -m1 "^GUEST nvme-sum mode=$mode bs=$bs " "$out" | tr -d '\r')
        wrote=$(rig_field written_sha256)
        [ -n "$wrote" ] || rig_fail "$mode bs=$bs: no checksums from the guest"
        [ "$wrote" = "$(rig_field read_sha256)" ] ||
            rig_fail "$mode bs=$bs: read back $(rig_field read_sha256), wrote $wrote"
        rates=""
        for op in write read; do
            line=$(grep -m1 "^GUEST nvme mode=$mode bs=$bs op=$op " "$out" | tr -d '\r')
            rates="$rates $op""_MB/s=$(mbps "$(rig_field bytes)" "$(rig_field usec)")"
        done
        rig_info "$mode bs=$bs written_sha256=$wrote$rates"
    done
    grep -q '^GUEST task=vfio-nvme exit=0' "$out" ||
        rig_fail "$mode: the guest task did not finish cleanly"
    rig_pass "$mode: the guest's O_DIRECT writes read back"
}

# poweroff_ms NESTOR_STDERR: from the guest's last boot-timer mark (code 2,
# just before poweroff -f) to its vCPUs joining. About 60 s here would mean
# the nvme driver still held the controller when the guest kernel reset the
# virtio-iommu (the task unbinds it first, see guest/tasks/vfio-nvme.sh).
poweroff_ms() {
    awk '/boot-timer code=2 at/ { split($0, a, " at "); split(a[2], b, " "); t2 = b[1] }
         /boot-timer step=vcpus-joined at/ { split($0, a, " at "); split(a[2], b, " "); tj = b[1] }
         END { if (t2 && tj) printf "%d", (tj - t2) / 1000; else printf "unknown" }' "$1"
}

# mbps BYTES USEC: 10^6 bytes per second, two decimals.
mbps() { awk -v b="$1" -v u="$2" 'BEGIN { printf "%.2f", (u > 0 ? b / u : 0) }'; }

for mode in $(echo "$modes" | tr ',' ' '); do
    case $mode in
        untranslated) run_mode untranslated 1 "" none "" ;;
        strict) run_mode strict 2 ",iommu=on" DMA "iommu.strict=1" ;;
        lazy) run_mode lazy 3 ",iommu=on" DMA-FQ "iommu.strict=0" ;;
        *) rig_fail "unknown mode '$mode' in rig.nvme_modes (untranslated, strict, lazy)" ;;
    esac
done
rig_info "modes=$modes"
