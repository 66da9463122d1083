/* bench_gemm: pivot's matmul op (one compiled CPU plan: two inputs, one matmul, pv_plan_run) against a direct
 * cblas_sgemm call on the same data, interleaved run by run, for threads 1 and 2. Prints the median GFLOPS of
 * each and their ratio (goal: >= 0.95).
 * usage: bench_gemm [--quick]   (--quick: 512^3 and the two transformer shapes, 3 runs) */
#include "pivot.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static float *falloc(int64_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * (size_t)(n ? n : 1))) return NULL;
  return p;
}

typedef struct shape {
  int64_t M, K, N;
  int quick;
} shape;

#define MAX_RUNS 64

/* returns 0 on success; fills GFLOPS of pivot and OpenBLAS, and the max |difference| of the results */
static int bench_one(const shape *s, int threads, int base_runs, double *gp, double *gb, double *maxdiff) {
  int64_t M = s->M, K = s->K, N = s->N;
  double flops = 2.0 * (double)M * (double)N * (double)K;
  int runs = (int)(1e10 / flops); /* more samples for the small shapes: ~10 GFLOP per side in all */
  if (runs < base_runs) runs = base_runs;
  if (runs > MAX_RUNS) runs = MAX_RUNS;
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sa[2] = {M, K}, sb[2] = {K, N};
  pv_tensor *a = pv_input(g, "a", PV_F32, 2, sa), *b = pv_input(g, "b", PV_F32, 2, sb);
  pv_tensor *y = pv_matmul(g, a, b, 0, 0);
  if (!y || pv_mark_output(y) != PV_OK) {
    fprintf(stderr, "bench_gemm: graph: %s\n", pv_graph_error(g));
    return 1;
  }
  pv_plan *p = NULL;
  pv_plan_options o = {"cpu", threads, -1, 0};
  if (pv_plan_compile(g, &o, &p) != PV_OK) {
    fprintf(stderr, "bench_gemm: compile: %s\n", pv_last_error(ctx));
    return 1;
  }
  float *A = falloc(M * K), *B = falloc(K * N), *C = falloc(M * N), *Y = falloc(M * N);
  if (!A || !B || !C || !Y) {
    fprintf(stderr, "bench_gemm: out of memory\n");
    return 1;
  }
  uint64_t r = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < M * K; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    A[i] = (float)((double)(r >> 40) / 16777216.0 - 0.5);
  }
  for (int64_t i = 0; i < K * N; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    B[i] = (float)((double)(r >> 40) / 16777216.0 - 0.5);
  }
  if (pv_plan_write(p, a, PV_F32, A, M * K) != PV_OK || pv_plan_write(p, b, PV_F32, B, K * N) != PV_OK) {
    fprintf(stderr, "bench_gemm: write: %s\n", pv_last_error(ctx));
    return 1;
  }
  double tp[MAX_RUNS], tb[MAX_RUNS];
  for (int it = -2; it < runs; it++) { /* two warm-up rounds, then alternate which side goes first */
    for (int side = 0; side < 2; side++) {
      int piv = (side == 0) == (it % 2 == 0);
      double t0 = now_s();
      if (piv) {
        if (pv_plan_run(p) != PV_OK) {
          fprintf(stderr, "bench_gemm: run: %s\n", pv_last_error(ctx));
          return 1;
        }
      } else {
        openblas_set_num_threads(threads);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)K, B, (int)N,
                    0.0f, C, (int)N);
      }
      double dt = now_s() - t0;
      if (it >= 0) (piv ? tp : tb)[it] = dt;
    }
  }
  pv_plan_read(p, y, PV_F32, Y, M * N);
  double md = 0;
  for (int64_t i = 0; i < M * N; i++) md = fmax(md, fabs((double)Y[i] - (double)C[i]));
  *maxdiff = md;
  *gp = flops / median(tp, runs) * 1e-9;
  *gb = flops / median(tb, runs) * 1e-9;
  free(A);
  free(B);
  free(C);
  free(Y);
  pv_plan_free(p);
  pv_graph_free(g);
  pv_context_free(ctx);
  return 0;
}

int main(int argc, char **argv) {
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = 1;
    else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  static const shape shapes[] = {{512, 512, 512, 1},   {1024, 1024, 1024, 0}, {2048, 2048, 2048, 0},
                                 {4096, 256, 768, 1},  {4096, 768, 256, 1}};
  int base_runs = quick ? 3 : 5;
  printf("bench_gemm: pivot matmul (compiled plan) vs direct cblas_sgemm, f32 A[M,K] x B[K,N], median of >= %d runs\n",
         base_runs);
  printf("%-22s %7s %13s %16s %7s %10s\n", "shape (M x K x N)", "threads", "pivot GFLOPS", "OpenBLAS GFLOPS", "ratio",
         "max|diff|");
  int bad = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const shape *s = &shapes[si];
    if (quick && !s->quick) continue;
    for (int threads = 1; threads <= 2; threads++) {
      double gp, gb, md;
      if (bench_one(s, threads, base_runs, &gp, &gb, &md)) return 1;
      char nm[64];
      snprintf(nm, sizeof nm, "%lld x %lld x %lld", (long long)s->M, (long long)s->K, (long long)s->N);
      printf("%-22s %7d %13.1f %16.1f %7.3f %10.2g\n", nm, threads, gp, gb, gp / gb, md);
      fflush(stdout);
      bad |= md > 1e-3;
    }
  }
  if (bad) fprintf(stderr, "bench_gemm: pivot and OpenBLAS results differ\n");
  return bad;
}
