# shellcheck shell=bash disable=SC2154
# Content-addressed initramfs images (uncompressed newc cpio). Sourced by run.sh.
#
# make_initramfs ENTRY...   prints the path of the cached image. Entries:
#   file:DST:SRC:MODE   copy SRC to DST with octal MODE
#   link:DST:TARGET     symbolic link
#   dir:DST             directory
# The image is keyed by the entries and the content of every SRC, so an
# unchanged input list reuses the image without writing anything.
make_initramfs() {
    local entry kind dst src mode key out stage
    key=$(
        for entry in "$@"; do
            IFS=: read -r kind dst src mode <<<"$entry"
            if [[ $kind == file ]]; then
                printf 'file %s %s %s\n' "$dst" "$mode" "$(hash_file "$src")"
            else
                printf '%s\n' "$entry"
            fi
        done | hash_stdin | cut -c1-20
    )
    out="$rig_cache/initramfs/$key.cpio"
    if [[ -s $out ]]; then
        printf '%s\n' "$out"
        return 0
    fi
    mkdir -p "$rig_cache/initramfs"
    stage=$(mktemp -d "$rig_cache/initramfs/stage.XXXXXX")
    for entry in "$@"; do
        IFS=: read -r kind dst src mode <<<"$entry"
        case $kind in
            dir)  mkdir -p "$stage/$dst" ;;
            link) mkdir -p "$stage/$(dirname "$dst")"; ln -sfn "$src" "$stage/$dst" ;;
            file) mkdir -p "$stage/$(dirname "$dst")"
                  cp "$src" "$stage/$dst"; chmod "$mode" "$stage/$dst" ;;
            *)    rm -rf "$stage"; die "bad initramfs entry: $entry" ;;
        esac
    done
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --quiet) > "$out.tmp"
    rm -rf "$stage"
    mv "$out.tmp" "$out"
    log "built initramfs $out ($(du -h "$out" | cut -f1))"
    printf '%s\n' "$out"
}
