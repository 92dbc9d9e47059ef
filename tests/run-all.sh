#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests on /dev/kvm, a short
# run of every fuzz target, and the nested rig (real Linux guests under real KVM). Installs
# what it needs when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
    echo "run-all: cargo is not installed; install a Rust toolchain (rustup) first" >&2
    exit 2
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# On these machines /dev/kvm exists: a test that cannot open it must fail, not skip.
if [ -e /dev/kvm ]; then
    export NESTOR_REQUIRE_KVM=1
fi

# The API tests drive nestor with curl, as its users do.
if ! command -v curl >/dev/null && [ "$(id -u)" -eq 0 ]; then
    step "installing curl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q curl || { apt-get update -q && apt-get install -y -q curl; }
fi

# The rig's two kernels take longest on a new machine: build them in the background, at
# the lowest priority, on whatever CPU the steps below leave idle; the rig step waits.
kernels_log=""
kernels_pid=""
if [ "${NESTOR_SKIP_RIG:-0}" != 1 ]; then
    kernels_log=$(mktemp)
    step "building the rig's kernels in the background (log: $kernels_log)"
    # Its own process group, so that a failing step below ends it too.
    setsid nice -n 19 sh -c 'resources/guest/build-kernel.sh && resources/guest/build-kernel.sh --rig-host' \
        >"$kernels_log" 2>&1 &
    kernels_pid=$!
    trap 'kill -- "-$kernels_pid" 2>/dev/null || true' EXIT
fi

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path resources/unikernel/Cargo.toml -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit and integration tests)"
cargo test --workspace

step "benchmarks build"
cargo bench --workspace --no-run

step "fuzz targets (short run)"
tests/fuzz.sh "${NESTOR_FUZZ_SECONDS:-30}"

if [ "${NESTOR_SKIP_RIG:-0}" = 1 ]; then
    echo "run-all: NESTOR_SKIP_RIG=1: the nested rig was NOT run" >&2
else
    step "nested rig"
    if ! wait "$kernels_pid"; then
        tail -n 40 "$kernels_log"
        echo "run-all: the rig's kernels did not build (log above)" >&2
        exit 1
    fi
    tests/rig/run.sh
fi
