#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): builds vkllm (Release) and runs every test
# with ctest, GPU tests on the default Vulkan device with the validation layer on; then builds
# the CPU-side tests (GGUF reader, tokenizers, templates, scheduler, block pool, front end, model
# config, the server's parsing and life cycle) with AddressSanitizer + UBSan and runs them
# (hostile input must be handled memory-safely, not only correctly; no server thread may
# outlive the state it uses); the engine, server and end-to-end tests under ThreadSanitizer;
# then a 30-second libFuzzer run of each fuzz target. The C API's test (tests/api) runs in the
# Release build and again against an ASan build of libvkllm.so. The arm64 cross build's
# CPU-side tests run under qemu-user (scripts/cross-arm64.sh). Each phase prints its time: what
# it costs of CI's budget.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
phase_start=$SECONDS
phase() {  # NAME: the time of the phase that just ended
  local s=$((SECONDS - phase_start))
  echo "[test.sh] phase '$1': $((s / 60)) min $((s % 60)) s (total $((SECONDS / 60)) min)"
  phase_start=$SECONDS
}
# Runs each argument (a command line) in the background, the output of each to its own log, then
# prints the logs in order; fails when one of them failed. For the phases whose programs spend
# their time in lavapipe compiling pipelines (one thread each) rather than running them: two at
# once take the machine's two cores. Mesa's shader cache is safe to share between processes.
in_parallel() {
  local i pids=() failed=0
  mkdir -p build/parallel
  for i in $(seq 0 $(($# - 1))); do
    local cmd=${*:$((i + 1)):1}
    bash -c "set -euo pipefail; $cmd" > "build/parallel/$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then failed=1; echo "FAILED: ${*:$((i + 1)):1}"; fi
    cat "build/parallel/$i.log"
  done
  return $failed
}

# Installed under /usr (cpack's .deb below); `cmake --install --prefix` chooses another.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build build -j "$jobs"
phase build
ctest --test-dir build --output-on-failure -j "$jobs"
phase ctest
# The kernels that reduce or share work across a subgroup again at lavapipe's other subgroup
# sizes (4 and 16; 8 above): code that assumes a subgroup size fails here (docs/ARCHITECTURE.md,
# Tests). Chosen cases, not whole files: each width compiles its pipelines anew, and the whole
# matmul file took over 10 minutes at width 128 on CI's machine. The two widths side by side.
subgroup_cases='build/tests/ops/test_kernels
  build/tests/ops/test_matmul -tc="subgroup sizes*"
  build/tests/ops/test_fused -tc="rms_norm*"
  build/tests/ops/test_attention -tc="attention tiled*,attention kernel choice*"
  build/tests/ops/test_moe -tc="moe expert matmul in both GEMV layouts*"'
in_parallel "export LP_NATIVE_VECTOR_WIDTH=128; $subgroup_cases" \
  "export LP_NATIVE_VECTOR_WIDTH=512; $subgroup_cases"
phase "subgroup sizes 4 and 16"

# The cooperative-matrix kernels on Mesa 26.1's lavapipe (8x8x8 matrices; scripts/lavapipe26.sh
# sets up its runtime root, scripts/lvp26 starts a program there, one binary at a time: ctest's
# children would not inherit it). VKLLM_REQUIRE_COOPMAT turns a skip into a failure. Subgroup
# size 8 only: at 16 (LP_NATIVE_VECTOR_WIDTH=512) lavapipe 26.1 itself crashes compiling them.
lvp26_shared=${VKLLM_SHARED_DIR:-$(cd .. && pwd)/shared}
scripts/lvp26 build/cli/vkllm devices | grep -E 'coop\. matrix|matmul paths'
export VKLLM_REQUIRE_COOPMAT=1
in_parallel "scripts/lvp26 build/tests/ops/test_matmul -tc='coopmat*,forcing coopmat*'" \
  "scripts/lvp26 build/tests/ops/test_attention -tc='attention coopmat*,attention: sliding*,attention: sinks*'
   VKLLM_SHARED_DIR=$lvp26_shared scripts/lvp26 build/tests/model/test_model -tc='every matmul path*,stories260K*'"
unset VKLLM_REQUIRE_COOPMAT
phase "cooperative matrix (lavapipe 26.1)"

bash scripts/cross-arm64.sh build-arm64
phase "arm64 cross build and qemu tests"

# The Debian package on a clean Debian 12 (debootstrap; root only: chroot and mounts).
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  bash scripts/deb-check.sh build
else
  echo "SKIP deb-check: needs root and debootstrap (scripts/install-deps.sh installs it)"
fi
phase "Debian package on a clean Debian 12"

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_SANITIZE=ON >/dev/null
source scripts/cpu-tests.sh
cmake --build build-asan -j "$jobs" --target $(printf 'test_%s ' $cpu_tests)
ctest --test-dir build-asan --output-on-failure -R "^($(echo $cpu_tests | tr ' ' '|'))\$" -j "$jobs"
# The C API's test program (tests/api) against an ASan + UBSan libvkllm.so: memory errors and
# leaks of the library fail it (LeakSanitizer at exit).
cmake --build build-asan -j "$jobs" --target vkllm_shared
ctest --test-dir build-asan --output-on-failure -R '^capi$'
phase "ASan + UBSan"

# ThreadSanitizer on the engine (its thread against the callers) and the server (the engine
# thread against the Asio threads: the unit tests and the end-to-end suite against a TSan
# build of vkllm serve). A report aborts the process, so it fails its test.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_TSAN=ON >/dev/null
cmake --build build-tsan -j "$jobs" --target test_engine test_server test_model_pool vkllm
# The end-to-end suite without its structured-output and tool-calling tests (schemas, grammars
# and templates on the engine's usual threads; 160 of its 410 s under ThreadSanitizer here).
VKLLM_E2E_SKIP='^(structured outputs|tool calling)' TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R '^(engine|server|model_pool|server_e2e)$'
phase "ThreadSanitizer"

# libFuzzer smoke: each target 30 s (clang, ASan+UBSan; scripts/fuzz.sh).
bash scripts/fuzz.sh 30
phase "libFuzzer (6 targets, 30 s each)"
