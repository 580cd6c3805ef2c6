#!/usr/bin/env bash
# ctest entry for the llama.cpp oracle (llamacpp_oracle.mjs): installs node-llama-cpp's Vulkan
# build from the npm registry once, then compares greedy text per weight type. Skips, saying so, when
# the registry cannot be reached.
set -uo pipefail
vkllm="$1"; work="$2"; shift 2
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work"
if [ ! -d "$work/node_modules/node-llama-cpp" ]; then
  if ! npm ping --loglevel=error >/dev/null 2>&1; then
    echo "SKIPPED: the llama.cpp oracle needs node-llama-cpp from the npm registry, which cannot be reached"
    exit 0
  fi
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  # The Vulkan build only: node-llama-cpp's optional CUDA builds (540 MB) stay out.
  (cd "$work" && npm install --omit=optional --no-audit --no-fund --loglevel=error) || exit 1
fi
cp "$here/llamacpp_oracle.mjs" "$work/"
cd "$work" && exec node llamacpp_oracle.mjs "$vkllm" "$work" "$@"
