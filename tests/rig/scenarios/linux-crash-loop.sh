# The crash loop: boots a Linux guest again and again, each run doing the
# O_DIRECT disk workload of guest/tasks/io-loop.sh on two disks, and counts
# the runs that end any other way (a triple fault, a timeout, a failed check).
# Four configurations: plain disks or disks behind the virtio-iommu (identity
# domain, iommu.passthrough=1, as a distribution kernel would give them), on 1
# and on 2 vCPUs. Runs per configuration: rig.runs= on the rig host's command
# line (default 100), set from the host with
#   RIG_L2_ARGS="rig.runs=20 rig.configs=plain-2,viommu-2" tests/rig/run.sh linux-crash-loop
# Reports "INFO ... crash-loop config=C runs=N ok=K crashed=T other=O" per
# configuration and fails if any run did not end cleanly. Long (about 10 s per
# run), so it runs only when named.
# rig-default: no
# rig-timeout: 10800
# rig-nestor: yes
# shellcheck shell=sh
set -u

l2_arg() { sed -n "s/.*rig\.$1=\([A-Za-z0-9_,=-]*\).*/\1/p" /proc/cmdline; }
runs=$(l2_arg runs)
runs=${runs:-100}
configs=$(l2_arg configs)
configs=${configs:-plain-1,plain-2,viommu-1,viommu-2}
task=$(l2_arg l3task)
task=${task:-io-loop}
vmm=$(l2_arg vmm)
vmm=${vmm:-nestor}
# rig.nestor_args=A,B: more nestor options for every run (commas for spaces).
nestor_args=$(l2_arg nestor_args | tr ',' ' ')
big_mib=8 small_mib=2

cmdline="console=ttyS0 earlyprintk=serial loglevel=6 panic=-1 rdinit=/init"
cmdline="$cmdline rig.task=$task rig.big_mib=$big_mib rig.small_mib=$small_mib"

# rig.stress=pipe: a busy pipe between two processes in the rig host during every
# run, so that the rig host's CPUs wake each other while the guest runs (to tell
# the rig's emulation from the VMM; see README.md).
stress=$(l2_arg stress)
if [ "$stress" = pipe ]; then
    (while :; do echo wake; done | while read -r _; do :; done) &
    stress_pid=$!
    rig_info "crash-loop stress=pipe pid=$stress_pid"
fi

failed=0
for config in $(echo "$configs" | tr ',' ' '); do
    # plain-N or viommu-N, N the vCPUs; a -bz suffix boots the bzImage, not vmlinux (PVH).
    kernel=$RIG_VMLINUX
    case $config in
        *-bz) kernel=$RIG_BZIMAGE ;;
    esac
    cpus=${config#*-}
    cpus=${cpus%-bz}
    case $config in
        plain-*) disk_opt="" extra="" ;;
        viommu-*) disk_opt=",iommu=on" extra="iommu.passthrough=1" ;;
        *) rig_fail "unknown configuration $config (plain-N[-bz] or viommu-N[-bz])" ;;
    esac
    ok=0 crashed=0 other=0 run=1
    while [ "$run" -le "$runs" ]; do
        for d in a b; do
            dd if=/dev/zero of="/tmp/$d.img" bs=1M count=$((big_mib + small_mib)) 2>/dev/null
        done
        tag="$config-$run"
        if [ "$vmm" = kvmtool ]; then
            # The comparison: the same guest and workload under kvmtool (a bzImage,
            # no ACPI, so the guest ends with a reset).
            HOME=/tmp rig_vmm "$tag" 120 /rig/lkvm run -k "$RIG_BZIMAGE" -i "$RIG_L3_INITRD" \
                -c "$cpus" -m 512 -p "$cmdline rig.end=reboot" \
                -d /tmp/a.img -d /tmp/b.img
        else
            rig_nestor "$tag" 120 run --kernel "$kernel" --initrd "$RIG_L3_INITRD" \
                --cpus "$cpus" --memory 512M --cmdline "$cmdline $extra" \
                --disk "path=/tmp/a.img$disk_opt" --disk "path=/tmp/b.img$disk_opt" $nestor_args
        fi
        # With the console elsewhere (--serial), a clean power-off is all there is to see.
        if [ "$NESTOR_RC" = 0 ] && { grep -q "^GUEST task=$task exit=0" "/tmp/$tag.out" ||
                                     case $nestor_args in *--serial*) true ;; *) false ;; esac; }; then
            ok=$((ok + 1))
        else
            if grep -q 'triple-faulted' "/tmp/$tag.err"; then
                crashed=$((crashed + 1))
            else
                other=$((other + 1))
            fi
            rig_info "crash-loop run=$tag rc=$NESTOR_RC: $(grep -v 'boot-timer\|warning' "/tmp/$tag.err" | head -n1)"
            tail -n 5 "/tmp/$tag.out" | tr -d '\r' | sed "s/^/crash-loop console[$tag]: /"
        fi
        rm -f "/tmp/$tag.out" "/tmp/$tag.err" "/tmp/$tag.rc"
        run=$((run + 1))
    done
    rig_info "crash-loop config=$config runs=$runs ok=$ok crashed=$crashed other=$other"
    [ $((crashed + other)) = 0 ] || failed=1
done
[ "$failed" = 0 ] || rig_fail "some guest runs did not end cleanly (see the crash-loop lines)"
rig_pass "crash-loop"
