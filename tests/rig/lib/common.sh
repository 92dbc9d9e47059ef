# shellcheck shell=bash disable=SC2034
# Shared helpers for the host side of the nested rig. Sourced, not run.

rig_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_dir=$(cd "$rig_dir/../.." && pwd)
cache_root=${NESTOR_CACHE:-$HOME/.cache/nestor}
rig_cache="$cache_root/rig"

log() { printf 'rig: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# sha256 of stdin, hex only.
hash_stdin() { sha256sum | cut -d' ' -f1; }

# sha256 of one file, hex only.
hash_file() { sha256sum "$1" | cut -d' ' -f1; }

# Value of a "# rig-KEY: VALUE" header line in a scenario file, or $3.
scenario_meta() {
    local file=$1 key=$2 default=${3:-} value
    value=$(sed -n "s/^# rig-$key: *//p" "$file" | head -n1)
    printf '%s\n' "${value:-$default}"
}
