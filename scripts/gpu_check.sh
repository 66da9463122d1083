#!/usr/bin/env bash
# scripts/gpu_check.sh: the checks and benchmarks for a real GPU, in one run, from the bundle scripts/gpu_bundle.sh
# made (.gl/). On a lent device machine: bash scripts/gpu_check.sh  (log and figures go to ${OUT:-/tmp/gpu_out}).
# 1. the Vulkan device; 2. every op, Vulkan vs CPU (test_vulkan, test_vulkan_gemm); 3. check-hf on every fixture with
# --backend vulkan; 4. whole SFT/DPO training steps, Vulkan vs CPU (tests/lua/test_vulkan_step.lua); 5. GEMM GFLOPS,
# Vulkan vs cuBLAS (bench_vk_gemm --big, bench/torch_gemm.py when torch has CUDA); 6. the mini-MLLM SFT and DPO
# steps on Vulkan and, when torch has CUDA, PyTorch on the same GPU.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
O="${OUT:-/tmp/gpu_out}"
mkdir -p "$O"
exec > >(tee "$O/gpu_check.log") 2>&1
G="$ROOT/.gl"
if [ -z "${GPU_CHECK_NO_DEB:-}" ]; then # (set it to test the script on a machine that has the loader)
  for f in "$G"/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
tar -C "$G" -xJf "$G/libs.tar.xz"
export LD_LIBRARY_PATH="$G/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PIVOT_LUA_DIR="$ROOT/lua" PIVOT_QUIET=1
B="$G/bin"
if ! "$B/pivot" devices 2>&1 | grep -qi nvidia && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
fails=0
step() { # name, command...
  local n="$1"; shift
  echo "=== $n"
  local t0=$SECONDS
  if "$@"; then echo "=== $n: ok ($((SECONDS - t0)) s)"; else echo "=== $n: FAILED rc=$? ($((SECONDS - t0)) s)"; fails=$((fails + 1)); fi
}
step devices "$B/pivot" devices
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
step test_vulkan "$B/test_vulkan"
step test_vulkan_gemm "$B/test_vulkan_gemm"
for d in siglip siglip2_naflex qwen2_tied mllm; do
  step "check-hf vulkan $d" "$B/pivot" check-hf "$G/fixtures/hf/$d" --backend vulkan
done
step vulkan_step "$B/pivot" run tests/lua/test_vulkan_step.lua
step bench_vk_gemm "$B/bench_vk_gemm" --big --tiles
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  step torch_gemm python3 bench/torch_gemm.py --big
fi
for s in sft dpo; do
  step "pivot vulkan $s" "$B/pivot" run bench/mini_mllm.lua --step $s --backend vulkan --warmup 3 --steps 20 --profile
  if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    step "torch cuda $s" python3 bench/torch_mllm.py --step $s --device cuda --warmup 3 --steps 20 --optimizer fused
  fi
done
echo "gpu_check: $fails failed"
exit $((fails > 0))
