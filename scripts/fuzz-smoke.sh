#!/usr/bin/env bash
# Time-boxed fuzz smoke run of the vulkan-proto decoder (issue 2, section 4).
#
#   scripts/fuzz-smoke.sh            # each target ~60 s from the committed seeds
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh
#
# Uses cargo-fuzz (libFuzzer) on the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# passes -Z flags to rustc; see vulkan-proto/fuzz/README.md). Installs cargo-fuzz if it is
# missing. Exit status: 0 when every target ran clean; 1 when a target found a crash (the
# reproducer is under vulkan-proto/fuzz/artifacts/<target>/); 0 with a loud
# "FUZZ SMOKE SKIPPED" line only when the fuzzer itself cannot be installed or built here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS=(decode_stream mutate_valid)
FUZZ_DIR=vulkan-proto/fuzz
export RUSTC_BOOTSTRAP=1
# Keep the fuzz build (instrumented, its own workspace) apart from the main target dir.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"

skip() {
    echo "== FUZZ SMOKE SKIPPED: $*"
    echo "== (the corpus is still replayed by: cargo test -p vulkan-proto --test fuzz_replay)"
    exit 0
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || skip "cargo-fuzz could not be installed"
fi

cd "$FUZZ_DIR"
echo "== cargo fuzz build -O (RUSTC_BOOTSTRAP=1, address sanitizer)"
cargo fuzz build -O || skip "the fuzz targets could not be built with this toolchain"

status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    echo "== fuzz $t for ${SECONDS_PER_TARGET}s (seeds/$t, regressions/$t)"
    log="$(mktemp)"
    set +e
    cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^(#[0-9]+ +(INITED|DONE)|Done |stat::number_of_executed_units|==[0-9]+==|thread .* panicked|SUMMARY|Test unit written)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log"
        echo "== FUZZ SMOKE FAILED: $t exited with $rc; reproducer under $FUZZ_DIR/artifacts/$t/"
        status=1
    fi
    rm -f "$log"
done
[ "$status" -eq 0 ] && echo "== fuzz smoke: all targets clean"
exit "$status"
