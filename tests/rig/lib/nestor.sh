# shellcheck shell=bash disable=SC2154
# Builds a static nestor for the rig host (L2 has no libc). Sourced by run.sh.

# Prints the path of the static nestor binary (nestor-iommufd-selftest, the
# iommufd test driver check, is built beside it); returns non-zero if they
# cannot be built.
build_static_nestor() {
    local target=x86_64-unknown-linux-gnu
    local target_dir="$repo_dir/target/rig"
    local bin="$target_dir/$target/release/nestor"
    [[ -f $repo_dir/Cargo.toml ]] || { log "no Cargo workspace at $repo_dir"; return 1; }
    log "building static nestor (CARGO_TARGET_DIR=$target_dir)"
    if ! (cd "$repo_dir" &&
          CARGO_TARGET_DIR="$target_dir" \
          RUSTFLAGS='-C target-feature=+crt-static' \
          cargo build --release --target "$target" --bin nestor \
              --bin nestor-iommufd-selftest) >&2; then
        log "static nestor build failed"
        return 1
    fi
    if readelf -l "$bin" | grep -q INTERP; then
        log "$bin is not static (it has a program interpreter)"
        return 1
    fi
    printf '%s\n' "$bin"
}
