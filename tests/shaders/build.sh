#!/usr/bin/env bash
# Regenerates the committed SPIR-V from the GLSL next to it (needs glslang-tools;
# the tests themselves only read the committed .spv files). `x.comp` → `x.spv`,
# `x.vert` → `x_vert.spv`, `x.frag` → `x_frag.spv`.
set -euo pipefail
cd "$(dirname "$0")"
for f in *.comp; do
    glslangValidator -V --target-env vulkan1.1 -o "${f%.comp}.spv" "$f"
done
for f in *.vert *.frag; do
    glslangValidator -V --target-env vulkan1.1 -o "${f%.*}_${f##*.}.spv" "$f"
done
