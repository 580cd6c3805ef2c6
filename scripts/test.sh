#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): builds vkllm (Release) and runs every test
# with ctest, GPU tests on the default Vulkan device with the validation layer on; then builds
# the CPU-side tests (GGUF reader, tokenizers, templates, scheduler, block pool, front end, model
# config, the server's parsing and life cycle) with AddressSanitizer + UBSan and runs them
# (hostile input must be handled memory-safely, not only correctly; no server thread may
# outlive the state it uses); then a 30-second libFuzzer run of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_SANITIZE=ON >/dev/null
cpu_tests="gguf tokenizer template scheduler block_pool frontend model_config server"
cmake --build build-asan -j "$jobs" --target $(printf 'test_%s ' $cpu_tests)
ctest --test-dir build-asan --output-on-failure -R "^($(echo $cpu_tests | tr ' ' '|'))\$" -j "$jobs"

# libFuzzer smoke: each target 30 s (clang, ASan+UBSan; scripts/fuzz.sh).
bash scripts/fuzz.sh 30
