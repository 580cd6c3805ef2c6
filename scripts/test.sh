#!/usr/bin/env bash
# The test command of README.md (and of .ci/run): builds vkllm (Release) and runs every test
# with ctest, GPU tests on the default Vulkan device with the validation layer on; then builds
# the GGUF tests and the server's life-cycle tests with AddressSanitizer + UBSan and runs them
# (hostile-file parsing must be memory-safe, not only correct; no server thread may outlive
# the state it uses).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVKLLM_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs" --target test_gguf test_server
ctest --test-dir build-asan --output-on-failure -R '^(gguf|server)$' -j "$jobs"
