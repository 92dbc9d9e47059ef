# nestor boots the Linux guest (2 vCPUs, 512M, initramfs) inside the rig host,
# once through the PVH entry (vmlinux) and once as a bzImage. The guest prints
# its GUEST line, marks "init reached" on the boot-timer port and powers off.
# rig-timeout: 420
# rig-nestor: yes
# shellcheck shell=sh
set -u

cmdline="console=ttyS0 earlyprintk=serial loglevel=4 panic=-1 rdinit=/init"

uptime_cs() { awk '{ split($1, t, "."); print t[1] * 100 + t[2] }' /proc/uptime; }

boot_one() {
    tag=$1 kernel=$2
    start=$(uptime_cs)
    rig_nestor "$tag" 150 run --kernel "$kernel" --initrd "$RIG_L3_INITRD" \
        --cpus 2 --memory 512M --cmdline "$cmdline" --boot-timer
    rig_info "$tag wall_ms=$(( ($(uptime_cs) - start) * 10 ))"
    rig_boot_timer "$tag"
    grep -q 'Kernel panic' "/tmp/$tag.out" &&
        rig_fail "$tag: guest kernel panic: $(grep -m1 'Kernel panic' "/tmp/$tag.out")"
    rig_expect_clean_exit "$tag"
    guest=$(grep -m1 '^GUEST kernel=' "/tmp/$tag.out" | tr -d '\r')
    [ -n "$guest" ] || rig_fail "$tag: guest init never printed its GUEST line"
    rig_info "$tag $guest"
    case " $guest " in
        *" cpus=2 "*) ;;
        *) rig_fail "$tag: expected cpus=2: $guest" ;;
    esac
    mem_kb=$(echo "$guest" | sed -n 's/.*mem_kb=\([0-9]*\).*/\1/p')
    [ "${mem_kb:-0}" -gt 400000 ] || rig_fail "$tag: guest sees only ${mem_kb:-?} kB"
    rig_pass "$tag"
}

boot_one pvh "$RIG_VMLINUX"
boot_one bzimage "$RIG_BZIMAGE"
