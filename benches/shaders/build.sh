#!/usr/bin/env bash
# Regenerates the committed SPIR-V from the GLSL next to it (needs glslang-tools).
set -euo pipefail
cd "$(dirname "$0")"
for f in *.comp; do
    glslangValidator -V --target-env vulkan1.1 -o "${f%.comp}.spv" "$f"
done
