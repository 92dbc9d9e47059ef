#!/usr/bin/env bash
# Host side of vfio-nvme: after QEMU has exited, the NVMe image must still
# start with the host's pattern and hold, where each guest wrote it, the
# pattern that guest printed the checksum of (one range per run and block
# size).
# env: RIG_NVME (image path), RIG_NVME_PATTERN_MIB, RIG_NVME_SHA256,
#      RIG_GUEST_LOG (nestor's guest console log), RIG_L2_LOG
set -euo pipefail

image_sha() { dd if="$RIG_NVME" bs=1M skip="$1" count="$2" status=none | sha256sum | cut -d' ' -f1; }

got=$(image_sha 0 "$RIG_NVME_PATTERN_MIB")
[[ $got == "$RIG_NVME_SHA256" ]] ||
    { echo "the host's pattern reads $got from the image, want $RIG_NVME_SHA256"; exit 1; }

modes=$(grep -a -m1 'RIG-L2 info modes=' "$RIG_L2_LOG" | tr -d '\r' | sed 's/.*modes=//')
[[ -n $modes ]] || { echo "the rig host reported no modes"; exit 1; }
want=$(( $(tr ',' '\n' <<<"$modes" | wc -l) * 2 ))
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
checked=0 line=""
while read -r line; do
    mode=$(field mode) bs=$(field bs)
    got=$(image_sha "$(field at_mib)" "$(field mib)")
    [[ $got == "$(field written_sha256)" ]] ||
        { echo "$mode bs=$bs: image has $got, guest wrote $(field written_sha256)"; exit 1; }
    echo "INFO host image $mode bs=$bs at_mib=$(field at_mib) sha256=$got"
    checked=$((checked + 1))
done < <(grep -a '^GUEST nvme-sum ' "$RIG_GUEST_LOG" | tr -d '\r')
[[ $checked == "$want" ]] ||
    { echo "found $checked guest writes in the image's log, want $want (modes $modes)"; exit 1; }
