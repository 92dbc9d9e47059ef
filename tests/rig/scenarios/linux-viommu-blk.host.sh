#!/usr/bin/env bash
# Host side of linux-viommu-blk: the pattern the guest wrote at 1 MiB must be
# in the disk image with the checksum the guest printed.
# env: RIG_DISK (image path), RIG_GUEST_LOG (nestor's guest console log)
set -euo pipefail

want=$(grep -a -m1 '^GUEST blk ' "$RIG_GUEST_LOG" | tr -d '\r' |
       sed -n 's/.* written_sha256=\([0-9a-f]*\).*/\1/p')
[[ -n $want ]] || { echo "no written_sha256 in the guest console"; exit 1; }
got=$(dd if="$RIG_DISK" bs=1M skip=1 count=4 status=none | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || { echo "image checksum $got, guest wrote $want"; exit 1; }
