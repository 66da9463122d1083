#!/usr/bin/env bash
# bench/run.sh: the mini-MLLM benchmark, pivot (CPU, and Vulkan when present) against PyTorch on the CPU, in one
# command. Builds pivot if needed, installs torch into bench/.venv when missing, runs both sides interleaved and
# prints the table, the GEMM table and pivot's per-op profiles (bench/README.md).
#
#   bash bench/run.sh [--quick] [--no-torch] [other bench/compare.py options]
#
# Environment: PIVOT_BUILD_DIR (default build), PYTHON (the interpreter that creates the venv, default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${PIVOT_BUILD_DIR:-build}"
PY="${PYTHON:-python3}"
VENV="$ROOT/bench/.venv"

no_torch=0
for a in "$@"; do
  case "$a" in
    --no-torch) no_torch=1 ;;
    -h|--help) exec "$PY" bench/compare.py --help ;;
  esac
done

# ---------------------------------------------------------------- pivot (Release)
# (incremental: a no-op when the build is up to date)
echo "bench: building pivot in $BUILD (Release)" >&2
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target pivot_cli bench_gemm >/dev/null

# ---------------------------------------------------------------- torch (PyPI only) in bench/.venv
if [ "$no_torch" = 0 ]; then
  if ! "$VENV/bin/python" -c "import torch, numpy" >/dev/null 2>&1; then
    echo "bench: installing PyTorch into bench/.venv from PyPI (bench/requirements.txt; the default Linux wheel" \
         "brings its CUDA libraries, about 5 GB on disk; they are loaded but unused on the CPU)" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install --quiet -r bench/requirements.txt
  fi
fi

exec "$PY" bench/compare.py --pivot "$BUILD/pivot" --gemm "$BUILD/bench_gemm" --python "$VENV/bin/python" "$@"
