#!/usr/bin/env bash
# Install what is missing (via scripts/setup.sh), then run the whole test suite.
# This is the README's test command and the first step of .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

echo "== cargo test --workspace"
cargo test --workspace

# Extra test steps go below this line, each one announced with an "== " line.

echo "== Linux guest on the vhost-user front door (QEMU 10.0.2, TCG)"
cargo test -p vgpu-device --test qemu_guest -- --ignored

echo "== fuzz smoke (cargo-fuzz on the Venus decoder, ~60 s per target)"
scripts/fuzz-smoke.sh
