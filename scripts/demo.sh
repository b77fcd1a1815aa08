#!/usr/bin/env bash
# Install what is missing (via scripts/setup.sh), build, and run the main job: the
# vhost-user-vgpu daemon's vtest front door with the Venus renderer on lavapipe, and two
# unmodified clients through it — Khronos `vulkaninfo --summary` and a small compute
# program (saxpy, checked against the CPU) — using Mesa's Venus guest driver. Prints
# what the guest saw, then stops the daemon. Idempotent (private temp dir, nothing left
# behind); exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

LVP_ICD=/usr/share/vulkan/icd.d/lvp_icd.json
VIRTIO_ICD=/usr/share/vulkan/icd.d/virtio_icd.json
TARGET="${CARGO_TARGET_DIR:-target}"

echo "== building vhost-user-vgpu and the demo client"
cargo build -q -p vgpu-device --bin vhost-user-vgpu -p vgpu-tests --bin venus-demo
BIN="$TARGET/debug/vhost-user-vgpu"
DEMO="$TARGET/debug/venus-demo"

WORK="$(mktemp -d)"
SOCK="$WORK/vtest.sock"
DAEMON_PID=""
cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "demo FAILED: $*" >&2
    echo "== daemon log" >&2
    cat "$WORK/daemon.log" >&2 || true
    exit 1
}

# Runs a client through Venus: Mesa's virtio ICD speaking vtest to our socket.
venus() {
    VK_DRIVER_FILES="$VIRTIO_ICD" VN_DEBUG=vtest VTEST_SOCKET_NAME="$SOCK" \
        timeout 120 "$@"
}

echo "== host driver (lavapipe), natively"
VK_DRIVER_FILES="$LVP_ICD" vulkaninfo --summary 2>/dev/null \
    | grep -E '^\s*(apiVersion|deviceName|driverName)\s*=' || true

echo "== starting daemon: VK_DRIVER_FILES=$LVP_ICD $BIN vtest --socket $SOCK"
VK_DRIVER_FILES="$LVP_ICD" RUST_LOG="${RUST_LOG:-info}" \
    "$BIN" vtest --socket "$SOCK" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || fail "the daemon's socket did not appear"

echo "== guest: vulkaninfo --summary through Venus"
venus vulkaninfo --summary >"$WORK/vulkaninfo.out" 2>"$WORK/vulkaninfo.err" \
    || { rc=$?; cat "$WORK/vulkaninfo.out" "$WORK/vulkaninfo.err"; fail "vulkaninfo exited $rc"; }
grep -E '^\s*(apiVersion|deviceName|driverName|driverInfo|conformanceVersion)\s*=' \
    "$WORK/vulkaninfo.out" || true
grep -qE 'deviceName\s*=\s*Virtio-GPU Venus' "$WORK/vulkaninfo.out" \
    || fail "vulkaninfo did not see a Venus device"

echo "== guest: compute sample (saxpy) through Venus"
venus "$DEMO" || fail "the compute sample failed"

echo "== stopping the daemon"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
if grep -qE ' (ERROR|WARN) ' "$WORK/daemon.log"; then
    echo "daemon warnings/errors:"
    grep -E ' (ERROR|WARN) ' "$WORK/daemon.log"
fi
echo "demo OK: the guest saw a Venus device on lavapipe and its compute results were correct"
