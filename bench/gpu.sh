#!/usr/bin/env bash
# One benchmark run for a GPU machine (issues 11, 12): builds nothing, runs what an existing build
# has, and writes one log. What it runs, in order:
#   vkllm devices; the card's ceilings through PyTorch where it is installed (bench/ceilings.py);
#   with --tests DIR, the GPU test binaries found there (validation layer on) in the background
#   while the synthetic models with real shapes are written (`vkllm make-model`, CPU and disk
#   only); the kernel bench (copy ceiling, GEMV and GEMM at an 8B model's three matrix shapes,
#   each weight in enough copies to miss the last-level cache, prefill and decode attention);
#   vkllm bench pp512/tg128 (--small: pp128/tg32) for each preset and weight type; tg128 after
#   4096 tokens of context on a model planned for a 131072 context and on one planned for 4096;
#   the engine's 1/4/16/64 concurrency sweep, with the overlapped loop and one step at a time.
# Every command has a time limit, so the whole run fits the budget (default 480 s).
#
# Usage: bench/gpu.sh [--build DIR] [--work DIR] [--log FILE] [--small] [--budget SECONDS]
#                     [--tests DIR]
#   --small: lavapipe-sized presets (micro, tiny) and depths, to run end to end on a CPU device.
#   --tests DIR: run DIR/test_* (each under its own limit, side by side) before the benchmarks.
#     They enable the Khronos validation layer: it must know VK_KHR_cooperative_matrix (1.3.255
#     or newer; Debian 12's 1.3.239 reports every cooperative-matrix pipeline as invalid SPIR-V).
# On a GPU machine (docs/ARCHITECTURE.md, "Benchmarks on a GPU machine", says how the build and
# the Vulkan loader travel there): bench/gpu.sh --build build-gpu --log $OUT/gpu.log
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="$here/build"; work="${TMPDIR:-/tmp}/vkllm-gpu-bench"; log=""; small=0; budget=480; tests=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --small) small=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    --tests) tests="$2"; shift 2 ;;
    *) echo "usage: bench/gpu.sh [--build DIR] [--work DIR] [--log FILE] [--small] [--budget S] [--tests DIR]" >&2; exit 2 ;;
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
  if [ "$rc" -ne 0 ]; then
    say "FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ': its time limit')): $*"
    failures=$((failures + 1))
  fi
  return 0
}

if [ "$small" -eq 1 ]; then
  models="micro:q4_0 micro:q8_0 micro:q4_k micro:f16 tiny:q4_0 tiny:q8_0 tiny:q4_k tiny:f16"
  depth=512; long_ctx=16384; short_ctx=1024
  pp=128; tg=32; reps=1; sweep=1,4,16; sweep_p=32; sweep_n=16; sweep_model=micro
  kbench_common=(--reps 3 --prefill 32 --rotate-mib 8)
  kbench_runs=("--rows 1024 --cols 1024 --attn-ctx 512")
  kbench_sweeps=("--rows 1024 --cols 1024 --types q4_0 --prefill 1 --only matmul --sweep matvec_rows=1;matvec_rows=4")
else
  # Llama-3.2-1B in four types, Llama-3.1-8B in the three that people run it in, Phi-3-mini.
  models="llama3-1b:q4_0 llama3-1b:q8_0 llama3-1b:q4_k llama3-1b:f16 llama3-8b:q4_0 llama3-8b:q8_0 llama3-8b:q4_k phi3-mini:q4_k"
  depth=4096; long_ctx=131072; short_ctx=4352  # depth + tg + 1 rounded up
  pp=512; tg=128; reps=3; sweep=1,4,16,64; sweep_p=128; sweep_n=64; sweep_model=llama3-1b
  # An 8B model's matrices: q/o 4096x4096 (with every kernel), gate/up 14336x4096, down
  # 4096x14336 (the matmuls only); prefill products of 512 tokens.
  # Each kernel runs 300 ms before it is timed: on the H200 a 256 MiB copy timed after the
  # reference check's idle gap ran at 848 GB/s, a fifth of what PyTorch's copy reached.
  kbench_common=(--reps 10 --prefill 512 --rotate-mib 512 --warmup-ms 300)
  kbench_runs=("--rows 4096 --cols 4096 --attn-ctx 512,4096,32768"
               "--rows 14336 --cols 4096 --types f16,q8_0,q4_0,q4_k --only matmul"
               "--rows 4096 --cols 14336 --types f16,q8_0,q4_0,q4_k --only matmul")
  # Tuning sweeps (--sweep, on top of the device's own Tuning): the decode GEMV's workgroup and
  # rows at the gate/up shape, the cooperative-matrix and tiled GEMMs' tiles at q/o x 512 (the
  # tiled entry times the f32 tiled GEMM and the integer-dot one, intdot_tiled, side by side).
  kbench_sweeps=("--rows 14336 --cols 4096 --types f16,q8_0,q4_0,q4_k --prefill 1 --only matmul --attn-prefill 0 --sweep matvec_rows=2;matvec_rows=4;matvec_rows=8;matvec_rows=16;matvec_workgroup=256,matvec_rows=8;matvec_workgroup=64,matvec_rows=4"
                 "--rows 4096 --cols 4096 --types f16,q4_0,q4_k --only coopmat --attn-prefill 0 --sweep coopmat_rows=64,coopmat_tokens=64,coopmat_sg_rows=2,coopmat_sg_tokens=2;coopmat_rows=128,coopmat_tokens=128,coopmat_sg_rows=4,coopmat_sg_tokens=4;coopmat_rows=256,coopmat_tokens=128,coopmat_sg_rows=4,coopmat_sg_tokens=4;coopmat_rows=128,coopmat_tokens=256,coopmat_sg_rows=4,coopmat_sg_tokens=4"
                 "--rows 4096 --cols 4096 --types f16,q8_0,q4_0,q4_k --only tiled --attn-prefill 0 --sweep tiled_rows=64,tiled_tokens=64,tiled_thread_rows=4,tiled_thread_tokens=4;tiled_rows=128,tiled_tokens=128,tiled_thread_rows=8,tiled_thread_tokens=8")
fi
say "# vkllm GPU benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $("$vkllm" --version)"
say "# host: $(uname -srm), $(nproc) cores"
run 60 "$vkllm" devices
if command -v python3 > /dev/null; then run 90 python3 "$here/bench/ceilings.py"; fi

# The tests of the kernels on this device, side by side, while the models are written (the
# writer needs no device); the benchmarks wait for them, so nothing else runs while they time.
test_pids=()
if [ -n "$tests" ]; then
  for t in "$tests"/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    say "\$ $t (background; log $work/$name.log)"
    # test_matmul without the cases of its second ctest entry (matmul_layouts), as ctest runs it.
    args=(); [ "$name" = test_matmul ] && args=(-tce="GEMV in both layouts*,intdot GEMV*,subgroup sizes*")
    (timeout --signal=TERM --kill-after=5 200 "$t" "${args[@]}" > "$work/$name.log" 2>&1
     echo "exit $?" >> "$work/$name.log") &
    test_pids+=($!)
  done
fi
for m in $models; do
  preset=${m%%:*}; type=${m##*:}
  model="$work/$preset-$type.gguf"
  [ -f "$model" ] || run 300 "$vkllm" make-model --preset "$preset" --type "$type" -o "$model"
done
if [ ${#test_pids[@]} -gt 0 ]; then
  wait "${test_pids[@]}"
  for t in "$tests"/test_*; do
    name=$(basename "$t"); [ -f "$work/$name.log" ] || continue
    say "## $name: $(tail -n 1 "$work/$name.log"), $(grep -E '^\[doctest\] (test cases|assertions)' "$work/$name.log" | tr '\n' ' ')"
    if [ "$(tail -n 1 "$work/$name.log")" != "exit 0" ]; then
      failures=$((failures + 1))
      grep -E -B2 -A12 'ERROR|FATAL|failed|error:' "$work/$name.log" | head -n 80 | tee -a "$log"
    fi
  done
fi

for args in "${kbench_runs[@]}"; do
  # shellcheck disable=SC2086 # the runs' options are words
  run 150 "$kbench" "${kbench_common[@]}" $args
done
for m in $models; do
  preset=${m%%:*}; type=${m##*:}
  model="$work/$preset-$type.gguf"
  [ -f "$model" ] && run 180 "$vkllm" bench -m "$model" -p "$pp" -n "$tg" -r "$reps"
done

for args in "${kbench_sweeps[@]}"; do
  # shellcheck disable=SC2086
  run 120 "$kbench" "${kbench_common[@]}" $args
done

# Decode after a long context: a server planned for a 131072-token context against one planned
# for what the chat needs (issue 12: within 10%).
first="$(echo $models | cut -d' ' -f1)"
model="$work/${first%%:*}-q4_0.gguf"
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
