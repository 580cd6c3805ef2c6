#!/usr/bin/env bash
# Sets up Mesa 26.1's lavapipe in a private runtime root ($VKLLM_LVP26, default /opt/vkllm-lvp26):
# the CPU Vulkan driver that exposes VK_KHR_cooperative_matrix (8x8x8) and
# VK_NV_cooperative_matrix2, so the cooperative-matrix kernels are tested without a GPU
# (docs/ARCHITECTURE.md, Tests). It needs trixie's C library, so it cannot be installed as a
# Debian 12 package: trixie's .debs are downloaded through a private apt configuration (the
# system's apt state is not touched) and unpacked into the root, whose own dynamic loader then
# starts each program (scripts/lvp26). Idempotent: a root whose stamp names the wanted packages is
# kept. About 70 MB to download, 20 s.
set -euo pipefail

ROOT=${VKLLM_LVP26:-/opt/vkllm-lvp26}
PKGS=(mesa-vulkan-drivers/trixie-backports vulkan-validationlayers/trixie libvulkan1/trixie)
STAMP="lavapipe26 root: ${PKGS[*]} (format 1)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
log() { printf '[lavapipe26] %s\n' "$*"; }

if [ "$(cat "$ROOT/STAMP" 2>/dev/null)" = "$STAMP" ] && [ -f "$ROOT/usr/share/vulkan/icd.d/lvp_icd.json" ]; then
  log "runtime root $ROOT is current"
  exit 0
fi

work=$(mktemp -d /tmp/vkllm-lvp26.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/etc/apt/sources.list.d" "$work/etc/apt/preferences.d" "$work/etc/apt/apt.conf.d" "$work/state/lists/partial" \
  "$work/cache/archives/partial"
key=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$work/etc/apt/sources.list" <<EOF
deb [signed-by=$key] http://deb.debian.org/debian trixie main
deb [signed-by=$key] http://deb.debian.org/debian trixie-backports main
EOF
cat > "$work/apt.conf" <<EOF
Dir::State "$work/state";
Dir::State::status "$work/state/status";
Dir::Cache "$work/cache";
Dir::Etc "$work/etc/apt";
Dir::Etc::SourceList "$work/etc/apt/sources.list";
Dir::Etc::SourceParts "$work/etc/apt/sources.list.d";
Dir::Etc::Preferences "$work/etc/apt/preferences";
Dir::Etc::PreferencesParts "$work/etc/apt/preferences.d";
APT::Architecture "amd64";
APT::Get::AllowUnauthenticated "false";
Debug::NoLocking "true";
APT::Sandbox::User "root";
EOF
: > "$work/state/status"  # an empty system: every dependency is downloaded
export APT_CONFIG="$work/apt.conf"
log "apt-get update (private state in $work)"
apt-get update -qq
log "downloading ${PKGS[*]} and their dependencies"
apt-get install -y -qq --download-only --no-install-recommends "${PKGS[@]}" >/dev/null

$SUDO rm -rf "$ROOT.new"
$SUDO mkdir -p "$ROOT.new"
n=0
for deb in "$work"/cache/archives/*.deb; do
  $SUDO dpkg-deb -x "$deb" "$ROOT.new"
  n=$((n + 1))
done
log "unpacked $n packages"
lib="$ROOT/usr/lib/x86_64-linux-gnu"
# Manifests name their libraries relative to the system's folders: make them absolute in the root.
for json in "$ROOT.new"/usr/share/vulkan/*/*.json; do
  $SUDO python3 - "$json" "$lib" <<'PY'
import json, os, sys
path, lib = sys.argv[1], sys.argv[2]
with open(path) as f:
    doc = json.load(f)
for entry in [doc.get("ICD")] + [doc.get("layer")] + list(doc.get("layers") or []):
    if entry and "library_path" in entry:
        entry["library_path"] = os.path.join(lib, os.path.basename(entry["library_path"]))
with open(path, "w") as f:
    json.dump(doc, f, indent=2)
PY
done
# Programs that open the unversioned name would otherwise find the system's older loader.
$SUDO ln -sf libvulkan.so.1 "$ROOT.new/usr/lib/x86_64-linux-gnu/libvulkan.so"
[ -f "$ROOT.new/usr/share/vulkan/icd.d/lvp_icd.json" ] || { log "no lavapipe ICD in the packages"; exit 1; }
echo "$STAMP" | $SUDO tee "$ROOT.new/STAMP" >/dev/null
$SUDO rm -rf "$ROOT"
$SUDO mv "$ROOT.new" "$ROOT"
log "runtime root ready: $ROOT ($(du -sh "$ROOT" | cut -f1))"
