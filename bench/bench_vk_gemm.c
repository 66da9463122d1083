/* bench_vk_gemm: the matmul op on the Vulkan backend against the CPU backend (OpenBLAS), each as a compiled plan of
 * the same graph (two inputs, one matmul), f32 A[M,K] x B[K,N]. Vulkan time: GPU timestamps of the matmul node
 * (pv_plan_set_profiling) when the device has them, else the wall clock of pv_plan_run; the wall clock of the
 * Vulkan run (submit and wait included) is shown too. CPU: the wall clock of pv_plan_run. Median over runs after one
 * warm-up run; the run count adapts to the speed of each side (at least 2, about 2 s per side and shape).
 * usage: bench_vk_gemm [--quick] [--big] [--tiles] [--threads N]
 *   --quick: skip 2048^3;  --big: also 4096^3 and 8192^3, GPU-sized shapes checked against 512 sampled entries
 *   computed in double on the host instead of a CPU plan (the cpu column shows "-");  --tiles: also each forced tile
 * variant (PIVOT_VK_GEMM_TILE=small|64|128);
 *   --threads: CPU plan threads (default: the context's). PIVOT_DEVICE picks the Vulkan device;
 *   PIVOT_VK_GEMM_SPLITK=1 turns split K off (ops/matmul.c). Shapes: 256..2048 cubes, the transformer shapes
 *   4096x256x768 and 4096x768x256, and 256x4096x768 (a weight gradient: few output tiles, long K). */
#include "benchutil.h"
#include "pivot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RUNS 50

typedef struct shape {
  int64_t M, K, N;
  int big; /* 1: skipped by --quick; 2: only with --big, no CPU plan (sampled check) */
} shape;

/* ms of the matmul node in the plan's profile table (-1 if absent) */
static double profile_ms(pv_plan *p) {
  char buf[4096];
  if (pv_plan_profile(p, buf, sizeof buf) != PV_OK) return -1;
  for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    char op[64];
    long long calls;
    double ms;
    if (sscanf(l, "%63s %lld %lf", op, &calls, &ms) == 3 && !strcmp(op, "matmul") && calls > 0) return ms / calls;
  }
  return -1;
}

typedef struct result {
  double gpu_ms, wall_ms; /* medians; gpu_ms < 0: no timestamps */
  int runs;
} result;

/* compiles g for backend be, writes A and B, runs once, then times the runs when timed; Y gets the result */
static int bench_plan(pv_context *ctx, pv_graph *g, pv_tensor *a, pv_tensor *b, pv_tensor *y, const char *be,
                      int threads, const float *A, const float *B, float *Y, const shape *s, int timed, result *r) {
  pv_plan *p = NULL;
  pv_plan_options o = {be, threads, -1, 0};
  if (pv_plan_compile(g, &o, &p) != PV_OK) {
    fprintf(stderr, "bench_vk_gemm: %s compile: %s\n", be, pv_last_error(ctx));
    return 1;
  }
  int prof = !strcmp(be, "vulkan");
  if (pv_plan_write(p, a, PV_F32, A, s->M * s->K) != PV_OK || pv_plan_write(p, b, PV_F32, B, s->K * s->N) != PV_OK ||
      pv_plan_run(p) != PV_OK) { /* warm-up (and the pipeline / first-run costs) */
    fprintf(stderr, "bench_vk_gemm: %s run: %s\n", be, pv_last_error(ctx));
    pv_plan_free(p);
    return 1;
  }
  double wall[MAX_RUNS], gpu[MAX_RUNS], spent = 0;
  int n = 0, have_gpu = prof;
  while (timed && n < MAX_RUNS && (n < 2 || spent < 2.0)) {
    if (prof) pv_plan_set_profiling(p, 1);
    double t0 = now_s();
    if (pv_plan_run(p) != PV_OK) {
      fprintf(stderr, "bench_vk_gemm: %s run: %s\n", be, pv_last_error(ctx));
      pv_plan_free(p);
      return 1;
    }
    double dt = now_s() - t0;
    spent += dt;
    wall[n] = dt * 1e3;
    if (prof) {
      gpu[n] = profile_ms(p);
      if (gpu[n] <= 0) have_gpu = 0;
      pv_plan_set_profiling(p, 0);
    }
    n++;
  }
  if (prof && n) { /* the wall clock without profiling barriers */
    int m = n < 5 ? n : 5;
    for (int i = 0; i < m; i++) {
      double t0 = now_s();
      pv_plan_run(p);
      wall[i] = (now_s() - t0) * 1e3;
    }
    n = m;
  }
  r->runs = n;
  r->wall_ms = n ? median(wall, n) : 0;
  r->gpu_ms = n && have_gpu ? median(gpu, n) : -1;
  pv_status st = pv_plan_read(p, y, PV_F32, Y, s->M * s->N);
  pv_plan_free(p);
  if (st != PV_OK) {
    fprintf(stderr, "bench_vk_gemm: %s read: %s\n", be, pv_last_error(ctx));
    return 1;
  }
  return 0;
}

static int bench_shape(const shape *s, const char *tile, int threads, int *cpu_done, double *cpu_gf) {
  int64_t M = s->M, K = s->K, N = s->N;
  double flops = 2.0 * (double)M * (double)N * (double)K;
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sa[2] = {M, K}, sb[2] = {K, N};
  pv_tensor *a = pv_input(g, "a", PV_F32, 2, sa), *b = pv_input(g, "b", PV_F32, 2, sb);
  pv_tensor *y = pv_matmul(g, a, b, 0, 0);
  if (!y || pv_mark_output(y) != PV_OK) {
    fprintf(stderr, "bench_vk_gemm: graph: %s\n", pv_graph_error(g));
    return 1;
  }
  float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
  float *Yv = malloc(sizeof(float) * (size_t)(M * N)), *Yc = malloc(sizeof(float) * (size_t)(M * N));
  if (!A || !B || !Yv || !Yc) {
    fprintf(stderr, "bench_vk_gemm: out of memory\n");
    return 1;
  }
  uint64_t rs = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < M * K; i++) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    A[i] = (float)((double)(rs >> 40) / 16777216.0 - 0.5);
  }
  for (int64_t i = 0; i < K * N; i++) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    B[i] = (float)((double)(rs >> 40) / 16777216.0 - 0.5);
  }
  if (tile)
    setenv("PIVOT_VK_GEMM_TILE", tile, 1);
  else
    unsetenv("PIVOT_VK_GEMM_TILE");
  result rv, rc;
  int err = bench_plan(ctx, g, a, b, y, "vulkan", 0, A, B, Yv, s, 1, &rv);
  if (!err && s->big < 2) /* timed once per shape; later rows only need its result */
    err = bench_plan(ctx, g, a, b, y, "cpu", threads, A, B, Yc, s, !*cpu_done, &rc);
  if (!err && !*cpu_done && s->big < 2) {
    *cpu_gf = flops / (rc.wall_ms * 1e-3) * 1e-9;
    *cpu_done = 1;
  }
  if (!err) {
    double num = 0, den = 0;
    if (s->big < 2) {
      for (int64_t i = 0; i < M * N; i++) {
        double d = (double)Yv[i] - (double)Yc[i];
        num += d * d;
        den += (double)Yc[i] * (double)Yc[i];
      }
    } else { /* 512 sampled entries against a float64 dot product */
      for (int t = 0; t < 512; t++) {
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        int64_t i = (int64_t)((rs >> 33) % (uint64_t)M), j = (int64_t)((rs >> 13) % (uint64_t)N);
        double ref = 0;
        for (int64_t k = 0; k < K; k++)
          ref += (double)A[i * K + k] * (double)B[k * N + j];
        double d = (double)Yv[i * N + j] - ref;
        num += d * d;
        den += ref * ref;
      }
    }
    char nm[64];
    snprintf(nm, sizeof nm, "%lld x %lld x %lld", (long long)M, (long long)K, (long long)N);
    double vt = rv.gpu_ms > 0 ? rv.gpu_ms : rv.wall_ms;
    if (s->big < 2)
      printf("%-20s %-6s %10.2f %10.2f %10.2f %8.3f %9.2g %5d\n", nm, tile ? tile : "auto", flops / (vt * 1e-3) * 1e-9,
             flops / (rv.wall_ms * 1e-3) * 1e-9, *cpu_gf, flops / (vt * 1e-3) * 1e-9 / *cpu_gf,
             sqrt(num / (den > 0 ? den : 1)), rv.runs);
    else
      printf("%-20s %-6s %10.2f %10.2f %10s %8s %9.2g %5d\n", nm, tile ? tile : "auto", flops / (vt * 1e-3) * 1e-9,
             flops / (rv.wall_ms * 1e-3) * 1e-9, "-", "-", sqrt(num / (den > 0 ? den : 1)), rv.runs);
    fflush(stdout);
  }
  free(A);
  free(B);
  free(Yv);
  free(Yc);
  pv_graph_free(g);
  pv_context_free(ctx);
  return err;
}

int main(int argc, char **argv) {
  int quick = 0, tiles = 0, threads = 0, big = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--tiles"))
      tiles = 1;
    else if (!strcmp(argv[i], "--big"))
      big = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: %s [--quick] [--big] [--tiles] [--threads N]\n", argv[0]);
      return 2;
    }
  }
  pv_context *ctx = pv_context_new();
  const char *why = NULL;
  char desc[1024] = "";
  if (!pv_backend_available(ctx, "vulkan", &why)) {
    fprintf(stderr, "bench_vk_gemm: no Vulkan: %s\n", why ? why : "");
    pv_context_free(ctx);
    return 1;
  }
  pv_backend_describe(ctx, "vulkan", desc, sizeof desc);
  pv_context_free(ctx);
  static const shape shapes[] = {{256, 256, 256, 0},    {512, 512, 512, 0},   {1024, 1024, 1024, 0},
                                 {2048, 2048, 2048, 1}, {4096, 256, 768, 0},  {4096, 768, 256, 0},
                                 {256, 4096, 768, 0}, /* a weight gradient (split K on a GPU) */
                                 {4096, 4096, 4096, 2}, {8192, 8192, 8192, 2}};
  static const char *variants[] = {"small", "64", "128"};
  printf("bench_vk_gemm: matmul f32 A[M,K] x B[K,N], Vulkan plan vs CPU plan (OpenBLAS), GFLOPS (median)\n");
  printf("vulkan: %s\n", desc);
  printf("%-20s %-6s %10s %10s %10s %8s %9s %5s\n", "M x K x N", "tile", "vk(gpu)", "vk(wall)", "cpu", "vk/cpu",
         "rel diff", "runs");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const shape *s = &shapes[si];
    if ((quick && s->big == 1) || (!big && s->big == 2)) continue;
    int cpu_done = 0;
    double cpu_gf = 0;
    if (bench_shape(s, NULL, threads, &cpu_done, &cpu_gf)) return 1;
    for (int v = 0; tiles && v < 3; v++)
      if (bench_shape(s, variants[v], threads, &cpu_done, &cpu_gf)) return 1;
  }
  return 0;
}
