#!/usr/bin/env bash
# Install what is missing (via scripts/setup.sh), build, and run the main job:
# the vhost-user-vgpu daemon's vtest front door on lavapipe, plus demo clients.
#
# Today this shows the vtest transport only: our own probe client does Mesa's exact
# handshake, reads the Venus capset, creates shared-memory blobs, creates a ring with
# vkCreateRingMESA and round-trips a reply through it; then the real Mesa Venus driver
# (vulkaninfo) connects and gets as far as the renderer allows. The Venus dispatch
# handlers are not plugged in yet, so the driver's first Vulkan command fails its
# context, the ring shows FATAL and vulkaninfo aborts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

echo "== building vhost-user-vgpu"
cargo build -q -p vgpu-device --bin vhost-user-vgpu
BIN="${CARGO_TARGET_DIR:-target}/debug/vhost-user-vgpu"

WORK="$(mktemp -d)"
SOCK="$WORK/vtest.sock"
DAEMON_PID=""
cleanup() {
    if [ -n "$DAEMON_PID" ]; then kill "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== host driver (lavapipe), natively"
VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.json vulkaninfo --summary 2>/dev/null \
    | grep -E 'apiVersion|deviceName|driverName|driverInfo' || true

echo "== starting daemon: $BIN vtest --socket $SOCK"
RUST_LOG="${RUST_LOG:-info}" "$BIN" vtest --socket "$SOCK" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { cat "$WORK/daemon.log"; echo "daemon did not start" >&2; exit 1; }

echo "== demo client: vtest handshake, capset, blob, submit"
"$BIN" probe --socket "$SOCK"

echo "== real Mesa Venus driver: vulkaninfo --summary over vtest"
set +e
(
    ulimit -c 0
    VN_DEBUG=vtest,init VTEST_SOCKET_NAME="$SOCK" \
        VK_DRIVER_FILES=/usr/share/vulkan/icd.d/virtio_icd.json \
        timeout 60 vulkaninfo --summary
    exit $?
) >"$WORK/vulkaninfo.out" 2>&1
rc=$?
set -e
grep -E 'MESA-VIRTIO|vn_|apiVersion|deviceName|ERROR|abort' "$WORK/vulkaninfo.out" | head -30 || true
echo "(vulkaninfo exit status $rc; expected non-zero until the Venus renderer is plugged in)"

echo "== daemon log"
cat "$WORK/daemon.log"
