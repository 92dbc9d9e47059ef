#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30), starting from its corpus in
# fuzz/corpus/<target>/, and fails on the first crash, timeout or violated invariant.
#
#   tests/fuzz.sh 30      # the test suite's short run: about 30 s a target
#   tests/fuzz.sh 3600    # a nightly run: an hour a target
#   tests/fuzz.sh 60 api_http_request    # only the targets named
#
# The targets link libFuzzer (libfuzzer-sys) and are built with the same coverage
# instrumentation cargo-fuzz uses with `--sanitizer none`, by plain cargo on the stable
# toolchain, so nothing beyond cargo and a C++ compiler is needed; `cargo fuzz run TARGET
# -s none` works on the same crate for anyone who has cargo-fuzz. New inputs found during a
# run go to <target dir>/corpus/<target>/ (fuzz/target/ unless CARGO_TARGET_DIR says
# otherwise), never into the committed corpus; logs to <target dir>/fuzz-logs/; a failing
# input is saved as fuzz/artifacts/<target>/crash-* (or timeout-*), to be turned into a
# regression test.
#
# Set FUZZ_JOBS to run that many targets at once (default: one).
set -euo pipefail
# cargo reads a relative CARGO_TARGET_DIR from where it runs; this script moves into fuzz/.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR="$(realpath -m -- "$CARGO_TARGET_DIR")"
    export CARGO_TARGET_DIR
fi
cd "$(dirname "$0")/../fuzz"
target_dir="$(realpath -m -- "${CARGO_TARGET_DIR:-target}")"
committed_corpus="$(realpath -m corpus)"
case "$target_dir/" in
"$committed_corpus"/*)
    echo "fuzz: CARGO_TARGET_DIR lies inside the committed corpus ($committed_corpus)" >&2
    exit 2
    ;;
esac

seconds="${1:-30}"
jobs="${FUZZ_JOBS:-1}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
targets=(virtio_iommu_request virtio_chains virtio_pci_transport pci_config_space vfio_pci_function
    kernel_loader dma_engine_ring smmuv3_tables api_http_request)
if [ "$#" -gt 1 ]; then
    shift
    for wanted in "$@"; do
        if [[ " ${targets[*]} " != *" $wanted "* ]]; then
            echo "fuzz: no target '$wanted' (targets: ${targets[*]})" >&2
            exit 2
        fi
    done
    targets=("$@")
fi

if ! command -v c++ >/dev/null; then
    echo "fuzz: libFuzzer needs a C++ compiler (c++)" >&2
    exit 2
fi

# cargo-fuzz's instrumentation flags (stable rustc accepts all of them): inline 8-bit
# counters and PC tables for coverage, compare tracing for libFuzzer's value profile, debug
# assertions and overflow checks on, `cfg(fuzzing)` set.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks -Ccodegen-units=1"

echo "fuzz: building ${#targets[@]} targets"
# --target keeps the flags off build scripts and proc macros.
cargo build --release --locked --target "$triple" "${targets[@]/#/--bin=}"

bin="$target_dir/$triple/release"
logs="$target_dir/fuzz-logs"
mkdir -p "$logs"

run_target() {
    local target="$1"
    local work="$target_dir/corpus/$target"
    local artifacts="artifacts/$target"
    mkdir -p "$work" "$artifacts"
    # Each worker process starts from the committed seeds plus what earlier runs found.
    if "$bin/$target" "$work" "corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$logs/$target.log" 2>&1; then
        local stats
        stats="$(grep -E '^(#[0-9]+: cov:|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)' "$logs/$target.log" | tr '\n' ' ')"
        local final
        final="$(grep -E '^#[0-9]+\s+(DONE|pulse|NEW|REDUCE)' "$logs/$target.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)"
        printf 'fuzz: %-22s ok   %s %s\n' "$target" "${final:-}" "$(echo "$stats" | grep -oE 'stat::(number_of_executed_units|average_exec_per_sec): *[0-9]+' | sed 's/stat:://' | tr '\n' ' ')"
        return 0
    fi
    printf 'fuzz: %-22s FAILED (log: %s)\n' "$target" "$logs/$target.log" >&2
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$logs/$target.log" | head -8 >&2
    return 1
}

failed=0
running=0
for target in "${targets[@]}"; do
    if [ "$jobs" -le 1 ]; then
        run_target "$target" || failed=1
    else
        run_target "$target" || failed=1 &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
            wait -n || failed=1
            running=$((running - 1))
        fi
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz: a target failed; its input is in fuzz/artifacts/<target>/" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
