#!/usr/bin/env bash
# Soak test of the server's streaming with deliberate disconnects: picks stories260K from ../shared
# or writes a random-weight model, and runs soak.mjs (Node built-ins only, no npm install).
# Usage: run_soak.sh <vkllm> <work dir> <shared dir> [soak.mjs options: --duration S --clients N ...]
set -euo pipefail
vkllm="$1"; work="$2"; shared="${3:-}"
shift $(( $# < 3 ? $# : 3 ))
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work"
model="$shared/models/stories260K/stories260K.gguf"
if [ -z "$shared" ] || [ ! -f "$model" ]; then
  echo "../shared not found: using a random-weight model (micro preset)"
  model="$work/micro.gguf"
  [ -f "$model" ] || "$vkllm" make-model --preset micro --type q8_0 -o "$model"
fi
cp "$here/soak.mjs" "$work/"
cd "$work" && node soak.mjs "$vkllm" "$model" "$@" 2>&1 | tail -200
exit "${PIPESTATUS[0]}"
