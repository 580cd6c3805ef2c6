#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): builds vkllm (Release) and runs every test
# with ctest, GPU tests on the default Vulkan device with the validation layer on; then builds
# the CPU-side tests (GGUF reader, tokenizers, templates, scheduler, block pool, front end, model
# config, the server's parsing and life cycle) with AddressSanitizer + UBSan and runs them
# (hostile input must be handled memory-safely, not only correctly; no server thread may
# outlive the state it uses); the engine, server and end-to-end tests under ThreadSanitizer;
# then a 30-second libFuzzer run of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
# The matmul kernels again at lavapipe's other subgroup sizes (4 and 16; 8 above): code that
# assumes a subgroup size fails here (docs/ARCHITECTURE.md, Tests).
for width in 128 512; do
  LP_NATIVE_VECTOR_WIDTH=$width ctest --test-dir build --output-on-failure -j "$jobs" \
    -R '^(kernels|matmul|fused)$'
done

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_SANITIZE=ON >/dev/null
cpu_tests="common gguf tokenizer template scheduler block_pool frontend model_config server"
cmake --build build-asan -j "$jobs" --target $(printf 'test_%s ' $cpu_tests)
ctest --test-dir build-asan --output-on-failure -R "^($(echo $cpu_tests | tr ' ' '|'))\$" -j "$jobs"

# ThreadSanitizer on the engine (its thread against the callers) and the server (the engine
# thread against the Asio threads: the unit tests and the end-to-end suite against a TSan
# build of vkllm serve). A report aborts the process, so it fails its test.
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_TSAN=ON >/dev/null
cmake --build build-tsan -j "$jobs" --target test_engine test_server vkllm
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan --output-on-failure -R '^(engine|server|server_e2e)$'

# libFuzzer smoke: each target 30 s (clang, ASan+UBSan; scripts/fuzz.sh).
bash scripts/fuzz.sh 30
