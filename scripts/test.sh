#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the Release build (CPU + Vulkan on lavapipe with the
# validation layer on), then the C unit tests again under AddressSanitizer and UBSan.
# PIVOT_LONG_TESTS=1 also registers the long tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
J=$(nproc)
LONG=${PIVOT_LONG_TESTS:-0}
export PIVOT_VK_VALIDATION=1 PIVOT_QUIET=1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPIVOT_LONG_TESTS=$([ "$LONG" = 1 ] && echo ON || echo OFF) >/dev/null
cmake --build build -j"$J"
ctest --test-dir build --output-on-failure -j"$J" --timeout 900
# sanitizers: C tests only (LuaJIT and the Vulkan driver are not instrumented)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPIVOT_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 PIVOT_TEST_NO_VULKAN=1 \
  ctest --test-dir build-asan --output-on-failure -j"$J" --timeout 900 -R '^test_' -E 'test_vulkan'
