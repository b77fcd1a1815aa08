#!/usr/bin/env bash
# Boots the test guest (scripts/guest/build-initramfs.sh) under QEMU TCG with a
# vhost-user-gpu-pci device on a running backend's socket, records the serial console and,
# when the guest has drawn its pattern, takes a QMP screendump.
#
#   scripts/guest/run-qemu.sh BACKEND_SOCKET OUT_DIR [GUEST_DIR]
#
# BACKEND_SOCKET "none" boots without the GPU (to check the guest image itself).
# With VGPU_DAEMON_PID set, the daemon also gets SIGUSR1 when the pattern is drawn (its
# headless display then writes scanout PNGs to its frame_dir).
# When the guest prints VGPU-WAIT-RESET (after the screendump) the VM is reset over QMP
# (system_reset, as a reboot); the guest, which waits for it, boots again, runs its
# checks a second time and prints VGPU-REBOOTED.
# Writes OUT_DIR/serial.log and OUT_DIR/screendump.ppm (if the marker appeared).
# Exit status: 0 if the guest reached VGPU-GUEST-DONE, 1 otherwise (timeout: 300 s, for
# a loaded host; an idle one needs about 40 s).
set -euo pipefail
SOCK=$1
OUT=$2
GUEST=${3:-build/guest}
mkdir -p "$OUT"
OUT_ABS=$(cd "$OUT" && pwd)
QMP="$OUT/qmp.sock"
rm -f "$QMP" "$OUT/serial.log" "$OUT/screendump.ppm"

GPU=()
if [ "$SOCK" != none ]; then
    GPU=(-chardev "socket,id=vgpu,path=$SOCK" -device vhost-user-gpu-pci,chardev=vgpu)
fi
qemu-system-x86_64 -accel tcg -m 512 -smp 1 -nographic -vga none \
    -object memory-backend-memfd,id=mem0,size=512M,share=on -machine q35,memory-backend=mem0 \
    "${GPU[@]}" -display none -qmp "unix:$QMP,server=on,wait=off" \
    -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz" \
    -append "console=ttyS0 loglevel=4 panic=-1" > "$OUT/serial.log" 2>&1 &
QEMU=$!
trap 'kill $QEMU 2>/dev/null || true' EXIT

qmp() {
    python3 - "$QMP" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ({"execute": "qmp_capabilities"}, json.loads(sys.argv[2])):
    f.write(json.dumps(cmd) + "\n"); f.flush()
    while True:
        line = json.loads(f.readline())
        if "return" in line or "error" in line:
            print(json.dumps(line)); break
PY
}

dumped=0
reset=0
for _ in $(seq 1 600); do
    if [ $dumped = 0 ] && grep -q VGPU-PATTERN-READY "$OUT/serial.log" 2>/dev/null; then
        sleep 2
        if [ -n "${VGPU_DAEMON_PID:-}" ]; then kill -USR1 "$VGPU_DAEMON_PID" || true; fi
        qmp "{\"execute\": \"screendump\", \"arguments\": {\"filename\": \"$PWD/$OUT/screendump.ppm\"}}" \
            > "$OUT/screendump.json" 2>&1 || true
        dumped=1
    fi
    if [ $dumped = 1 ] && [ $reset = 0 ] && grep -q VGPU-WAIT-RESET "$OUT/serial.log" 2>/dev/null; then
        qmp '{"execute": "system_reset"}' > "$OUT/reset.json" 2>&1 || true
        reset=1
    fi
    if grep -q VGPU-GUEST-DONE "$OUT/serial.log" 2>/dev/null; then
        wait $QEMU || true
        exit 0
    fi
    if ! kill -0 $QEMU 2>/dev/null; then
        break
    fi
    sleep 0.5
done
echo "guest did not finish; see $OUT/serial.log"
exit 1
