#!/usr/bin/env bash
# Time-boxed fuzz smoke run of every fuzz workspace: the vulkan-proto decoder (issue 2,
# section 4) and the Venus executor on lavapipe (issue 10, device/fuzz).
#
#   scripts/fuzz-smoke.sh            # each target ~60 s from the committed seeds
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh
#
# Uses cargo-fuzz (libFuzzer) on the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# passes -Z flags to rustc; see vulkan-proto/fuzz/README.md). Installs cargo-fuzz if it is
# missing. Exit status: 0 when every target ran clean; 1 when a target found a crash (the
# reproducer is under <dir>/artifacts/<target>/); 0 with a loud "FUZZ SMOKE SKIPPED" line
# only when the fuzzer itself cannot be installed or built here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
# fuzz workspace:target, run in this order.
TARGETS=(
    vulkan-proto/fuzz:decode_stream
    vulkan-proto/fuzz:mutate_valid
    device/fuzz:exec_sequences
)
# Extra libFuzzer flags per target (the executor target: no leak check, since lavapipe
# keeps driver-internal allocations, should it be built with AddressSanitizer; a longer
# per-input timeout, an input creates several lavapipe devices).
extra_flags() {
    case "$1" in
        exec_sequences) echo "-detect_leaks=0 -timeout=60" ;;
        *) echo "" ;;
    esac
}
# cargo-fuzz flags per fuzz workspace: the executor spends its time in lavapipe (LLVM),
# which AddressSanitizer slows ~5x, and its bugs are driver crashes libFuzzer sees
# without it (device/fuzz/README.md).
fuzz_flags() {
    case "$1" in
        device/fuzz) echo "-O -s none" ;;
        *) echo "-O" ;;
    esac
}
export RUSTC_BOOTSTRAP=1
# The executor target runs on lavapipe, one llvmpipe thread per device.
export VK_DRIVER_FILES="${VK_DRIVER_FILES:-/usr/share/vulkan/icd.d/lvp_icd.json}"
export LP_NUM_THREADS="${LP_NUM_THREADS:-1}"
# Keep the fuzz build (instrumented, its own workspace) apart from the main target dir.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"

skip() {
    echo "== FUZZ SMOKE SKIPPED: $*"
    echo "== (the corpora are still replayed by: cargo test -p vulkan-proto --test fuzz_replay"
    echo "==  and cargo test -p vgpu-device --test exec_fuzz_replay)"
    exit 0
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || skip "cargo-fuzz could not be installed"
fi

root="$PWD"
built=""
status=0
for entry in "${TARGETS[@]}"; do
    dir="${entry%%:*}"
    t="${entry#*:}"
    cd "$root/$dir"
    case " $built " in
        *" $dir "*) ;;
        *)
            echo "== cargo fuzz build $(fuzz_flags "$dir") in $dir (RUSTC_BOOTSTRAP=1)"
            # shellcheck disable=SC2046 # the flags are separate words
            cargo fuzz build $(fuzz_flags "$dir") || skip "the fuzz targets in $dir could not be built with this toolchain"
            built="$built $dir"
            ;;
    esac
    mkdir -p "corpus/$t" "artifacts/$t" "regressions/$t"
    echo "== fuzz $dir:$t for ${SECONDS_PER_TARGET}s (seeds/$t, regressions/$t)"
    log="$(mktemp)"
    set +e
    # shellcheck disable=SC2046 # the extra flags are separate words
    cargo fuzz run $(fuzz_flags "$dir") "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -print_final_stats=1 \
        $(extra_flags "$t") >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^(#[0-9]+ +(INITED|DONE)|Done |stat::number_of_executed_units|==[0-9]+==|thread .* panicked|SUMMARY|Test unit written)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log"
        echo "== FUZZ SMOKE FAILED: $t exited with $rc; reproducer under $dir/artifacts/$t/"
        status=1
    fi
    rm -f "$log"
done
[ "$status" -eq 0 ] && echo "== fuzz smoke: all targets clean"
exit "$status"
