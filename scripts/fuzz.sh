#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang, ASan and UBSan (build-fuzz/), seeds their
# corpora (our own seeds from fuzz_seeds; chat templates and tokenizer test inputs from
# ../shared when it is there) and runs each target for SECONDS seconds (default 30: CI's smoke;
# bench/RESULTS.md records the long runs), as many at once as the machine has cores. A crash,
# leak, sanitizer report or timeout fails the script and leaves the input in
# build-fuzz/findings/; each one found becomes a regression test.
# Usage: scripts/fuzz.sh [TARGET...] [SECONDS]   (targets: gguf tokenizer template request http grammar;
# the arguments may come in any order: a number is the seconds, anything else a target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=30
targets=()
for a in "$@"; do
  if [[ $a =~ ^[0-9]+$ ]]; then seconds=$a; else targets+=("$a"); fi
done
for t in "${targets[@]}"; do
  case $t in
    gguf|tokenizer|template|request|http|grammar) ;;
    *) echo "fuzz: unknown target '$t' (gguf tokenizer template request http grammar)"; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(gguf tokenizer template request http grammar)
shared=${VKLLM_SHARED_DIR:-../shared}
jobs=$(nproc)

CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVKLLM_FUZZ=ON -DVKLLM_BUILD_TESTS=OFF >/dev/null
if ! cmake --build build-fuzz -j "$jobs" --target fuzz_seeds $(printf 'fuzz_%s ' "${targets[@]}") \
    > build-fuzz/build.log 2>&1; then
  grep -E "error|undefined reference" build-fuzz/build.log | head -n 20
  echo "fuzz: the build failed (build-fuzz/build.log)"
  exit 1
fi

seeds=build-fuzz/seeds
rm -rf "$seeds"
templates=()
if [ -d "$shared/templates" ]; then
  templates=("$shared"/templates/*.jinja)
else
  echo "fuzz: $shared/templates not found: template seeds from our own code only"
fi
build-fuzz/fuzz/fuzz_seeds "$seeds" "${templates[@]}"
if [ -d "$shared/vocab" ]; then
  mkdir -p "$seeds/tokenizer"
  cp "$shared"/vocab/*.inp "$seeds/tokenizer/"
fi
mkdir -p build-fuzz/findings

# One target: its log in build-fuzz/TARGET.log; fails with the log's tail on a finding.
fuzz_target() {
  local t=$1 corpus=build-fuzz/corpus/$1
  mkdir -p "$corpus" "$seeds/$t"
  local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="build-fuzz/findings/$t-")
  case $t in
    template) args+=(-max_len=65536 -dict=fuzz/template.dict) ;;
    request) args+=(-max_len=16384 -dict=fuzz/request.dict) ;;
    http) args+=(-max_len=8192 -dict=fuzz/http.dict) ;;
    tokenizer) args+=(-max_len=4096) ;;
    gguf) args+=(-max_len=8192) ;;
    grammar) args+=(-max_len=8192) ;;
  esac
  if ! VKLLM_FUZZ_VOCAB_DIR="$shared/vocab" build-fuzz/fuzz/fuzz_$t "${args[@]}" "$corpus" \
      "$seeds/$t" > "build-fuzz/$t.log" 2>&1; then
    tail -n 60 "build-fuzz/$t.log"
    echo "fuzz: $t FAILED (log in build-fuzz/$t.log, input in build-fuzz/findings/)"
    return 1
  fi
  grep -E "^(Done|stat::)" "build-fuzz/$t.log"
}

# The targets $jobs at a time (each libFuzzer run is one thread), each printing when it ends.
running=() failed=0
for t in "${targets[@]}"; do
  if [ "$t" = tokenizer ] && [ ! -d "$shared/vocab" ]; then
    echo "fuzz: SKIPPED tokenizer: $shared/vocab (its real vocabularies) not found"
    continue
  fi
  if [ ${#running[@]} -ge "$jobs" ]; then
    wait "${running[0]}" || failed=1
    running=("${running[@]:1}")
  fi
  echo "fuzz: $t for ${seconds}s"
  fuzz_target "$t" &
  running+=($!)
done
for pid in "${running[@]}"; do wait "$pid" || failed=1; done
[ $failed = 0 ] || exit 1
echo "fuzz: ${targets[*]}: no findings"
