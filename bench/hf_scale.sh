#!/usr/bin/env bash
# bench/hf_scale.sh: loading and forward at the scale of the released checkpoints (random weights), one table.
#
#   bash bench/hf_scale.sh [--no-forward] [--no-cold] [--keep]
#
# Writes a random Qwen2.5-0.5B (single file and 2 shards, ~950 MB each) and a SigLIP2-B/16 vision tower (~180 MB)
# as bf16 safetensors into a temporary directory (deleted at the end unless --keep), times loading each into f32
# vars (warm page cache; cold, after dropping the files' pages; warm without the random init of the vars), then
# times one CPU forward of the SigLIP2-So400m/16-384 + Qwen2.5-0.5B MLLM over 576 image + 64 text tokens. Each
# measurement runs in its own `pivot run bench/hf_scale.lua --part X` process so that its peak RSS is its own.
# Needs ~6 GB of free memory, ~2 GB of disk and ~15 minutes on 2 busy cores.
#
# The forward is run again with OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) when the CPU has them and
# OPENBLAS_CORETYPE is unset (an OpenBLAS older than the CPU otherwise uses its generic kernels; pivot devices says).
#
# Environment: PIVOT_BUILD_DIR (default build-scale), HF_SCALE_TMP (parent of the temporary directory, default
# ${TMPDIR:-/tmp}), THREADS (default 2), RUNS (timed forward runs, default 3), OPENBLAS_CORETYPE.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${PIVOT_BUILD_DIR:-build-scale}"
THREADS="${THREADS:-2}"
RUNS="${RUNS:-3}"
forward=1 cold=1 keep=0
for a in "$@"; do
  case "$a" in
    --no-forward) forward=0 ;;
    --no-cold) cold=0 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "hf_scale.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

if [ ! -x "$BUILD/pivot" ]; then
  echo "hf_scale: building pivot in $BUILD (Release, no Vulkan)" >&2
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPIVOT_VULKAN=OFF >/dev/null
  cmake --build "$BUILD" -j2 --target pivot_cli >/dev/null
fi
PIVOT="$BUILD/pivot"

TMP="$(mktemp -d "${HF_SCALE_TMP:-${TMPDIR:-/tmp}}/pivot-hf-scale.XXXXXX")"
RESULTS="$TMP/results.txt"
cleanup() { if [ "$keep" = 0 ]; then rm -rf "$TMP"; else echo "hf_scale: kept $TMP" >&2; fi; }
trap cleanup EXIT

part() {
  local name="$1"; shift
  echo "hf_scale: $name $* (load average: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if ! "$PIVOT" run bench/hf_scale.lua --part "$name" --threads "$THREADS" "$@" >"$TMP/part.out"; then
    cat "$TMP/part.out" >&2
    echo "hf_scale: part $name failed" >&2
    exit 1
  fi
  grep '^RESULT ' "$TMP/part.out" >>"$RESULTS" || { echo "hf_scale: part $name printed no RESULT" >&2; exit 1; }
  grep -v '^RESULT ' "$TMP/part.out" >&2 || true
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
part gen_qwen --dir "$TMP"
part gen_siglip --dir "$TMP"
for m in qwen qwen_sharded siglip; do
  part "load_$m" --dir "$TMP"
  if [ "$cold" = 1 ]; then part "load_$m" --dir "$TMP" --cold; fi
  part "load_$m" --dir "$TMP" --no-init
done
if [ "$forward" = 1 ]; then
  # the generated checkpoints are not needed any more: free the disk and page cache first
  rm -rf "$TMP/qwen" "$TMP/qwen_sharded" "$TMP/siglip"
  part forward --runs "$RUNS"
  part forward_full --runs "$RUNS"
  # OpenBLAS builds older than the CPU fall back to generic (Prescott) GEMM kernels: a row with the right ones
  if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    core=""
    if grep -qw avx512f /proc/cpuinfo; then core=SkylakeX; elif grep -qw avx2 /proc/cpuinfo; then core=Haswell; fi
    if [ -n "$core" ]; then OPENBLAS_CORETYPE=$core part forward --runs "$RUNS" --blas-core "$core"; fi
  fi
fi
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

echo
"$PIVOT" devices 2>/dev/null | grep '^cpu' || true
echo "pivot $("$PIVOT" version 2>/dev/null | head -1), $(nproc) CPUs, threads $THREADS," \
  "$(awk '/MemTotal/ {printf "%.0f GB RAM", $2 / 1048576}' /proc/meminfo);" \
  "load average at start $load_start, at end $load_end"
"$PIVOT" run bench/hf_scale.lua --part table --results "$RESULTS"
