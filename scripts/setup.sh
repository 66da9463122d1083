#!/usr/bin/env bash
# Installs pivot's build and run dependencies on Debian 12 (as root). Idempotent: does nothing when all are present.
set -euo pipefail
PKGS="build-essential cmake pkg-config luajit libluajit-5.1-dev libopenblas-dev libvulkan-dev glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers libstb-dev libcjson-dev libpcre2-dev libutf8proc-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Mesa 25 from bookworm-backports runs lavapipe compute ~3.5x faster than bookworm's Mesa 22.
BP=/etc/apt/sources.list.d/bookworm-backports.list
need_bp=0
if [ ! -f "$BP" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then need_bp=1; fi
if [ -n "$missing" ] || [ "$need_bp" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: missing packages:$missing (run as root to install)" >&2; exit 1; fi
  if [ "$need_bp" = 1 ]; then echo "deb http://deb.debian.org/debian bookworm-backports main" > "$BP"; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
  apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null 2>&1 || \
    echo "setup: bookworm-backports Mesa not available; using bookworm's lavapipe" >&2
fi
