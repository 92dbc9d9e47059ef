# shellcheck shell=bash disable=SC2154
# Host packages the rig needs. Sourced by run.sh.

rig_packages=(qemu-system-x86 busybox-static cpio debian-archive-keyring
              linux-source-6.12 bc flex bison libelf-dev libssl-dev xz-utils lz4 make gcc)

# Installs what is missing when root; otherwise says what to install and exits 2.
ensure_host_packages() {
    local p missing=()
    for p in "${rig_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]}"
        log "install them with: apt-get install ${missing[*]}"
        exit 2
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >&2; then
        apt-get update -q >&2
        apt-get install -y -q -f >&2 || true
        apt-get install -y -q "${missing[@]}" >&2
    fi
}
