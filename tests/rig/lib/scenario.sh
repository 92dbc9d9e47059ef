# shellcheck shell=bash disable=SC2154
# Runs one scenario: builds its L2 image, boots L2, reads the verdict.
# Sourced by run.sh, which sets: kernel_vmlinux kernel_bzimage (the guest's)
# rig_host_bzimage l3_initrd
# nestor_bin (empty if not built) busybox_bin run_dir.

# Prints the last lines of a log, framed, to stdout.
show_tail() {
    local what=$1 file=$2
    printf -- '----- last 40 lines of %s (%s)\n' "$what" "$file"
    if [[ -f $file ]]; then
        # Drop carriage returns and the firmware's terminal escape sequences.
        grep -av '^RIG-L2 beat' "$file" | tail -n 40 | tr -d '\r' |
            sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'
    else
        echo "(no log)"
    fi
    printf -- '----- end of %s\n' "$what"
}

# The first MiBs of a "# rig-nvme:" image hold random bytes the rig host's
# scenario knows by their checksum (rig.nvme_sha256= on its command line).
nvme_pattern_mib=8

# make_nvme_image PATH SIZE: a fresh raw image of SIZE (at least twice the
# pattern) starting with nvme_pattern_mib MiB of random bytes, zeros after;
# prints the pattern's sha256.
make_nvme_image() {
    local path=$1 size=$2 bytes
    rm -f "$path"
    truncate -s "$size" "$path" || return 1
    bytes=$(stat -c %s "$path")
    (( bytes >= 2 * nvme_pattern_mib * 1048576 )) || return 1
    head -c $((nvme_pattern_mib * 1048576)) /dev/urandom |
        dd of="$path" conv=notrunc status=none || return 1
    head -c $((nvme_pattern_mib * 1048576)) "$path" | hash_stdin
}

# run_scenario NAME: prints "RIG NAME ok" or "RIG NAME FAIL reason"; returns 0 iff ok.
run_scenario() {
    local name=$1 script="$rig_dir/scenarios/$1.sh"
    local host_check="$rig_dir/scenarios/$1.host.sh"
    local dir="$run_dir/$name" reason="" timeout needs_nestor disk_size qemu_extra
    local hung_after expect nvme_size nvme_sha="" l2_extra="" iommu
    local l2_log guest_log initrd rc result
    local -a entries qemu_args=()
    if [[ ! -f $script ]]; then
        echo "RIG $name FAIL no such scenario ($script)"
        return 1
    fi
    mkdir -p "$dir"
    l2_log="$dir/l2-console.log"
    guest_log="$dir/guest-console.log"
    timeout=$(scenario_meta "$script" timeout 300)
    needs_nestor=$(scenario_meta "$script" nestor no)
    disk_size=$(scenario_meta "$script" disk "")
    qemu_extra=$(scenario_meta "$script" qemu "")
    nvme_size=$(scenario_meta "$script" nvme "")
    iommu=${RIG_IOMMU:-$(scenario_meta "$script" iommu amd)}
    hung_after=$(scenario_meta "$script" hung-after "${RIG_HUNG_AFTER:-120}")
    expect=$(scenario_meta "$script" expect ok)

    entries=(dir:proc dir:sys dir:dev dir:tmp
             "file:init:$rig_dir/l2/init.sh:755"
             "file:bin/busybox:$busybox_bin:755" link:bin/sh:busybox
             "file:rig/lib.sh:$rig_dir/l2/lib.sh:644"
             "file:rig/scenario.sh:$script:644"
             "file:rig/l3/vmlinux:$kernel_vmlinux:644"
             "file:rig/l3/bzImage:$kernel_bzimage:644"
             "file:rig/l3/initrd.cpio:$l3_initrd:644")
    if [[ $needs_nestor == yes ]]; then
        if [[ -z $nestor_bin ]]; then
            echo "RIG $name FAIL nestor could not be built (see the cargo output above)"
            return 1
        fi
        entries+=("file:rig/nestor:$nestor_bin:755"
                  "file:rig/nestor-iommufd-selftest:${nestor_bin%/*}/nestor-iommufd-selftest:755")
    fi
    # RIG_L2_FILES="HOST_PATH:IMAGE_PATH ...": more files for the rig host's
    # image, e.g. another VMM to compare nestor with (see README.md).
    local extra
    for extra in ${RIG_L2_FILES:-}; do
        entries+=("file:${extra#*:}:${extra%%:*}:755")
    done
    initrd=$(make_initramfs "${entries[@]}")

    if [[ -n $disk_size ]]; then
        rm -f "$dir/disk.img"
        truncate -s "$disk_size" "$dir/disk.img"
        # shellcheck disable=SC2054 # commas belong to the QEMU options
        qemu_args+=(-drive "file=$dir/disk.img,format=raw,if=none,id=rigdisk"
                    -device virtio-blk-pci,drive=rigdisk)
    fi
    if [[ -n $nvme_size ]]; then
        nvme_sha=$(make_nvme_image "$dir/nvme.img" "$nvme_size") || {
            echo "RIG $name FAIL cannot make a $nvme_size NVMe image (# rig-nvme: at least 16M)"
            return 1
        }
        l2_extra="rig.nvme_pattern_mib=$nvme_pattern_mib rig.nvme_sha256=$nvme_sha"
        # shellcheck disable=SC2054 # commas belong to the QEMU options
        qemu_args+=(-drive "file=$dir/nvme.img,format=raw,if=none,id=rignvme"
                    -device nvme,drive=rignvme,serial=nestor-rig)
    fi
    # Word splitting of the header value is intended: it is a list of QEMU args.
    # shellcheck disable=SC2206
    [[ -n $qemu_extra ]] && qemu_args+=($qemu_extra)

    # The rig host's kernel (7.x) finds no southbridge IOAPIC behind QEMU's AMD
    # IOMMU (it wants an ISA or SMBus bridge at the IVRS IOAPIC's 00:14.0) and
    # turns interrupt remapping off; iommufd and VFIO then refuse devices
    # unless told that unisolated MSIs are acceptable, which they are in a
    # throwaway rig host.
    local unsafe_msi="iommufd.allow_unsafe_interrupts=1 vfio_iommu_type1.allow_unsafe_interrupts=1"
    # TCG gives the rig host no invariant TSC, so its KVM takes the guests'
    # TSC rate from the boot-time calibration, made before the refined one;
    # when that guess is more than 250 ppm above the TSC's real rate, KVM
    # (without TSC scaling under TCG) puts every vCPU in always-catch-up mode,
    # in which a guest's TSC-deadline timer fires tens of seconds late. 7.3's
    # KVM lists that timer in its supported CPUID (6.12's did not), so guests
    # use it. A tolerance above the 4000 ppm the rig host's clocksource
    # watchdog allows the early TSC keeps the guests at the TSC's own rate.
    local tsc_tolerance="kvm.tsc_tolerance_ppm=5000"
    log "$name: booting L2 (timeout ${timeout}s, $iommu IOMMU), logs in $dir"
    rc=0
    RIG_IOMMU=$iommu RIG_HUNG_AFTER=$hung_after boot_l2 "$timeout" "$rig_host_bzimage" "$initrd" \
        "console=ttyS0 loglevel=4 panic=-1 rdinit=/init rig.scenario=$name $unsafe_msi $tsc_tolerance $l2_extra ${RIG_L2_ARGS:-}" \
        "$l2_log" "$guest_log" "${qemu_args[@]}" || rc=$?

    result=$(grep -a '^RIG-L2 result ' "$l2_log" | tr -d '\r' | tail -n1 || true)
    grep -a '^RIG-L2 info ' "$l2_log" | tr -d '\r' | sed "s/^RIG-L2 info /INFO $name /" || true
    if [[ $result == "RIG-L2 result ok" ]]; then
        :
    elif [[ -n $result ]]; then
        reason=${result#RIG-L2 result FAIL }
    elif [[ $rc -eq 125 ]]; then
        reason="rig host hung (no heartbeat for ${hung_after}s)"
    elif ! grep -aq '^RIG-L2 up' "$l2_log"; then
        reason="L2 never reached its init (qemu status $rc)"
    elif [[ $rc -eq 124 ]]; then
        reason="timeout after ${timeout}s"
    else
        reason="L2 ended without a result (qemu status $rc)"
    fi
    if [[ -z $reason && -f $host_check ]]; then
        local out host_rc=0
        out=$(RIG_DISK="$dir/disk.img" RIG_GUEST_LOG="$guest_log" RIG_L2_LOG="$l2_log" \
              RIG_NVME="$dir/nvme.img" RIG_NVME_PATTERN_MIB=$nvme_pattern_mib \
              RIG_NVME_SHA256=$nvme_sha RIG_VMLINUX="$kernel_vmlinux" \
              bash "$host_check" 2>&1) || host_rc=$?
        grep '^INFO ' <<<"$out" | sed "s/^INFO /INFO $name /" || true
        if [[ $host_rc -ne 0 ]]; then
            reason="host check: $(grep -v '^INFO ' <<<"$out" | tail -n1)"
        fi
    fi
    # A scenario that tests the rig itself may expect it to end the rig host as hung.
    if [[ $expect == hung ]]; then
        if [[ $reason == "rig host hung"* ]]; then
            echo "RIG $name ok"
            return 0
        fi
        reason="expected the rig host to be ended as hung, got: ${reason:-a clean end}"
    fi
    if [[ -z $reason ]]; then
        echo "RIG $name ok"
        return 0
    fi
    grep -v "TCG doesn't support requested feature" "$l2_log.qemu" 2>/dev/null |
        tail -n 10 | sed 's/^/qemu: /' || true
    show_tail "L2 console" "$l2_log"
    show_tail "guest console (nestor stdout in L2)" "$guest_log"
    echo "RIG $name FAIL $reason"
    return 1
}
