#!/usr/bin/env bash
# scripts/gpu_bundle.sh: packs what scripts/gpu_check.sh needs on a machine that has a GPU but none of pivot's
# build dependencies (a lent device machine): the built binaries, the shared libraries they load (as one .tar.xz),
# the Vulkan loader's Debian packages and the HF fixtures, into .gl/ (ignored by git: add `/.gl/` to
# .git/info/exclude). Run after `bash scripts/build.sh` (a build with Vulkan on).
#   bash scripts/gpu_bundle.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
G="$ROOT/.gl"
mkdir -p "$G/bin" "$G/libs"
for b in pivot test_vulkan test_vulkan_gemm bench_vk_gemm; do cp "$BUILD/$b" "$G/bin/"; done
cp -L "$BUILD/libpivot.so.0" "$G/libs/"
for l in libluajit-5.1.so.2 libopenblas.so.0 libcjson.so.1 libpcre2-8.so.0 libutf8proc.so.2 libgfortran.so.5 \
         libquadmath.so.0; do
  cp -L "$(ldconfig -p | awk -v n="$l" '$1 == n && /x86-64/ {print $NF; exit}')" "$G/libs/$l"
done
tar -C "$G" -cJf "$G/libs.tar.xz" libs && rm -rf "$G/libs"
if ! ls "$G"/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd "$G" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
rm -rf "$G/fixtures" && cp -r "$ROOT/../shared/fixtures" "$G/fixtures"
du -sh "$G"
