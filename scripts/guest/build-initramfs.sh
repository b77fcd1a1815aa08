#!/usr/bin/env bash
# Builds the test guest for the vhost-user path: a Debian kernel (bookworm-backports) and a
# busybox initramfs that loads the virtio-gpu driver and runs vgpu-guest-check.
#
#   scripts/guest/build-initramfs.sh [OUT_DIR]      (default: build/guest)
#
# Downloaded .deb files are cached in build/guest-cache/, so repeated runs download
# nothing. Needs apt (bookworm-backports added by scripts/setup.sh), dpkg-deb, cpio, xz,
# gzip and gcc. Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.gz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${1:-build/guest}
CACHE=build/guest-cache
mkdir -p "$OUT" "$CACHE"

KPKG=$(apt-cache depends -t bookworm-backports linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image/{print $2; exit}')
[ -n "$KPKG" ] || { echo "cannot resolve the bookworm-backports kernel package (run scripts/setup.sh)"; exit 1; }
KVER=${KPKG#linux-image-}

fetch() {
    local pkg=$1
    if ! ls "$CACHE"/"${pkg}"_*.deb >/dev/null 2>&1; then
        echo "== downloading $pkg"
        (cd "$CACHE" && apt-get download -t bookworm-backports "$pkg" 2>/dev/null ||
            apt-get download "$pkg")
    fi
}
fetch "$KPKG"
fetch busybox-static

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$(ls "$CACHE"/"${KPKG}"_*.deb | head -n1)" "$WORK/k"
dpkg-deb -x "$(ls "$CACHE"/busybox-static_*.deb | head -n1)" "$WORK/bb"
cp "$WORK/k/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

R="$WORK/root"
mkdir -p "$R"/{bin,dev,proc,sys,lib/modules}
cp "$WORK/bb/bin/busybox" "$R/bin/busybox"
MODS="$WORK/k/lib/modules/$KVER/kernel"
# Load order matters (dependencies first).
for m in drivers/gpu/drm/drm drivers/gpu/drm/drm_kms_helper drivers/gpu/drm/drm_shmem_helper \
         drivers/virtio/virtio_dma_buf drivers/gpu/drm/virtio/virtio-gpu; do
    xz -dc "$MODS/$m.ko.xz" > "$R/lib/modules/$(basename "$m").ko"
done
gcc -static -O2 -Wall -Wextra -Werror -o "$R/bin/vgpu-guest-check" scripts/guest/vgpu-guest-check.c

cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in drm drm_kms_helper drm_shmem_helper virtio_dma_buf virtio-gpu; do
    insmod /lib/modules/$m.ko || echo "VGPU-INSMOD-FAILED $m"
done
sleep 1
echo "VGPU-DMESG-BEGIN"
dmesg | grep -iE 'drm|virtio'
echo "VGPU-DMESG-END"
for f in /sys/bus/virtio/devices/*/features; do echo "VGPU-FEATURES $f $(cat $f)"; done
/bin/vgpu-guest-check
echo "VGPU-GUEST-CHECK-RC $?"
sleep 4
# The host (run-qemu.sh) resets the VM once when it sees this, as a reboot would:
# QEMU then only stops and restarts the device's rings, and the device must start
# over for the new driver. The boot that is not reset within 6 s finishes.
echo "VGPU-WAIT-RESET"
sleep 6
echo "VGPU-GUEST-DONE"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/initrd.gz"
echo "== guest kernel $KVER and initramfs in $OUT"
