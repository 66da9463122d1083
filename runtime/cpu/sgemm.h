/* pivot's own single-precision GEMM for x86-64 (AVX-512F and AVX2+FMA micro-kernels, chosen at run time),
 * with OpenBLAS as the fallback. Internal. */
#ifndef PV_SGEMM_H
#define PV_SGEMM_H
#include <stdint.h>

/* kernel variants; PV_GEMM_AUTO: the default (chosen once per process, see pv__sgemm_default) */
enum { PV_GEMM_AUTO = 0, PV_GEMM_OPENBLAS, PV_GEMM_AVX2, PV_GEMM_AVX512 };

typedef void (*pv_gemm_parallel)(void *pool, void (*fn)(void *arg, int ith, int nth), void *arg);

/* The default variant: env PIVOT_GEMM=avx512|avx2|openblas when this CPU supports it, else the best the CPU
 * supports (AVX-512F+VL+DQ, then AVX2+FMA, then OpenBLAS). Read once, thread-safe. */
int pv__sgemm_default(void);
/* 1 when variant v can run on this CPU (OpenBLAS and AUTO always can) */
int pv__sgemm_supported(int v);
/* "avx512", "avx2", "openblas" (AUTO: the default's name) */
const char *pv__sgemm_name(int v);

/* C[M, N] = op(A) · op(B), row-major; op(X) = Xᵀ when ta / tb. A is [M, K] (ta: [K, M]) with row stride lda,
 * B is [K, N] (tb: [N, K]) with row stride ldb, C [M, N] with row stride ldc. beta = 0: C is overwritten (K = 0:
 * zeros). nth > 1 with a parallel runner (pivot's pool): M or N is cut into cells that the runner's threads
 * claim in turn (never K); every element is summed in the same order whatever the cut and whichever thread computes
 * it, so the result does not depend on the thread count. Without a runner the call is single-threaded (the OpenBLAS
 * fallback then uses nth OpenBLAS threads). Small problems use fewer threads. Not re-entrant per pool: do not call
 * it with a runner from inside that runner's own jobs. */
void pv__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
               int64_t ldb, float *C, int64_t ldc, int nth, pv_gemm_parallel parallel, void *pool);
/* the same with an explicit variant (PV_GEMM_AUTO: the default; one the CPU lacks: OpenBLAS) */
void pv__sgemm_ex(int variant, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float *C, int64_t ldc, int nth, pv_gemm_parallel parallel, void *pool);
#endif
