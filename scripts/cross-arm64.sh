#!/usr/bin/env bash
# The arm64 (aarch64) cross build and its CPU-side tests under qemu-user (README.md, "arm64").
# scripts/install-deps.sh installs the cross toolchain, qemu-user and the arm64 development
# packages; cmake/aarch64-linux-gnu.cmake is the toolchain file. Builds every target (the CLI
# and server, libvkllm.so and .a, the examples, the GPU tests' executables) and runs the tests
# that need no Vulkan device (scripts/cpu-tests.sh) through ctest, which starts each under
# qemu-aarch64; then the CLI itself: --version, make-model (our GGUF writer), then info and
# tokenize on the file it wrote (no device needed); last the arm64 .deb (cpack).
# Usage: scripts/cross-arm64.sh [BUILD_DIR]   (default build-arm64)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-arm64}
jobs=$(nproc)
qemu=(qemu-aarch64 -L /)  # the arm64 runtime of libc6:arm64 (cmake/aarch64-linux-gnu.cmake)

cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
cmake --build "$dir" -j "$jobs"
kinds=$(file -L "$dir/cli/vkllm" "$dir/api/libvkllm.so")
echo "$kinds"
[ "$(grep -c 'ARM aarch64' <<< "$kinds")" = 2 ] || { echo "cross-arm64: the binaries are not arm64"; exit 1; }

source scripts/cpu-tests.sh
VKLLM_SHARED_DIR=${VKLLM_SHARED_DIR:-$(cd .. && pwd)/shared} \
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" -R "^($(echo $cpu_tests | tr ' ' '|'))\$"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${qemu[@]}" "$dir/cli/vkllm" --version
"${qemu[@]}" "$dir/cli/vkllm" make-model --preset micro --type q4_k -o "$work/micro.gguf" >/dev/null
"${qemu[@]}" "$dir/cli/vkllm" info -m "$work/micro.gguf" > "$work/info.txt"
head -n 5 "$work/info.txt"
grep -q 'llama' "$work/info.txt" \
  || { echo "cross-arm64: vkllm info (arm64) did not read the model it wrote"; exit 1; }
"${qemu[@]}" "$dir/cli/vkllm" tokenize -m "$work/micro.gguf" --text 'Hello world' | grep -q '\[' \
  || { echo "cross-arm64: vkllm tokenize (arm64) failed"; exit 1; }

# The arm64 .deb: the architecture and dependencies (dpkg-shlibdeps on the arm64 binaries).
rm -f "$dir"/vkllm_*.deb
(cd "$dir" && cpack >/dev/null)
deb=$(ls "$dir"/vkllm_*_arm64.deb)
dpkg-deb -f "$deb" Package Architecture Depends
dpkg-deb -f "$deb" Depends | grep -q 'libvulkan1' \
  || { echo "cross-arm64: $deb lacks its runtime dependencies"; exit 1; }
echo "cross-arm64: arm64 build, CPU-side tests under qemu and $deb passed"
