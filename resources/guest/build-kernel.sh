#!/usr/bin/env bash
# Build a kernel (vmlinux with a PVH note, and bzImage) from a Debian
# linux-source package, tinyconfig + config fragments. Two profiles:
#   guest     linux-source-6.12 + kernel.config: the guest kernel nestor's
#             tests boot (L3 in the nested rig)
#   rig-host  linux-source >= 6.15 of a newer suite (see kernel-source.sh,
#             which also takes NESTOR_RIG_KERNEL_SOURCE=TARBALL) + kernel.config
#             + rig-host.config: the nested rig's host (L2), with the iommufd
#             test driver, and the patches in patches/rig-host/ (each says
#             why; one that does not apply to another source is skipped
#             with a warning)
#
# usage: build-kernel.sh [--rig-host] [OUTDIR]
#
# Results are cached under ${NESTOR_CACHE:-$HOME/.cache/nestor}/kernel/KEY/,
# KEY being a hash of the fragments, the patches, these scripts and the kernel source
# (package and version, or tarball hash); a warm call only prints the paths.
# With OUTDIR, vmlinux and bzImage are also copied there. The last two lines
# printed are always
#   vmlinux=PATH
#   bzImage=PATH
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
profile=guest
if [[ ${1:-} == --rig-host ]]; then
    profile=rig-host
    shift
fi
fragments=("$here/kernel.config")
[[ $profile == rig-host ]] && fragments+=("$here/rig-host.config")
shopt -s nullglob
patches=("$here/patches/$profile"/*.patch)
shopt -u nullglob
outdir=${1:-}
cache_root=${NESTOR_CACHE:-$HOME/.cache/nestor}
apt_root="$cache_root/kernel/apt"
deps=(bc flex bison libelf-dev libssl-dev cpio xz-utils lz4 make gcc patch)
[[ $profile == guest ]] && deps+=(linux-source-6.12)

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

missing_packages() {
    local p
    for p in "${deps[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || printf '%s\n' "$p"
    done
}

ensure_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
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

ensure_packages
# shellcheck source=kernel-source.sh
. "$here/kernel-source.sh"

key=$( { sha256sum "${fragments[@]}" "${patches[@]}" "$self" "$here/kernel-source.sh" | cut -d' ' -f1
         echo "$profile $kernel_source_id"; } \
       | sha256sum | cut -c1-16)
kdir="$cache_root/kernel/$key"
vmlinux="$kdir/vmlinux"
bzimage="$kdir/bzImage"

publish() {
    if [[ -n $outdir ]]; then
        mkdir -p "$outdir"
        cp -f "$vmlinux" "$bzimage" "$outdir/"
    fi
    printf 'vmlinux=%s\nbzImage=%s\n' "$vmlinux" "$bzimage"
}

if [[ -s $vmlinux && -s $bzimage ]]; then
    publish
    exit 0
fi

mkdir -p "$cache_root/kernel"
exec 9>"$cache_root/kernel/.lock"
flock 9
# Someone else may have built it while we waited for the lock.
if [[ -s $vmlinux && -s $bzimage ]]; then
    publish
    exit 0
fi

# Unpack the source once per source and patch set; builds happen out of tree.
srcdir="$cache_root/kernel/src-$kernel_source_id"
if [[ ${#patches[@]} -gt 0 ]]; then
    srcdir+="-patched-$(cat "${patches[@]}" | sha256sum | cut -c1-8)"
fi
if [[ ! -f $srcdir/.unpacked ]]; then
    log "unpacking $kernel_source_id"
    rm -rf "$srcdir"
    mkdir -p "$srcdir"
    unpack_kernel_source "$srcdir"
    for p in "${patches[@]}"; do
        if patch -d "$srcdir" -p1 --forward --dry-run -s < "$p" >/dev/null 2>&1; then
            log "applying ${p##*/}"
            patch -d "$srcdir" -p1 --forward -s < "$p" >&2
        else
            log "warning: ${p##*/} does not apply to $kernel_source_id; building without it"
        fi
    done
    touch "$srcdir/.unpacked"
fi

build="$cache_root/kernel/build-$key"
rm -rf "$build"
mkdir -p "$build"
mk() { make -C "$srcdir" O="$build" ARCH=x86_64 "$@"; }

log "configuring in $build"
mk -s tinyconfig >&2
"$srcdir/scripts/kconfig/merge_config.sh" -m -O "$build" \
    "$build/.config" "${fragments[@]}" >&2
mk -s olddefconfig >&2

# olddefconfig silently drops options whose dependencies are unmet: check.
dropped=()
while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
        grep -qxF "$line" "$build/.config" || dropped+=("$line")
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
        if grep -q "^${BASH_REMATCH[1]}=" "$build/.config"; then
            dropped+=("${BASH_REMATCH[1]}=n")
        fi
    fi
done < <(cat "${fragments[@]}")
if [[ ${#dropped[@]} -gt 0 ]]; then
    log "these requested options did not make it into .config:"
    printf '  %s\n' "${dropped[@]}" >&2
    die "fix ${fragments[*]##*/} (missing dependencies?)"
fi

log "building vmlinux bzImage with -j$(nproc) (several minutes)"
mk -j"$(nproc)" vmlinux bzImage >&2

tmp="$kdir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$build/vmlinux" "$tmp/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$build/.config" "$tmp/config"
rm -rf "$kdir"
mv "$tmp" "$kdir"
rm -rf "$build"
log "done: $kdir"
publish
