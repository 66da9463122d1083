/* pv__sgemm (runtime/cpu/sgemm.c) against a float64 GEMM: every kernel variant this CPU has (AVX-512, AVX2, the
 * OpenBLAS fallback), odd and edge sizes, every (trans_a, trans_b), leading dimensions wider than the rows, K = 0,
 * 1..3 threads on a pool. Error bound per element: |c - ref| <= tol(K) · Σ_k |a_ik · b_kj|. The own kernels must give
 * bitwise the same result for every thread count; OpenBLAS the same result run to run. C's padding columns must
 * stay untouched and its old contents (NaN) must not leak in (beta = 0). */
#include "cpu/sgemm.h"
#include "cpu/threadpool.h"
#include "testutil.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENTINEL 12345.0f

static const int64_t sizes[] = {1, 2, 3, 5, 7, 13, 15, 16, 17, 31, 33, 63, 65, 100, 127, 129, 255, 257, 700, 768};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))

static pv_pool *pools[4]; /* pools[n]: n threads */
static double worst[4];   /* largest error / bound seen, per variant */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(rng >> 40) / 8388608.0 - 1.0); /* [-1, 1) */
}

static double tol(int64_t K) { return 1e-6 * sqrt((double)(K > 0 ? K : 1)); }

typedef struct problem {
  int ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float *A, *B;
  double *ref, *mag; /* op(A)·op(B) and Σ|a·b|, [M, N] */
} problem;

/* allocates and fills A and B (row strides lda, ldb >= their rows) and the float64 reference */
static int problem_init(problem *p, int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t pad) {
  memset(p, 0, sizeof *p);
  p->ta = ta, p->tb = tb, p->M = M, p->N = N, p->K = K;
  int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  p->lda = ac + pad, p->ldb = bc + pad, p->ldc = N + pad;
  p->A = malloc(sizeof(float) * (size_t)(ar * p->lda + 1));
  p->B = malloc(sizeof(float) * (size_t)(br * p->ldb + 1));
  p->ref = malloc(sizeof(double) * (size_t)(M * N));
  p->mag = malloc(sizeof(double) * (size_t)(M * N));
  double *oa = malloc(sizeof(double) * (size_t)(M * K + 1)), *ob = malloc(sizeof(double) * (size_t)(N * K + 1));
  if (!p->A || !p->B || !p->ref || !p->mag || !oa || !ob) {
    free(oa);
    free(ob);
    return 0;
  }
  for (int64_t i = 0; i < ar * p->lda; i++)
    p->A[i] = frand();
  for (int64_t i = 0; i < br * p->ldb; i++)
    p->B[i] = frand();
  for (int64_t m = 0; m < M; m++) /* oa[m, k] = op(A)[m, k], ob[n, k] = op(B)[k, n] */
    for (int64_t k = 0; k < K; k++)
      oa[m * K + k] = ta ? p->A[k * p->lda + m] : p->A[m * p->lda + k];
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      ob[n * K + k] = tb ? p->B[n * p->ldb + k] : p->B[k * p->ldb + n];
  for (int64_t m = 0; m < M; m++)
    for (int64_t n = 0; n < N; n++) {
      const double *x = oa + m * K, *y = ob + n * K;
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; k++)
        s += x[k] * y[k], a += fabs(x[k] * y[k]);
      p->ref[m * N + n] = s;
      p->mag[m * N + n] = a;
    }
  free(oa);
  free(ob);
  return 1;
}

static void problem_free(problem *p) {
  free(p->A);
  free(p->B);
  free(p->ref);
  free(p->mag);
}

/* worst error / bound over C (inf on NaN or a touched padding column) */
static double c_error(const problem *p, const float *C) {
  double w = 0;
  for (int64_t m = 0; m < p->M; m++) {
    for (int64_t n = 0; n < p->N; n++) {
      double c = C[m * p->ldc + n], e = fabs(c - p->ref[m * p->N + n]);
      double b = tol(p->K) * p->mag[m * p->N + n] + 1e-30;
      if (isnan(c)) return INFINITY;
      if (e / b > w) w = e / b;
    }
    for (int64_t n = p->N; n < p->ldc; n++)
      if (C[m * p->ldc + n] != SENTINEL) return INFINITY;
  }
  return w;
}

static float *c_new(const problem *p) {
  size_t n = (size_t)(p->M * p->ldc);
  float *C = malloc(sizeof(float) * (n ? n : 1));
  if (!C) return NULL;
  for (int64_t m = 0; m < p->M; m++)
    for (int64_t n = 0; n < p->ldc; n++)
      C[m * p->ldc + n] = n < p->N ? NAN : SENTINEL;
  return C;
}

static void run(const problem *p, int v, int nth, float *C) {
  pv__sgemm_ex(v, p->ta, p->tb, p->M, p->N, p->K, p->A, p->lda, p->B, p->ldb, C, p->ldc, nth, pv__pool_run, pools[nth]);
}

/* one problem through variant v with 1, 2 and 3 threads */
static void check_variant(const problem *p, int v, const char *what) {
  float *c1 = c_new(p), *c2 = c_new(p), *c3 = c_new(p);
  if (!c1 || !c2 || !c3) {
    CHECK(0, "%s: out of memory", what);
    goto out;
  }
  run(p, v, 1, c1);
  double e = c_error(p, c1);
  if (e > worst[v]) worst[v] = e;
  CHECK(e <= 1.0, "%s %s M=%lld N=%lld K=%lld ta=%d tb=%d ld=%lld/%lld/%lld 1 thread: error %.3g x the bound", what,
        pv__sgemm_name(v), (long long)p->M, (long long)p->N, (long long)p->K, p->ta, p->tb, (long long)p->lda,
        (long long)p->ldb, (long long)p->ldc, e);
  size_t bytes = sizeof(float) * (size_t)(p->M * p->ldc);
  for (int nth = 2; nth <= 3; nth++) {
    float *c = nth == 2 ? c2 : c3;
    run(p, v, nth, c);
    if (v == PV_GEMM_OPENBLAS) { /* may differ by thread count; must be within the bound and repeatable */
      double en = c_error(p, c);
      CHECK(en <= 1.0, "%s openblas M=%lld N=%lld K=%lld %d threads: error %.3g x the bound", what, (long long)p->M,
            (long long)p->N, (long long)p->K, nth, en);
      float *again = c_new(p);
      if (again) {
        run(p, v, nth, again);
        CHECK(!memcmp(again, c, bytes), "%s openblas M=%lld N=%lld K=%lld %d threads: two runs differ", what,
              (long long)p->M, (long long)p->N, (long long)p->K, nth);
        free(again);
      }
    } else {
      CHECK(!memcmp(c1, c, bytes), "%s %s M=%lld N=%lld K=%lld ta=%d tb=%d: %d threads differ from 1 thread", what,
            pv__sgemm_name(v), (long long)p->M, (long long)p->N, (long long)p->K, p->ta, p->tb, nth);
    }
  }
out:
  free(c1);
  free(c2);
  free(c3);
}

static int variants[4], nvariants;

static void check_shape(const char *what, int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t pad) {
  problem p;
  if (!problem_init(&p, ta, tb, M, N, K, pad)) {
    CHECK(0, "%s: out of memory", what);
    problem_free(&p);
    return;
  }
  for (int i = 0; i < nvariants; i++)
    check_variant(&p, variants[i], what);
  problem_free(&p);
}

/* the checker itself: a result off by 1e-4 relative in one element, or a NaN, must fail */
static void check_checker(void) {
  problem p;
  if (!problem_init(&p, 0, 0, 33, 17, 700, 3)) {
    CHECK(0, "checker: out of memory");
    problem_free(&p);
    return;
  }
  float *C = c_new(&p);
  if (C) {
    run(&p, PV_GEMM_AUTO, 1, C);
    CHECK(c_error(&p, C) <= 1.0, "checker: exact result rejected");
    float keep = C[5 * p.ldc + 7];
    C[5 * p.ldc + 7] = keep + 1e-4f * (float)p.mag[5 * p.N + 7];
    CHECK(c_error(&p, C) > 1.0, "checker: a perturbed element passed");
    C[5 * p.ldc + 7] = NAN;
    CHECK(c_error(&p, C) > 1.0, "checker: a NaN passed");
    C[5 * p.ldc + 7] = keep;
    C[5 * p.ldc + p.N] = 0.0f; /* a padding column */
    CHECK(c_error(&p, C) > 1.0, "checker: a written padding column passed");
  }
  free(C);
  problem_free(&p);
}

static void check_k0(int v) {
  for (int nth = 1; nth <= 3; nth++) {
    problem p;
    if (!problem_init(&p, nth & 1, nth >> 1, 13, 37, 0, 2)) {
      CHECK(0, "K=0: out of memory");
      problem_free(&p);
      return;
    }
    float *C = c_new(&p);
    if (C) {
      run(&p, v, nth, C);
      int ok = 1;
      for (int64_t m = 0; m < p.M; m++)
        for (int64_t n = 0; n < p.ldc; n++)
          ok &= C[m * p.ldc + n] == (n < p.N ? 0.0f : SENTINEL);
      CHECK(ok, "%s K=0 %d threads: C is not zeros (padding untouched)", pv__sgemm_name(v), nth);
    }
    free(C);
    problem_free(&p);
  }
}

int main(void) {
  /* the dispatcher honours PIVOT_GEMM (read once, at the first call into sgemm.c): ask for a variant other than
   * the best one when none is set (a set one is left alone: PIVOT_GEMM=openblas runs the AUTO checks on it) */
  const char *env = getenv("PIVOT_GEMM");
  int want = -1;
  if (!env || !*env) {
    __builtin_cpu_init();
    want = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? PV_GEMM_AVX2 : PV_GEMM_OPENBLAS;
    setenv("PIVOT_GEMM", want == PV_GEMM_AVX2 ? "avx2" : "openblas", 1);
  }
  for (int n = 1; n <= 3; n++)
    pools[n] = pv__pool_new(n);
  CHECK(pools[1] && pools[2] && pools[3], "pool_new failed");
  static const int all[3] = {PV_GEMM_AVX512, PV_GEMM_AVX2, PV_GEMM_OPENBLAS};
  for (int i = 0; i < 3; i++)
    if (pv__sgemm_supported(all[i])) variants[nvariants++] = all[i];
  int d = pv__sgemm_default();
  CHECK(pv__sgemm_supported(d) && d != PV_GEMM_AUTO, "default variant %d is not supported", d);
  CHECK(want < 0 || d == want, "PIVOT_GEMM=%s: the default variant is %s", getenv("PIVOT_GEMM"), pv__sgemm_name(d));
  CHECK(pv__sgemm_supported(PV_GEMM_OPENBLAS), "OpenBLAS must always be available");
  printf("default variant: %s; testing:", pv__sgemm_name(PV_GEMM_AUTO));
  for (int i = 0; i < nvariants; i++)
    printf(" %s", pv__sgemm_name(variants[i]));
  printf("\n");
  if (!pools[1] || !pools[2] || !pools[3]) return pv_t_finish();

  check_checker();
  for (int i = 0; i < nvariants; i++)
    check_k0(variants[i]);

  /* 1 x 1 x 1 in every (ta, tb) */
  for (int f = 0; f < 4; f++)
    check_shape("1x1x1", f & 1, f >> 1, 1, 1, 1, f);

  /* sweep: every (M, N) of the size list, K picked from it; all four (ta, tb) where small, else one of them;
   * leading dimensions padded by 0, 5 or 10 */
  for (int i = 0; i < NSIZES; i++)
    for (int j = 0; j < NSIZES; j++) {
      int64_t M = sizes[i], N = sizes[j], K = sizes[(i * 7 + j * 3 + 5) % NSIZES];
      int64_t pad = 5 * ((i + j) % 3);
      if ((double)M * (double)N * (double)K <= 2e6)
        for (int f = 0; f < 4; f++)
          check_shape("sweep", f & 1, f >> 1, M, N, K, pad);
      else
        check_shape("sweep", (i + j) & 1, ((i + j) >> 1) & 1, M, N, K, pad);
    }

  /* the mini-MLLM step's shapes (M x N x K) */
  check_shape("mllm fc1", 0, 0, 768, 704, 256, 0);
  check_shape("mllm fc2", 0, 0, 768, 256, 704, 0);
  check_shape("mllm dW", 1, 0, 256, 704, 768, 0);
  check_shape("mllm dX", 0, 1, 768, 256, 704, 0);
  check_shape("mllm lm head", 0, 1, 768, 512, 256, 0);
  check_shape("mllm 512", 0, 0, 512, 512, 128, 0);
  check_shape("mllm narrow", 0, 0, 768, 64, 256, 0);
  check_shape("mllm narrow", 0, 0, 768, 32, 256, 0);
  check_shape("attention q·kᵀ", 0, 1, 96, 96, 32, 0);
  check_shape("attention p·v", 0, 0, 96, 32, 96, 0);
  check_shape("attention dv", 1, 0, 96, 32, 96, 0);
  check_shape("attention both transposed", 1, 1, 96, 96, 32, 0);
  check_shape("attention small", 0, 1, 64, 64, 32, 0);
  check_shape("long K", 1, 1, 37, 45, 1500, 7); /* several K slices */
  check_shape("long K", 0, 0, 129, 65, 1025, 0);
  check_shape("B rows 4 KiB apart (packed)", 0, 0, 100, 1000, 300, 24);
  check_shape("B rows 4 KiB apart (packed)", 1, 0, 37, 1024, 65, 0);

  for (int i = 0; i < nvariants; i++)
    printf("%-8s worst error: %.3f of the bound (%.1e sqrt(K) sum|a b|)\n", pv__sgemm_name(variants[i]),
           worst[variants[i]], tol(1));
  for (int n = 1; n <= 3; n++)
    pv__pool_free(pools[n]);
  return pv_t_finish();
}
