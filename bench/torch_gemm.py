"""bench/torch_gemm.py: the cuBLAS baseline of bench_vk_gemm (f32 A[M,K] x B[K,N]) through PyTorch on a CUDA GPU.

    python bench/torch_gemm.py [--big]

Prints GFLOPS (median of CUDA-event timings after warm-up) for the shapes bench_vk_gemm times, in full f32
(torch.backends.cuda.matmul.allow_tf32 = False, the cuBLAS SGEMM a Vulkan f32 shader competes with) and, for
reference, with TF32 tensor cores allowed. Optional: torch is not a dependency of pivot.
"""
import argparse
import statistics

import torch

SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (4096, 256, 768),
          (4096, 768, 256), (256, 4096, 768)]
BIG = [(4096, 4096, 4096), (8192, 8192, 8192)]


def time_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", action="store_true")
    args = ap.parse_args()
    print("torch_gemm: torch %s on %s" % (torch.__version__, torch.cuda.get_device_name()))
    print("%-20s %12s %12s" % ("M x K x N", "f32 GFLOPS", "tf32 GFLOPS"))
    for M, K, N in SHAPES + (BIG if args.big else []):
        A = torch.rand(M, K, device="cuda") - 0.5
        B = torch.rand(K, N, device="cuda") - 0.5
        C = torch.empty(M, N, device="cuda")
        flops = 2.0 * M * N * K
        res = []
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            ms = time_ms(lambda: torch.matmul(A, B, out=C), 20)
            res.append(flops / (ms * 1e-3) * 1e-9)
        print("%-20s %12.1f %12.1f" % ("%d x %d x %d" % (M, K, N), res[0], res[1]), flush=True)


if __name__ == "__main__":
    main()
