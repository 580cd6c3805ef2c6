#!/usr/bin/env bash
# Installs everything vkllm needs to build, test and benchmark on Debian 12 (bookworm).
# Idempotent: a second run installs nothing new and skips the toolchain build when the cached
# prefix already holds the right versions.
#
#   - apt packages: compiler, CMake, Vulkan headers/loader/validation layer, Boost 1.81 (Asio,
#     Beast, JSON), doctest, CLI11, fmt, PCRE2 and ICU (tokenizers), python3-jinja2 (template
#     test oracle), debootstrap (the .deb is installed on a clean Debian 12 in the tests).
#   - lavapipe from bookworm-backports (Mesa 25): Vulkan 1.4, integer dot product, much faster.
#   - Mesa 26.1's lavapipe (cooperative matrix) in a private runtime root, $VKLLM_LVP26 (default
#     /opt/vkllm-lvp26): scripts/lavapipe26.sh; tests run there through scripts/lvp26.
#   - the arm64 cross toolchain, qemu-user and arm64 -dev packages (scripts/cross-arm64.sh).
#   - glslang 15.1 and SPIRV-Tools 2025.1 built from Debian 13's source packages into
#     $VKLLM_TOOLCHAIN (default /opt/vkllm-toolchain): Debian 12's glslang 12 and SPIRV-Tools
#     2023.1 reject cooperative-matrix and integer-dot shaders (docs/ARCHITECTURE.md, shaders).
set -euo pipefail

PREFIX=${VKLLM_TOOLCHAIN:-/opt/vkllm-toolchain}
GLSLANG_VERSION=15.1.0
SPIRV_TOOLS_VERSION=2025.1
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-deps] %s\n' "$*"; }

# --- apt sources: bookworm-backports (binaries) and trixie (sources only) ---------------------
add_source() {  # name, content
  local f=/etc/apt/sources.list.d/$1.sources
  if [ ! -f "$f" ] || [ "$(cat "$f")" != "$2" ]; then
    printf '%s\n' "$2" | $SUDO tee "$f" >/dev/null
    NEED_UPDATE=1
  fi
}
NEED_UPDATE=0
add_source vkllm-bookworm-backports "Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
add_source vkllm-trixie-src "Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"

PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates python3 python3-jinja2
      libvulkan-dev vulkan-validationlayers vulkan-tools
      libboost1.81-dev libboost-json1.81-dev
      doctest-dev libcli11-dev libfmt-dev libpcre2-dev libicu-dev dpkg-dev curl xz-utils
      clang-14 libclang-rt-14-dev  # clang and its libFuzzer runtime: scripts/fuzz.sh
      debootstrap)  # a clean Debian 12 for the package check (scripts/deb-check.sh)
# Node.js and npm run the server's end-to-end tests (the official openai client from npm). A
# machine that already has them (e.g. from NodeSource) keeps its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then PKGS+=(nodejs npm); fi
# have PACKAGE[:ARCH]: installed (no :ARCH: the machine's own architecture, or "all"). Not
# `dpkg -s`, which refuses a name installed for two architectures (the arm64 -dev packages).
have() {
  local name=${1%%:*} want=${1#*:}
  [ "$want" != "$1" ] || want="$(dpkg --print-architecture)|all"
  dpkg-query -W -f='${Architecture} ${db:Status-Abbrev}\n' "$name" 2>/dev/null | grep -Eq "^($want) ii"
}
missing=()
for p in "${PKGS[@]}"; do have "$p" || missing+=("$p"); done
mesa_ok=0
if dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^25\.'; then mesa_ok=1; fi

if [ ${#missing[@]} -gt 0 ] || [ $mesa_ok -eq 0 ] || [ $NEED_UPDATE -eq 1 ]; then
  log "apt-get update"
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ $mesa_ok -eq 0 ]; then
  log "installing lavapipe (mesa-vulkan-drivers) from bookworm-backports"
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers
fi

# --- arm64 cross build (scripts/cross-arm64.sh) -------------------------------------------------
# Debian's cross toolchain, qemu-user to run the arm64 tests, and the arm64 development packages
# (Multi-Arch: same, installed beside the amd64 ones; CLI11 and doctest are header-only).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "dpkg --add-architecture arm64"
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
fi
ARM_PKGS=(crossbuild-essential-arm64 qemu-user libvulkan-dev:arm64 libboost1.81-dev:arm64
          libboost-json1.81-dev:arm64 libfmt-dev:arm64 libpcre2-dev:arm64 libicu-dev:arm64)
arm_missing=()
for p in "${ARM_PKGS[@]}"; do have "$p" || arm_missing+=("$p"); done
if [ ${#arm_missing[@]} -gt 0 ]; then
  log "installing (arm64 cross build): ${arm_missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${arm_missing[@]}"
fi

# --- Mesa 26.1 lavapipe (cooperative matrix on the CPU) in its own runtime root ---------------
bash "$(dirname "$0")/lavapipe26.sh"

# --- shader toolchain ---------------------------------------------------------------------------
# The prefix carries a stamp naming what was built; a tool missing or a stamp that differs
# (another version wanted) means build again.
STAMP="glslang $GLSLANG_VERSION, SPIRV-Tools $SPIRV_TOOLS_VERSION"
tools_present() {
  for t in glslang spirv-val spirv-opt spirv-dis; do [ -x "$PREFIX/bin/$t" ] || return 1; done
}
if tools_present && [ "$(cat "$PREFIX/STAMP" 2>/dev/null)" = "$STAMP" ]; then
  log "toolchain in $PREFIX is current (glslang $GLSLANG_VERSION, SPIRV-Tools $SPIRV_TOOLS_VERSION)"
  exit 0
fi

JOBS=$(nproc)
work=$(mktemp -d /tmp/vkllm-toolchain.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching trixie upstream sources: glslang spirv-tools spirv-headers"
# Only the upstream .orig tarballs are needed (the mirror does not always keep the .dsc files);
# apt's index gives their URIs and SHA256 sums, which are checked.
apt-get source --print-uris glslang spirv-tools spirv-headers 2>/dev/null \
  | awk -F"'" '/\.orig\.tar/ {print $2, $3}' > uris.txt
[ "$(wc -l < uris.txt)" -eq 3 ] || { log "apt index lacks trixie sources"; cat uris.txt; exit 1; }
while read -r uri name _size sum; do
  curl -fsSL --retry 3 -o "$name" "$uri"
  echo "${sum#SHA256:}  $name" | sha256sum -c --quiet -
  mkdir -p "src-${name%%_*}"
  tar -xf "$name" -C "src-${name%%_*}" --strip-components=1
done < uris.txt
gl_src=src-glslang
st_src=src-spirv-tools
sh_src=src-spirv-headers

log "building glslang ($gl_src)"
cmake -S "$gl_src" -B build-glslang -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" -DENABLE_OPT=OFF -DGLSLANG_TESTS=OFF -DBUILD_EXTERNAL=OFF \
  -DENABLE_HLSL=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build build-glslang -j "$JOBS" --target glslang-standalone >/dev/null
$SUDO mkdir -p "$PREFIX/bin"
$SUDO install -m 755 build-glslang/StandAlone/glslang "$PREFIX/bin/glslang"
$SUDO ln -sf glslang "$PREFIX/bin/glslangValidator"

log "building SPIRV-Tools ($st_src)"
cmake -S "$st_src" -B build-spirv -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" -DSPIRV-Headers_SOURCE_DIR="$work/$sh_src" \
  -DSPIRV_SKIP_TESTS=ON -DSPIRV_WERROR=OFF -DSPIRV_SKIP_EXECUTABLES=OFF >/dev/null
cmake --build build-spirv -j "$JOBS" --target spirv-val spirv-opt spirv-dis >/dev/null
for t in spirv-val spirv-opt spirv-dis; do $SUDO install -m 755 "build-spirv/tools/$t" "$PREFIX/bin/$t"; done

"$PREFIX/bin/spirv-val" --version | grep -q "v$SPIRV_TOOLS_VERSION" \
  || { log "spirv-val build reports another version"; "$PREFIX/bin/spirv-val" --version; exit 1; }
echo "$STAMP" | $SUDO tee "$PREFIX/STAMP" >/dev/null
log "toolchain installed in $PREFIX"
