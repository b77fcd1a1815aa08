#!/usr/bin/env bash
# Install what vgpu needs on a fresh Debian 12 (bookworm) machine.
#
# Idempotent: adds bookworm-backports only if missing, runs `apt-get update` only
# when something must be installed, and installs only the packages that are missing
# (or, for Mesa, older than the 25.x backport the tests are written against).
# Needs root to change anything; when not root and something is missing, it prints
# the exact sudo command to run and exits 1.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
BACKPORTS_FILE=/etc/apt/sources.list.d/bookworm-backports.sources
ICD_DIR=/usr/share/vulkan/icd.d

# Packages installed with `-t bookworm-backports`:
#   mesa-vulkan-drivers  Mesa 25.0.7: lavapipe host ICD (lvp_icd.json) and the Venus
#                        guest ICD (virtio_icd.json) that the tests drive over vtest
#   libvulkan1           the Vulkan loader
#   libvulkan-dev        loader development files (ash links the loader at run time)
#   vulkan-tools         vulkaninfo, used by the demo and the real-driver smoke test
#   glslang-tools        glslangValidator, only to regenerate tests/shaders/*.spv
#                        (tests/shaders/build.sh); the tests read the committed .spv
#   qemu-system-x86      QEMU 10.0.2, for the Linux guest test of the vhost-user front
#                        door (device/tests/qemu_guest.rs, scripts/guest/)
#   cpio, xz-utils, gcc  building that guest's initramfs and its static check program
PACKAGES=(mesa-vulkan-drivers libvulkan1 libvulkan-dev vulkan-tools glslang-tools
    qemu-system-x86 cpio xz-utils gcc)
MIN_MESA_MAJOR=25

log() { echo "setup: $*" >&2; }

have_backports_source() {
    grep -rqs --include='*.list' --include='*.sources' -E 'bookworm-backports' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

mesa_new_enough() {
    local v
    v="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
    [ -n "$v" ] || return 1
    [ "${v%%.*}" -ge "$MIN_MESA_MAJOR" ] 2>/dev/null || return 1
    [ -f "$ICD_DIR/lvp_icd.json" ] && [ -f "$ICD_DIR/virtio_icd.json" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$p" = mesa-vulkan-drivers ]; then
        mesa_new_enough || missing+=("$p")
    else
        pkg_installed "$p" || missing+=("$p")
    fi
done
need_source=0
have_backports_source || need_source=1

if [ "${#missing[@]}" -eq 0 ] && [ "$need_source" -eq 0 ]; then
    log "everything is installed (mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
    exit 0
fi
if [ "${#missing[@]}" -eq 0 ]; then
    # Packages are present; the missing apt source only matters for future installs.
    log "all packages present; bookworm-backports apt source not configured (not needed now)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "missing: ${missing[*]}"
    log "run this once, then try again:"
    echo "sudo $SELF"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
updated=0
if [ "$need_source" -eq 1 ]; then
    log "adding $BACKPORTS_FILE"
    cat >"$BACKPORTS_FILE" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# Update the package lists only when the backports lists are absent or a package
# cannot be found in the current lists.
lists_have_backports() {
    ls /var/lib/apt/lists/ 2>/dev/null | grep -q 'bookworm-backports_main_binary'
}
if [ "$need_source" -eq 1 ] || ! lists_have_backports; then
    log "apt-get update"
    apt-get update -q
    updated=1
fi

install() {
    apt-get install -y -q --no-install-recommends -t bookworm-backports "$@"
}
log "installing: ${missing[*]}"
if ! install "${missing[@]}"; then
    if [ "$updated" -eq 0 ]; then
        log "install failed with the current package lists; updating and retrying"
        apt-get update -q
        install "${missing[@]}"
    else
        exit 1
    fi
fi

mesa_new_enough || { log "mesa-vulkan-drivers is still older than $MIN_MESA_MAJOR.x"; exit 1; }
log "done (mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
