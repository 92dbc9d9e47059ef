# Informational: a Linux guest's O_DIRECT disk throughput (busybox dd, 1 MiB
# and 4 KiB blocks, write and read) on a virtio-blk disk with no IOMMU, then
# behind nestor's virtio-iommu in strict (iommu.strict=1) and lazy
# (iommu.strict=0) mode: one nestor run each, side by side in this rig host.
# Reports MB/s (10^6 bytes/s) per mode, block size and direction, and the
# translated/untranslated ratios. The numbers are not judged; it fails on a
# failed run, a wrong IOMMU setup, an IOMMU fault or a checksum mismatch.
# Takes 3-6 minutes in the rig, so it runs only when named:
# tests/rig/run.sh linux-viommu-throughput
# rig-default: no
# rig-timeout: 900
# rig-nestor: yes
# shellcheck shell=sh
set -u

big_mib=32      # written and read at 1 MiB blocks, from offset 0
small_mib=4     # written and read at 4 KiB blocks, right after
disk=/tmp/l3-disk.img
results=/tmp/tput.results
cmdline="console=ttyS0 loglevel=4 panic=-1 rdinit=/init rig.task=blk-throughput"
cmdline="$cmdline rig.big_mib=$big_mib rig.small_mib=$small_mib"
: > "$results"

uptime_cs() { awk '{ split($1, t, "."); print t[1] * 100 + t[2] }' /proc/uptime; }

# image_sha FIRST_MIB MIB: checksum of a range of the disk image.
image_sha() { dd if="$disk" bs=1M skip="$1" count="$2" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# report [MODE]: MB/s of MODE's measurements; with no MODE, translated over
# untranslated MB/s per block size.
report() {
    awk -v mode="${1:-}" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        r = f["bytes"] / (f["usec"] > 0 ? f["usec"] : 1)
        rate[f["mode"], f["bs"], f["op"]] = r
        if (f["mode"] == mode)
            printf "throughput mode=%s bs=%s op=%s MB/s=%.2f bytes=%s usec=%s ios=%s io_ms=%s\n",
                mode, f["bs"], f["op"], r, f["bytes"], f["usec"], f["ios"], f["io_ms"]
    } END {
        if (mode != "") exit
        split("1M 4K", sizes, " "); split("strict lazy", modes, " ")
        for (s = 1; s <= 2; s++) for (m = 1; m <= 2; m++)
            printf "throughput bs=%s %s/untranslated write=%.3f read=%.3f\n",
                sizes[s], modes[m],
                rate[modes[m], sizes[s], "write"] / rate["untranslated", sizes[s], "write"],
                rate[modes[m], sizes[s], "read"] / rate["untranslated", sizes[s], "read"]
    }' "$results" | while read -r line; do rig_info "$line"; done
}

# run_mode MODE DISK_SUFFIX DOMAIN CMDLINE_EXTRA: one nestor run measuring MODE;
# DOMAIN is the IOMMU domain type the guest must give the disk (none: no IOMMU).
run_mode() {
    mode=$1 out=/tmp/$1.out
    dd if=/dev/zero of="$disk" bs=1M count=$((big_mib + small_mib)) 2>/dev/null
    start=$(uptime_cs)
    # A run takes 30-210 s here; one that has not ended by 360 s has stalled.
    rig_nestor "$mode" 360 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
        --cpus 2 --memory 512M --cmdline "$cmdline rig.mode=$mode $4" \
        --disk "path=$disk$2"
    rig_info "$mode wall_ms=$(( ($(uptime_cs) - start) * 10 ))"
    grep -q 'Kernel panic' "$out" &&
        rig_fail "$mode: guest kernel panic: $(grep -m1 'Kernel panic' "$out")"
    rig_expect_clean_exit "$mode"
    err=$(grep -m1 '^GUEST tput error=' "$out" | tr -d '\r')
    [ -z "$err" ] || rig_fail "$mode: ${err#GUEST tput }"
    env=$(grep -m1 '^GUEST tput-env ' "$out" | tr -d '\r')
    [ -n "$env" ] || rig_fail "$mode: guest printed no 'GUEST tput-env' line"
    rig_info "${env#GUEST }"
    field() { echo "$env" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
    [ "$(field faults)" = 0 ] || rig_fail "$mode: guest dmesg reports IOMMU faults"
    [ "$(field domain)" = "$3" ] ||
        rig_fail "$mode: the disk's IOMMU domain is $(field domain), want $3"
    grep -q '^GUEST task=blk-throughput exit=0' "$out" ||
        rig_fail "$mode: the guest task did not finish cleanly"
    for bs in 1M 4K; do
        sums=$(grep -m1 "^GUEST tput-sum mode=$mode bs=$bs " "$out" | tr -d '\r')
        wrote=$(echo "$sums" | sed -n 's/.* written_sha256=\([0-9a-f]*\).*/\1/p')
        read=$(echo "$sums" | sed -n 's/.* read_sha256=\([0-9a-f]*\).*/\1/p')
        [ -n "$wrote" ] || rig_fail "$mode bs=$bs: no checksums from the guest"
        [ "$wrote" = "$read" ] || rig_fail "$mode bs=$bs: read back $read, wrote $wrote"
        if [ "$bs" = 1M ]; then image=$(image_sha 0 "$big_mib")
        else image=$(image_sha "$big_mib" "$small_mib"); fi
        [ "$image" = "$wrote" ] || rig_fail "$mode bs=$bs: image has $image, guest wrote $wrote"
    done
    grep '^GUEST tput mode=' "$out" | tr -d '\r' | sed 's/^GUEST tput //' >> "$results"
    [ "$(grep -c "^mode=$mode " "$results")" = 4 ] || rig_fail "$mode: expected 4 measurements"
    report "$mode"
    rig_pass "$mode"
}

run_mode untranslated "" none ""
run_mode strict ",iommu=on" DMA "iommu.strict=1"
run_mode lazy ",iommu=on" DMA-FQ "iommu.strict=0"

report
