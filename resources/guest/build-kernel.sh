#!/usr/bin/env bash
# Build the nestor guest kernel (vmlinux with a PVH note, and bzImage) from
# Debian's linux-source-6.12, tinyconfig + kernel.config.
#
# usage: build-kernel.sh [OUTDIR]
#
# Results are cached under ${NESTOR_CACHE:-$HOME/.cache/nestor}/kernel/KEY/,
# KEY being a hash of kernel.config, this script and the linux-source package
# version; a warm call only prints the paths. With OUTDIR, vmlinux and bzImage
# are also copied there. The last two lines printed are always
#   vmlinux=PATH
#   bzImage=PATH
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment="$here/kernel.config"
self="$here/$(basename "${BASH_SOURCE[0]}")"
outdir=${1:-}
cache_root=${NESTOR_CACHE:-$HOME/.cache/nestor}
src_pkg=linux-source-6.12
tarball=/usr/src/$src_pkg.tar.xz
deps=(bc flex bison libelf-dev libssl-dev cpio xz-utils lz4 make gcc)

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

missing_packages() {
    local p
    for p in "$src_pkg" "${deps[@]}"; do
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
[[ -f $tarball ]] || die "$tarball not found (is $src_pkg installed?)"

src_version=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$( { sha256sum "$fragment" "$self" | cut -d' ' -f1; echo "$src_version"; } \
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

# Unpack the source once per package version; builds happen out of tree.
srcdir="$cache_root/kernel/src-$src_version"
if [[ ! -f $srcdir/.unpacked ]]; then
    log "unpacking $tarball"
    rm -rf "$srcdir"
    mkdir -p "$srcdir"
    tar -xJf "$tarball" -C "$srcdir" --strip-components=1
    touch "$srcdir/.unpacked"
fi

build="$cache_root/kernel/build-$key"
rm -rf "$build"
mkdir -p "$build"
mk() { make -C "$srcdir" O="$build" ARCH=x86_64 "$@"; }

log "configuring in $build"
mk -s tinyconfig >&2
"$srcdir/scripts/kconfig/merge_config.sh" -m -O "$build" \
    "$build/.config" "$fragment" >&2
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
done < "$fragment"
if [[ ${#dropped[@]} -gt 0 ]]; then
    log "these requested options did not make it into .config:"
    printf '  %s\n' "${dropped[@]}" >&2
    die "fix kernel.config (missing dependencies?)"
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
