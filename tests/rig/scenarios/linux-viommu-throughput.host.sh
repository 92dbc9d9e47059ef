#!/usr/bin/env bash
# Host side of linux-viommu-throughput: how busy this machine was while the
# rig measured (the rig host's vCPUs are threads competing for these cores).
set -euo pipefail

read -r one five fifteen _ < /proc/loadavg
echo "INFO host cpus=$(nproc) loadavg_1m=$one loadavg_5m=$five loadavg_15m=$fifteen"
