#!/usr/bin/env bash
# Builds the test guest for the vhost-user path: a Debian kernel (bookworm-backports) and a
# busybox initramfs that loads the virtio-gpu driver and runs vgpu-guest-check.
#
#   scripts/guest/build-initramfs.sh [OUT_DIR]      (default: build/guest)
#
# The guest is pinned: an exact kernel and busybox package, each checked against its
# SHA-256 (the values apt's Packages index lists for them), so a newer archive never
# silently changes what the test runs. To move to a newer kernel, set KVER/KDEB_VERSION
# from `apt-cache policy linux-image-amd64 -t bookworm-backports` and KDEB_SHA256 from
# `apt-cache show linux-image-$KVER=$KDEB_VERSION | grep SHA256`.
#
# Downloads are cached outside the checkout, in $VGPU_GUEST_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/vgpu/guest), so a fresh clone finds them; a cached file
# whose checksum does not match is downloaded again. Needs apt (bookworm-backports added
# by scripts/setup.sh) or plain HTTP access to deb.debian.org, and dpkg-deb, cpio, xz,
# gzip and gcc. Writes OUT_DIR/vmlinuz and OUT_DIR/initrd.gz.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${1:-build/guest}
CACHE=${VGPU_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vgpu/guest}
mkdir -p "$OUT" "$CACHE"

KVER=6.12.95+deb12-amd64
KPKG=linux-image-$KVER
KDEB_VERSION=6.12.95-1~bpo12+1
KDEB_POOL=pool/main/l/linux-signed-amd64/linux-image-6.12.95+deb12-amd64_6.12.95-1~bpo12+1_amd64.deb
KDEB_SHA256=5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc
BB_VERSION=1:1.35.0-4+deb12u1+b1
BB_POOL=pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
BB_SHA256=3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744

# fetch PACKAGE VERSION POOL_PATH SHA256: prints the path of the verified .deb.
fetch() {
    local pkg=$1 ver=$2 pool=$3 sum=$4
    local file="$CACHE/$(basename "$pool")"
    if [ -f "$file" ] && echo "$sum  $file" | sha256sum --check --status; then
        echo "$file"
        return
    fi
    rm -f "$file" "$file.part"
    echo "== downloading $pkg $ver" >&2
    local tmp
    tmp=$(mktemp -d)
    # apt first (mirrors and proxies as configured), then the pool path directly.
    if (cd "$tmp" && apt-get download -q "$pkg=$ver" >&2 2>/dev/null) &&
        mv "$tmp"/*.deb "$file.part"; then
        :
    else
        python3 - "http://deb.debian.org/debian/$pool" "$file.part" <<'PY' >&2 || true
import sys, urllib.request
urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
PY
    fi
    rm -rf "$tmp"
    if [ ! -f "$file.part" ]; then
        echo "cannot download $pkg $ver: it may have left the archive; pick a current version as described at the top of $0" >&2
        exit 1
    fi
    if ! echo "$sum  $file.part" | sha256sum --check --status; then
        echo "checksum mismatch for $pkg $ver (want $sum, got $(sha256sum "$file.part" | cut -d' ' -f1)); refusing it" >&2
        rm -f "$file.part"
        exit 1
    fi
    mv "$file.part" "$file"
    echo "$file"
}
KDEB=$(fetch "$KPKG" "$KDEB_VERSION" "$KDEB_POOL" "$KDEB_SHA256")
BBDEB=$(fetch busybox-static "$BB_VERSION" "$BB_POOL" "$BB_SHA256")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$KDEB" "$WORK/k"
dpkg-deb -x "$BBDEB" "$WORK/bb"
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
# The host (run-qemu.sh) resets the VM once when it sees VGPU-WAIT-RESET, as a reboot
# would: QEMU then only stops and restarts the device's rings, and the device must start
# over for the new driver. A marker in CMOS RAM (it survives the reset) tells the boots
# apart, so the first one can wait for the host however slow the host is.
if /bin/vgpu-guest-check --first-boot; then
    echo "VGPU-WAIT-RESET"
    sleep 600
    echo "VGPU-NO-RESET"
else
    echo "VGPU-REBOOTED"
fi
echo "VGPU-GUEST-DONE"
poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/initrd.gz"
echo "== guest kernel $KVER and initramfs in $OUT"
