/* bench_gemm: pivot's matmul op (one compiled CPU plan: two inputs, one matmul, pv_plan_run) and pivot's GEMM kernel
 * called directly (pv__sgemm on a pool of the same size) against a direct cblas_sgemm call on the same data,
 * interleaved sample by sample (the order rotated each round), for threads 1 and 2. A sample times enough calls
 * for ~2 GFLOP, after a pause (the other sides' spinning threads park) and a quarter as many untimed calls (this
 * side's threads wake up and the scheduler spreads them over the cores). Prints the median
 * GFLOPS of each, the ratio plan / OpenBLAS, and the kernel variant in use (PIVOT_GEMM=avx512|avx2|openblas picks one).
 * Shapes: square ones, transformer ones and the mini-MLLM step's (forward, weight gradient with op(A) = Aᵀ, tied LM
 * head with op(B) = Bᵀ, attention-sized). usage: bench_gemm [--quick]   (--quick: the shapes marked quick, 3 samples a
 * side) */
#include "benchutil.h"
#include "pivot.h"
#include "cpu/sgemm.h"
#include "cpu/threadpool.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *falloc(int64_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, sizeof(float) * (size_t)(n ? n : 1))) return NULL;
  return p;
}

typedef struct shape {
  int64_t M, K, N;
  int ta, tb, quick;
  const char *what;
} shape;

#define MAX_RUNS 64

static void fill(float *x, int64_t n, uint64_t *r) {
  for (int64_t i = 0; i < n; i++) {
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)((double)(*r >> 40) / 16777216.0 - 0.5);
  }
}

/* returns 0 on success; fills GFLOPS of the pivot plan, pivot's kernel and OpenBLAS, and the max |difference| of
 * the plan's and OpenBLAS's results */
static int bench_one(const shape *s, int threads, int base_runs, double *gp, double *gk, double *gb, double *maxdiff) {
  int64_t M = s->M, K = s->K, N = s->N;
  double flops = 2.0 * (double)M * (double)N * (double)K;
  int reps = (int)(2e9 / flops) + 1;       /* calls per sample: ~2 GFLOP */
  int warm = reps / 4 + 1;                 /* untimed calls before a sample */
  int runs = (int)(1e10 / (flops * reps)); /* more samples for the small shapes: ~10 GFLOP per side in all */
  if (runs < base_runs) runs = base_runs;
  if (runs > (threads > 1 ? 15 : MAX_RUNS)) runs = threads > 1 ? 15 : MAX_RUNS; /* 2 threads: 0.15 s pauses */
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sa[2] = {s->ta ? K : M, s->ta ? M : K}, sb[2] = {s->tb ? N : K, s->tb ? K : N};
  pv_tensor *a = pv_input(g, "a", PV_F32, 2, sa), *b = pv_input(g, "b", PV_F32, 2, sb);
  pv_tensor *y = pv_matmul(g, a, b, s->ta, s->tb);
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
  pv_pool *pool = pv__pool_new(threads);
  float *A = falloc(M * K), *B = falloc(K * N), *C = falloc(M * N), *D = falloc(M * N), *Y = falloc(M * N);
  if (!A || !B || !C || !D || !Y || !pool) {
    fprintf(stderr, "bench_gemm: out of memory\n");
    return 1;
  }
  uint64_t r = 0x9E3779B97F4A7C15ull;
  fill(A, M * K, &r);
  fill(B, K * N, &r);
  if (pv_plan_write(p, a, PV_F32, A, M * K) != PV_OK || pv_plan_write(p, b, PV_F32, B, K * N) != PV_OK) {
    fprintf(stderr, "bench_gemm: write: %s\n", pv_last_error(ctx));
    return 1;
  }
  int64_t lda = s->ta ? M : K, ldb = s->tb ? K : N;
  double t[3][MAX_RUNS];
  int prev = -1;                       /* the side that ran last */
  for (int it = -2; it < runs; it++) { /* two warm-up rounds, then rotate which side goes first */
    for (int k = 0; k < 3; k++) {
      int side = (k + (it < 0 ? 0 : it)) % 3;
      /* the three sides have their own threads (plan pool, kernel pool, OpenBLAS's): let the others' spinning
       * workers park first, then untimed calls wake this side's own. pivot's pool workers park after a few
       * thousand pauses (2 ms is plenty); OpenBLAS's spin (sched_yield) ~0.1 s after a call (THREAD_TIMEOUT,
       * 2^28 cycles) and, on 2 cores, would halve a 2-thread pivot side that follows: 0.15 s after OpenBLAS */
      struct timespec pause = {0, prev == 2 && threads > 1 ? 150000000 : 2000000};
      prev = side;
      nanosleep(&pause, NULL);
      double t0 = 0;
      for (int rep = -warm; rep < reps; rep++) {
        if (rep == 0) t0 = now_s();
        if (side == 0) {
          if (pv_plan_run(p) != PV_OK) {
            fprintf(stderr, "bench_gemm: run: %s\n", pv_last_error(ctx));
            return 1;
          }
        } else if (side == 1) {
          pv__sgemm(s->ta, s->tb, M, N, K, A, lda, B, ldb, D, N, threads, pv__pool_run, pool);
        } else {
          if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
          cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (int)M,
                      (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)N);
        }
      }
      if (it >= 0) t[side][it] = (now_s() - t0) / reps;
    }
  }
  pv_plan_read(p, y, PV_F32, Y, M * N);
  double md = 0;
  for (int64_t i = 0; i < M * N; i++)
    md = fmax(md, fmax(fabs((double)Y[i] - (double)C[i]), fabs((double)D[i] - (double)C[i])));
  *maxdiff = md;
  *gp = flops / median(t[0], runs) * 1e-9;
  *gk = flops / median(t[1], runs) * 1e-9;
  *gb = flops / median(t[2], runs) * 1e-9;
  free(A);
  free(B);
  free(C);
  free(D);
  free(Y);
  pv__pool_free(pool);
  pv_plan_free(p);
  pv_graph_free(g);
  pv_context_free(ctx);
  return 0;
}

int main(int argc, char **argv) {
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return 2;
    }
  }
  static const shape shapes[] = {
      {512, 512, 512, 0, 0, 1, "square"},        {1024, 1024, 1024, 0, 0, 0, "square"},
      {2048, 2048, 2048, 0, 0, 0, "square"},     {4096, 256, 768, 0, 0, 1, "transformer"},
      {4096, 768, 256, 0, 0, 1, "transformer"},  {768, 256, 704, 0, 0, 1, "mllm MLP up"},
      {768, 704, 256, 0, 0, 1, "mllm MLP down"}, {256, 768, 704, 1, 0, 1, "mllm weight grad"},
      {768, 256, 512, 0, 1, 1, "mllm LM head"},  {512, 128, 512, 0, 0, 1, "mllm vision MLP"},
      {768, 256, 64, 0, 0, 0, "mllm narrow"},    {96, 32, 96, 0, 1, 0, "attention q·kᵀ"},
      {96, 96, 32, 0, 0, 0, "attention p·v"},
  };
  int base_runs = quick ? 3 : 5;
  const char *cpu = pv__sgemm_name(PV_GEMM_AUTO);
  printf("bench_gemm: f32 C = op(A)·op(B), M x K x N; pivot plan and pivot's %s kernel (direct) vs direct "
         "cblas_sgemm (%s), GFLOPS, median of >= %d samples\n",
         cpu, openblas_get_corename(), base_runs);
  printf("%-18s %-2s %-17s %7s %8s %8s %9s %7s %9s\n", "shape (M x K x N)", "op", "", "threads", "pivot", "kernel",
         "OpenBLAS", "ratio", "max|diff|");
  int bad = 0;
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const shape *s = &shapes[si];
    if (quick && !s->quick) continue;
    for (int threads = 1; threads <= 2; threads++) {
      double gp, gk, gb, md;
      if (bench_one(s, threads, base_runs, &gp, &gk, &gb, &md)) return 1;
      char nm[64];
      snprintf(nm, sizeof nm, "%lld x %lld x %lld", (long long)s->M, (long long)s->K, (long long)s->N);
      printf("%-18s %c%c %-17s %7d %8.1f %8.1f %9.1f %7.2f %9.2g\n", nm, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->what,
             threads, gp, gk, gb, gp / gb, md);
      fflush(stdout);
      bad |= md > 1e-3;
    }
  }
  printf("(op: NN = A·B, TN = Aᵀ·B, NT = A·Bᵀ; ratio = pivot plan / OpenBLAS)\n");
  if (bad) fprintf(stderr, "bench_gemm: pivot and OpenBLAS results differ\n");
  return bad;
}
