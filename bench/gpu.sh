#!/usr/bin/env bash
# One benchmark run for a GPU machine (issue 12): builds nothing, runs what an existing build
# has, and writes one log. What it runs, in order:
#   vkllm devices; the kernel bench (copy bandwidth ceiling, matmul, decode attention);
#   vkllm bench pp512/tg128 (--small: pp128/tg32) for each preset and weight type (synthetic models with real shapes,
#   written here by `vkllm make-model`); tg128 after 4096 tokens of context on a model planned for
#   a 131072 context and on one planned for 4096; the engine's 1/4/16/64 concurrency sweep, with
#   the overlapped loop and one step at a time.
# Every command has a time limit, so the whole run fits the budget (default 480 s).
#
# Usage: bench/gpu.sh [--build DIR] [--work DIR] [--log FILE] [--small] [--budget SECONDS]
#   --small: lavapipe-sized presets (micro, tiny) and depths, to run end to end on a CPU device.
# On a GPU machine (../shared/GPU.md in the steering repo says how to take the build and the
# Vulkan loader there): bench/gpu.sh --build build-gpu --log $OUT/gpu.log
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="$here/build"; work="${TMPDIR:-/tmp}/vkllm-gpu-bench"; log=""; small=0; budget=480
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --small) small=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    *) echo "usage: bench/gpu.sh [--build DIR] [--work DIR] [--log FILE] [--small] [--budget S]" >&2; exit 2 ;;
  esac
done
vkllm="$build/cli/vkllm"
kbench="$build/bench/vkllm-bench-kernels"
for b in "$vkllm" "$kbench"; do
  [ -x "$b" ] || { echo "gpu.sh: $b not found: build first (cmake --build $build)" >&2; exit 2; }
done
mkdir -p "$work"
log="${log:-$work/gpu-$(date -u +%Y%m%dT%H%M%SZ).log}"
: > "$log"
start=$(date +%s)
failures=0

say() { echo "$*" | tee -a "$log"; }
# run LIMIT CMD...: one step with its own time limit, never past the whole budget.
run() {
  local limit=$1; shift
  local left=$(( budget - ($(date +%s) - start) ))
  if [ "$left" -le 5 ]; then say "SKIPPED (budget spent): $*"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "\$ $*"
  timeout --signal=TERM --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then say "FAILED ($rc${rc:+, 124 = time limit}): $*"; failures=$((failures + 1)); fi
  return 0
}

if [ "$small" -eq 1 ]; then
  presets="micro tiny"; types="q4_0 q8_0 q4_k f16"; depth=512; long_ctx=16384; short_ctx=1024
  pp=128; tg=32; reps=1; sweep=1,4,16; sweep_p=32; sweep_n=16
  kbench_args=(--reps 3 --rows 1024 --cols 1024 --prefill 32 --attn-ctx 512); sweep_model=micro
else
  presets="llama3-1b llama3-8b"; types="q4_0 q8_0 q4_k f16"; depth=4096; long_ctx=131072; short_ctx=4224
  pp=512; tg=128; reps=3; sweep=1,4,16,64; sweep_p=128; sweep_n=64
  kbench_args=(--reps 10 --attn-ctx 512,4096,32768); sweep_model=llama3-1b
fi
say "# vkllm GPU benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $("$vkllm" --version)"
say "# host: $(uname -srm), $(nproc) cores"
run 60 "$vkllm" devices
run 120 "$kbench" "${kbench_args[@]}"

for preset in $presets; do
  for type in $types; do
    model="$work/$preset-$type.gguf"
    [ -f "$model" ] || run 300 "$vkllm" make-model --preset "$preset" --type "$type" -o "$model"
    [ -f "$model" ] && run 180 "$vkllm" bench -m "$model" -p "$pp" -n "$tg" -r "$reps"
  done
done

# Decode after a long context: a server planned for a 131072-token context against one planned
# for what the chat needs (issue 12: within 10%).
first="$(echo $presets | cut -d' ' -f1)"
model="$work/$first-q4_0.gguf"
if [ -f "$model" ]; then
  run 180 "$vkllm" bench -m "$model" -p 0 -n "$tg" -r "$reps" --depth "$depth" --ctx-size "$long_ctx"
  run 180 "$vkllm" bench -m "$model" -p 0 -n "$tg" -r "$reps" --depth "$depth" --ctx-size "$short_ctx"
fi
model="$work/$sweep_model-q4_0.gguf"
[ -f "$model" ] && run 240 "$vkllm" bench -m "$model" -p "$sweep_p" -n "$sweep_n" --concurrency "$sweep"
# The same sweep one step at a time: what the overlapped loop hides.
[ -f "$model" ] && run 180 "$vkllm" bench -m "$model" -p "$sweep_p" -n "$sweep_n" --concurrency "$sweep" --no-overlap

say "# done in $(( $(date +%s) - start )) s, $failures step(s) failed; log: $log"
[ "$failures" -eq 0 ]
