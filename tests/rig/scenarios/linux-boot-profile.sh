# Where the guest's boot time goes: boots the PVH guest with initcall_debug
# (kept off the console) and reports the slowest initcalls and the boot-timer
# marks. Informational: it fails only if the guest does not boot.
# rig-timeout: 300
# rig-nestor: yes
# shellcheck shell=sh
set -u

cmdline="console=ttyS0 loglevel=1 initcall_debug log_buf_len=1M panic=-1 rdinit=/init rig.task=initcalls"
rig_nestor profile 150 run --kernel "$RIG_VMLINUX" --initrd "$RIG_L3_INITRD" \
    --cpus 2 --memory 512M --cmdline "$cmdline" --boot-timer
rig_boot_timer profile
rig_expect_clean_exit profile
grep -q '^GUEST initcall ' /tmp/profile.out || rig_fail "guest reported no initcall timings"
