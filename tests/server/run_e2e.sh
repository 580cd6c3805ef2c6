#!/usr/bin/env bash
# ctest entry for the server's end-to-end tests: installs the openai client and ajv from the npm
# registry (once per lock file), picks stories260K from ../shared or writes a random-weight model, and runs e2e.mjs,
# e2e_frontend.mjs and e2e_models.mjs, one after the other (VKLLM_E2E_SUITES: a space-separated
# subset of them, as scripts/test.sh's ThreadSanitizer phase runs).
set -euo pipefail
vkllm="$1"; work="$2"; shared="${3:-}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$work"
if [ ! -d "$work/node_modules" ] || ! cmp -s "$here/package-lock.json" "$work/package-lock.json"; then
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
fi
model="$shared/models/stories260K/stories260K.gguf"
if [ ! -f "$model" ]; then
  echo "../shared not found: using a random-weight model (micro preset)"
  model="$work/micro.gguf"
  [ -f "$model" ] || "$vkllm" make-model --preset micro --type q8_0 -o "$model"
fi
cp "$here/e2e.mjs" "$here/e2e_frontend.mjs" "$here/e2e_models.mjs" "$here/helpers.mjs" "$here/../grammar/schemas.json" "$work/"
[ -d "$shared/templates" ] && export VKLLM_SHARED_DIR="$shared"  # real chat templates (tool calling)
cd "$work"
status=0
for f in ${VKLLM_E2E_SUITES:-e2e.mjs e2e_frontend.mjs e2e_models.mjs}; do
  [ -f "$f" ] || { echo "run_e2e.sh: no suite $f"; exit 2; }
  node "$f" "$vkllm" "$model" 2>&1 | tail -100
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || status=$rc
done
exit "$status"
