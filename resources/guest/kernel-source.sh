# shellcheck shell=bash disable=SC2154,SC2034
# Where build-kernel.sh gets a kernel source. Sourced, not run; expects
# $profile (guest or rig-host), $cache_root, log and die.
#
# guest: Debian's linux-source-6.12 package, installed by apt (the guest
# kernel nestor's tests boot, L3 in the rig).
#
# rig-host: the newest linux-source-X.Y package (X.Y >= 6.15: vIOMMU, vDEVICE
# and vEVENTQ) of a newer Debian suite (NESTOR_KERNEL_SUITE, default
# trixie-backports), downloaded with apt through a private sources list, state
# and cache under $cache_root/kernel/apt, so the machine's own apt setup is
# left as it is. The mirror is the one the machine's apt sources already name
# for Debian. NESTOR_KERNEL_PACKAGE=linux-source-X.Y picks a package instead
# of the newest. The choice is remembered: later builds reuse the downloaded
# package without the network (NESTOR_KERNEL_REFRESH=1 looks again).
# NESTOR_RIG_KERNEL_SOURCE=PATH takes a kernel source tarball instead (any
# compression tar understands, one top-level directory).
#
# Sets kernel_source_id (what the cache key covers: the package and its
# version, or the tarball's sha256) and provides unpack_kernel_source DIR.

kernel_suite=${NESTOR_KERNEL_SUITE:-trixie-backports}
kernel_min_series=6.15
apt_root="$cache_root/kernel/apt"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian archive URI the machine's apt sources use for its main suite
# (deb822 .sources files first, then one-line sources.list files).
machine_debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # Stanzas are separated by blank lines; take one whose suites include
        # a plain codename (no -security/-updates) and whose URI ends in /debian.
        uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
            {
                u = ""; plain = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u = a[1] }
                    if ($i ~ /^Suites:/) {
                        sub(/^Suites:[ \t]*/, "", $i); n = split($i, s, /[ \t]+/)
                        for (j = 1; j <= n; j++) if (s[j] !~ /-/) plain = 1
                    }
                }
                if (plain && u ~ /\/debian\/?$/) { print u; exit }
            }' "$f")
        [[ -n $uri ]] && { printf '%s\n' "${uri%/}"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        uri=$(awk '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) !~ /-/ && $i ~ /\/debian\/?$/) { print $i; exit }
            }' "$f")
        [[ -n $uri ]] && { printf '%s\n' "${uri%/}"; return 0; }
    done
    return 1
}

private_apt() {
    local tool=$1
    shift
    "$tool" -q \
        -o Dir::Etc::SourceList="$apt_root/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State="$apt_root/state" \
        -o Dir::State::Lists="$apt_root/lists" \
        -o Dir::State::status="$apt_root/state/status" \
        -o Dir::Cache="$apt_root/cache" \
        -o APT::Sandbox::User=root \
        "$@"
}

# Refreshes the private package lists of $kernel_suite and downloads the
# chosen linux-source package into $apt_root/debs; records the choice.
fetch_debian_kernel_source() {
    local mirror pkg version deb
    mirror=$(machine_debian_mirror) \
        || die "no Debian mirror found in the machine's apt sources; set NESTOR_RIG_KERNEL_SOURCE to a kernel source tarball"
    mkdir -p "$apt_root"/{lists/partial,cache/archives/partial,state,debs}
    : >"$apt_root/state/status"
    printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$kernel_suite" \
        >"$apt_root/sources.list"
    log "looking for linux-source in $kernel_suite"
    private_apt apt-get update >&2 || die "apt-get update of $kernel_suite failed"
    pkg=${NESTOR_KERNEL_PACKAGE:-}
    if [[ -z $pkg ]]; then
        pkg=$(private_apt apt-cache pkgnames linux-source- |
              grep -E '^linux-source-[0-9]+\.[0-9]+$' | sort -V | tail -n1)
        [[ -n $pkg ]] || die "no linux-source package in $kernel_suite"
    fi
    if [[ $(printf '%s\n' "$kernel_min_series" "${pkg#linux-source-}" | sort -V | head -n1) \
          != "$kernel_min_series" ]]; then
        die "$pkg is older than $kernel_min_series (vIOMMU, vDEVICE and vEVENTQ need it)"
    fi
    version=$(private_apt apt-cache policy "$pkg" | sed -n 's/^ *Candidate: *//p')
    [[ -n $version && $version != "(none)" ]] || die "$pkg is not in $kernel_suite"
    deb="$apt_root/debs/${pkg}_${version}.deb"
    if [[ ! -s $deb ]]; then
        log "downloading $pkg $version"
        (cd "$apt_root/debs" && private_apt apt-get download "$pkg=$version" >&2) \
            || die "downloading $pkg $version failed"
        mv "$apt_root/debs/${pkg}_${version//:/%3a}_all.deb" "$deb"
    fi
    printf '%s %s %s\n' "$pkg" "$version" "$deb" >"$apt_root/chosen"
}

guest_source_package=linux-source-6.12

use_installed_guest_source() {
    local tarball=/usr/src/$guest_source_package.tar.xz version
    [[ -f $tarball ]] || die "$tarball not found (is $guest_source_package installed?)"
    version=$(dpkg-query -W -f='${Version}' "$guest_source_package")
    kernel_source_id="$version"
    unpack_kernel_source() {
        tar -xJf "/usr/src/$guest_source_package.tar.xz" -C "$1" --strip-components=1
    }
}

use_rig_host_tarball() {
    [[ -f $NESTOR_RIG_KERNEL_SOURCE ]] \
        || die "NESTOR_RIG_KERNEL_SOURCE=$NESTOR_RIG_KERNEL_SOURCE is not a file"
    kernel_source_id="tarball-$(sha256sum "$NESTOR_RIG_KERNEL_SOURCE" | cut -c1-16)"
    unpack_kernel_source() {
        tar -xf "$NESTOR_RIG_KERNEL_SOURCE" -C "$1" --strip-components=1
    }
}

use_rig_host_package() {
    local chosen=""
    [[ -f $apt_root/chosen ]] && read -r chosen_pkg chosen_version chosen_deb <"$apt_root/chosen" \
        && chosen=yes
    if [[ -z $chosen || ${NESTOR_KERNEL_REFRESH:-0} == 1 || ! -s $chosen_deb ||
          ( -n ${NESTOR_KERNEL_PACKAGE:-} && $NESTOR_KERNEL_PACKAGE != "$chosen_pkg" ) ]]; then
        fetch_debian_kernel_source
        read -r chosen_pkg chosen_version chosen_deb <"$apt_root/chosen"
    fi
    kernel_source_id="$chosen_pkg-$chosen_version"
    # The package holds /usr/src/linux-source-X.Y.tar.xz; nothing of the newer
    # suite is installed, the tarball is streamed out of the package.
    unpack_kernel_source() {
        dpkg-deb --fsys-tarfile "$chosen_deb" |
            tar -xO "./usr/src/$chosen_pkg.tar.xz" |
            tar -xJ -C "$1" --strip-components=1
    }
}

case $profile in
    guest) use_installed_guest_source ;;
    rig-host)
        if [[ -n ${NESTOR_RIG_KERNEL_SOURCE:-} ]]; then
            use_rig_host_tarball
        else
            use_rig_host_package
        fi
        ;;
    *) die "unknown kernel profile $profile" ;;
esac
