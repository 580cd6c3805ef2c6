#!/usr/bin/env bash
# The Debian package on a clean Debian 12 (README "Packages"): a minimal bookworm made by
# debootstrap, `apt-get install ./vkllm_*.deb` there (its dependencies and Recommends from
# Debian's archive), then `vkllm devices`, `vkllm make-model` and `vkllm serve`, which must answer
# a completion. Needs root (chroot, mounts) and the Debian archive.
#   scripts/deb-check.sh BUILD_DIR   (a build configured with -DCMAKE_INSTALL_PREFIX=/usr; runs cpack)
set -euo pipefail
build=${1:?usage: scripts/deb-check.sh BUILD_DIR}
mirror=${VKLLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
port=18097

(cd "$build" && rm -f vkllm_*.deb && cpack -G DEB >/dev/null)
deb=$(ls "$build"/vkllm_*.deb)
root=$(mktemp -d /tmp/vkllm-deb12.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  umount "$root/dev" 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

t0=$(date +%s)
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 20 "$root.log"; exit 1; }
rm -f "$root.log"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
apt_log=$(mktemp /tmp/vkllm-deb12-apt.XXXXXX)
if ! { in_root apt-get update -q && in_root env DEBIAN_FRONTEND=noninteractive \
       apt-get install -y -q "/tmp/$(basename "$deb")"; } >"$apt_log" 2>&1; then
  tail -n 30 "$apt_log"; rm -f "$apt_log"; exit 1
fi
rm -f "$apt_log"
echo "deb-check: installed $(basename "$deb") on a fresh Debian 12 ($(($(date +%s) - t0)) s)"
in_root dpkg -s vkllm | grep -E '^(Status|Depends)'
[ -f "$root/usr/lib/systemd/system/vkllm.service" ] || { echo "no vkllm.service"; exit 1; }
if [ -e "$root/etc/systemd/system/multi-user.target.wants/vkllm.service" ]; then
  echo "the service must be installed disabled"; exit 1
fi
in_root getent passwd vkllm >/dev/null || { echo "postinst made no vkllm user"; exit 1; }

in_root vkllm devices
in_root vkllm make-model --preset micro --type q8_0 -o /tmp/micro.gguf
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/tmp vkllm serve -m /tmp/micro.gguf --port $port \
  >"$root/tmp/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 1
done
reply=$(curl -fsS "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "Hello", "max_tokens": 8, "temperature": 0}') || { cat "$root/tmp/serve.log"; exit 1; }
echo "$reply" | grep -q '"choices"' || { echo "no completion: $reply"; cat "$root/tmp/serve.log"; exit 1; }
echo "deb-check: vkllm serve answered a completion in the fresh Debian 12: ${reply:0:160}..."
