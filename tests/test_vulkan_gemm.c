/* Vulkan tests of the GEMM (matmul), embedding / scatter_add and update (adamw, assign) kernels against the CPU
 * backend, with the Khronos validation layer on (zero validation errors required). Needs Vulkan: without it the test
 * prints why and fails, unless PIVOT_ALLOW_NO_VULKAN=1. lavapipe in CI: shapes stay small but span several tiles.
 *  - matmul: all transpose combinations, odd sizes (1, 7, 13, 65, 129 mixed), several tiles in every dimension, the
 *    vec4 and scalar load paths, batched and broadcast batches (the folded "one GEMM" path too), more batches than
 *    the 65535 grid limit, K = 1, split K (forced with PIVOT_VK_GEMM_SPLITK and automatic); each tile variant forced
 *    (PIVOT_VK_GEMM_TILE=small|64|128) and the automatic choice; forward rel L2 <= 1e-5 against the CPU; gradients
 *    through oc_check for each variant;
 *  - embedding / scatter_add: ids out of range fail the run naming the op; scatter_add is bitwise equal to the CPU
 *    (same summation order) and deterministic, with skewed ids (a row hit by most positions);
 *  - adamw (both lerp branches, lr_scale, weight decay, several steps) and assign (set, accumulate, factor) update
 *    their variables in place on the device and agree with the CPU. */
#include "opcheck.h"
#include "pivot.h"
#include "testutil.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* not yet declared in pivot.h (ops/embedding.c) */
pv_tensor *pv_scatter_add(pv_graph *g, pv_tensor *dy, pv_tensor *ids, int64_t V);
/* internal hooks (runtime/vulkan/vk.h); weak so the test links in a build without Vulkan */
int pv__vk_validation_errors(pv_context *ctx) __attribute__((weak));

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static double urand(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return (double)(rs >> 11) / 9007199254740992.0;
}

static double rel_l2(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void set_tile(const char *tile) {
  if (tile)
    setenv("PIVOT_VK_GEMM_TILE", tile, 1);
  else
    unsetenv("PIVOT_VK_GEMM_TILE");
}

/* compiles g for backend be, writes the inputs, runs, reads y; returns 1 on success */
static int run_plan(pv_context *ctx, pv_graph *g, const char *be, int nin, pv_tensor **in, float **data, pv_tensor *y,
                    float *out) {
  pv_plan *p = NULL;
  pv_plan_options o = {be, 0, -1, 0};
  int ok = pv_plan_compile(g, &o, &p) == PV_OK;
  for (int i = 0; ok && i < nin; i++)
    ok = pv_plan_write(p, in[i], PV_F32, data[i], pv_tensor_numel(in[i])) == PV_OK;
  ok = ok && pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, out, pv_tensor_numel(y)) == PV_OK;
  if (!ok) fprintf(stderr, "%s: %s\n", be, pv_last_error(ctx));
  pv_plan_free(p);
  return ok;
}

/* ------------------------------------------------------------ matmul forward, Vulkan vs CPU */
/* a [ba.., M, K] or [ba.., K, M] (ta); b [bb.., K, N] or [bb.., N, K] (tb) */
static void mm_case(pv_context *ctx, const char *tile, int na, const int64_t *ba, int nb, const int64_t *bb, int64_t M,
                    int64_t K, int64_t N, int ta, int tb) {
  int64_t sa[8], sb[8];
  for (int i = 0; i < na; i++)
    sa[i] = ba[i];
  for (int i = 0; i < nb; i++)
    sb[i] = bb[i];
  sa[na] = ta ? K : M, sa[na + 1] = ta ? M : K;
  sb[nb] = tb ? N : K, sb[nb + 1] = tb ? K : N;
  pv_graph *g = pv_graph_new(ctx);
  pv_tensor *in[2] = {pv_input(g, "a", PV_F32, na + 2, sa), pv_input(g, "b", PV_F32, nb + 2, sb)};
  pv_tensor *y = pv_matmul(g, in[0], in[1], ta, tb);
  char nm[200];
  int k = snprintf(nm, sizeof nm, "matmul tile=%s a[", tile ? tile : "auto");
  for (int i = 0; i < na + 2; i++)
    k += snprintf(nm + k, sizeof nm - (size_t)k, "%s%lld", i ? "," : "", (long long)sa[i]);
  k += snprintf(nm + k, sizeof nm - (size_t)k, "] b[");
  for (int i = 0; i < nb + 2; i++)
    k += snprintf(nm + k, sizeof nm - (size_t)k, "%s%lld", i ? "," : "", (long long)sb[i]);
  snprintf(nm + k, sizeof nm - (size_t)k, "] ta=%d tb=%d", ta, tb);
  CHECK(y && pv_mark_output(y) == PV_OK, "%s: build: %s", nm, pv_graph_error(g));
  if (!y) {
    pv_graph_free(g);
    return;
  }
  int64_t n0 = pv_tensor_numel(in[0]), n1 = pv_tensor_numel(in[1]), ny = pv_tensor_numel(y);
  float *data[2] = {malloc(sizeof(float) * (size_t)(n0 ? n0 : 1)), malloc(sizeof(float) * (size_t)(n1 ? n1 : 1))};
  float *yv = malloc(sizeof(float) * (size_t)(ny ? ny : 1)), *yc = malloc(sizeof(float) * (size_t)(ny ? ny : 1));
  for (int64_t i = 0; i < n0; i++)
    data[0][i] = (float)(2 * urand() - 1);
  for (int64_t i = 0; i < n1; i++)
    data[1][i] = (float)(2 * urand() - 1);
  set_tile(tile);
  int ok = run_plan(ctx, g, "vulkan", 2, in, data, y, yv) && run_plan(ctx, g, "cpu", 2, in, data, y, yc);
  set_tile(NULL);
  CHECK(ok, "%s: run failed", nm);
  if (ok) {
    double e = rel_l2(yv, yc, ny);
    CHECK(e <= 1e-5, "%s: vulkan vs cpu rel L2 %.3g", nm, e);
  }
  free(data[0]);
  free(data[1]);
  free(yv);
  free(yc);
  pv_graph_free(g);
}

static void mm_cases(pv_context *ctx) {
  static const char *tiles[4] = {"small", "64", "128", NULL};
  /* odd sizes mixing 1, 7, 13, 65, 129; then several tiles of every variant in every dimension (K too) */
  static const int64_t sz[][3] = {{1, 7, 13}, {7, 13, 1},     {13, 65, 7},    {65, 129, 13}, {129, 1, 65},
                                  {1, 1, 1},  {129, 65, 129}, {300, 70, 290}, {64, 32, 128}, {260, 36, 132}};
  int nsz = (int)(sizeof sz / sizeof sz[0]);
  int fails0 = pv_t_fail;
  for (int t = 0; t < 4; t++)
    for (int s = 0; s < nsz; s++)
      for (int f = 0; f < 4; f++)
        mm_case(ctx, tiles[t], 0, NULL, 0, NULL, sz[s][0], sz[s][1], sz[s][2], f & 1, f >> 1);
  printf("%s matmul 2-D: %d sizes x 4 transpose combinations x 4 tile choices\n", pv_t_fail == fails0 ? "ok  " : "FAIL",
         nsz);
  /* batches: broadcast on either side, both sides, a plain-matrix b (folded into one GEMM when ta = 0) */
  static const int64_t b23[2] = {2, 3}, b13[2] = {1, 3}, b21[2] = {2, 1}, b3[1] = {3}, b1[1] = {1}, b5[1] = {5};
  fails0 = pv_t_fail;
  for (int t = 0; t < 4; t++)
    for (int f = 0; f < 4; f++) {
      int ta = f & 1, tb = f >> 1;
      mm_case(ctx, tiles[t], 2, b23, 1, b3, 13, 65, 7, ta, tb);
      mm_case(ctx, tiles[t], 2, b21, 2, b13, 65, 13, 70, ta, tb);
      mm_case(ctx, tiles[t], 1, b5, 0, NULL, 33, 20, 40, ta, tb);
      mm_case(ctx, tiles[t], 1, b3, 1, b1, 7, 8, 129, ta, tb);
      mm_case(ctx, tiles[t], 0, NULL, 1, b3, 130, 12, 9, ta, tb);
    }
  printf("%s matmul batched and broadcast batches\n", pv_t_fail == fails0 ? "ok  " : "FAIL");
  /* split K: forced (ranges of 16-multiples, a short last one, odd K; batched) and automatic (few tiles, long K) */
  fails0 = pv_t_fail;
  static const char *splits[3] = {"2", "3", "7"};
  for (int sp = 0; sp < 3; sp++) {
    setenv("PIVOT_VK_GEMM_SPLITK", splits[sp], 1);
    for (int t = 0; t < 3; t++)
      for (int f = 0; f < 4; f++) {
        mm_case(ctx, tiles[t], 0, NULL, 0, NULL, 65, 129, 70, f & 1, f >> 1);
        mm_case(ctx, tiles[t], 1, b3, 1, b1, 13, 100, 36, f & 1, f >> 1);
      }
  }
  unsetenv("PIVOT_VK_GEMM_SPLITK");
  for (int f = 0; f < 4; f++)
    mm_case(ctx, NULL, 0, NULL, 0, NULL, 64, 2100, 40, f & 1, f >> 1);
  printf("%s matmul split K\n", pv_t_fail == fails0 ? "ok  " : "FAIL");
  /* more batches than one grid dimension holds (the shader loops over z) */
  static const int64_t bbig[1] = {66000};
  fails0 = pv_t_fail;
  mm_case(ctx, "small", 1, bbig, 1, bbig, 2, 3, 2, 0, 1);
  printf("%s matmul 66000 batches\n", pv_t_fail == fails0 ? "ok  " : "FAIL");
}

/* gradients through the harness (Vulkan vs CPU, forward and backward) with each tile variant */
static pv_tensor *b_mm(pv_graph *g, pv_tensor **x, void *u) {
  int f = (int)(intptr_t)u;
  return pv_matmul(g, x[0], x[1], f & 1, (f >> 1) & 1);
}
#define IN(nd, ...)                                                                                                    \
  { nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 1, 0 }
static void mm_grad_cases(void) {
  static const char *tiles[3] = {"small", "64", "128"};
  oc_opts o = {0};
  o.fd_max = 6;
  for (int t = 0; t < 3; t++) {
    set_tile(tiles[t]);
    char nm[96];
    snprintf(nm, sizeof nm, "matmul grad tile=%s [2,65,13]x[13,70]", tiles[t]);
    oc_input x[2] = {IN(3, 2, 65, 13), IN(2, 13, 70)};
    oc_check(nm, 2, x, b_mm, (void *)(intptr_t)0, &o);
    snprintf(nm, sizeof nm, "matmul grad tile=%s [3,13,66]^T x [3,7,13]^T", tiles[t]);
    oc_input z[2] = {IN(3, 3, 13, 66), IN(3, 3, 7, 13)};
    oc_check(nm, 2, z, b_mm, (void *)(intptr_t)3, &o);
  }
  set_tile(NULL);
}

/* ------------------------------------------------------------ embedding and scatter_add */
static void emb_range_cases(void) {
  int64_t bad[3] = {4, -1, (int64_t)1 << 32};
  for (int op = 0; op < 2; op++)
    for (int k = 0; k < 3; k++)
      for (int dt = 0; dt < 2; dt++) {
        if (dt == 1 && k == 2) continue; /* not an i32 */
        pv_context *ctx = pv_context_new();
        pv_graph *g = pv_graph_new(ctx);
        int64_t ws[2] = {op ? 3 : 4, 3}, is[1] = {3}; /* embedding: weight [4, 3]; scatter_add: dy [3, 3], V = 4 */
        pv_tensor *w = pv_input(g, "w", PV_F32, 2, ws), *ids = pv_input(g, "ids", dt ? PV_I32 : PV_I64, 1, is);
        pv_tensor *y = op ? pv_scatter_add(g, w, ids, 4) : pv_embedding(g, w, ids);
        pv_mark_output(y);
        pv_plan *p = NULL;
        pv_plan_options o = {"vulkan", 0, -1, 0};
        float wv[12], out[12];
        for (int i = 0; i < 12; i++)
          wv[i] = (float)(i + 1);
        int64_t iv[3] = {1, bad[k], 3};
        int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, w, PV_F32, wv, pv_tensor_numel(w)) == PV_OK &&
                 pv_plan_write(p, ids, PV_I64, iv, 3) == PV_OK;
        const char *nm = op ? "scatter_add" : "embedding";
        if (!ok && dt == 1 && k == 2) ok = 1; /* the i32 conversion may refuse 2^32 */
        CHECK(ok, "%s range: setup: %s", nm, pv_last_error(ctx));
        if (ok && p) {
          pv_status st = pv_plan_run(p);
          const char *e = pv_last_error(ctx);
          CHECK(st == PV_ERR_INVALID && strstr(e, nm), "%s id %lld (%s) on vulkan: status %s, error '%s'", nm,
                (long long)bad[k], dt ? "i32" : "i64", pv_status_name(st), e);
          /* the valid rows are still computed, the bad one is zero */
          if (pv_plan_read(p, y, PV_F32, out, pv_tensor_numel(y)) == PV_OK) {
            int good = 1;
            if (!op)
              for (int d = 0; d < 3; d++)
                good &= out[d] == wv[3 + d] && out[3 + d] == 0 && out[6 + d] == wv[9 + d];
            else
              for (int d = 0; d < 3; d++)
                good &= out[d] == 0 && out[3 + d] == wv[d] && out[6 + d] == 0 && out[9 + d] == wv[6 + d];
            CHECK(good, "%s id %lld (%s) on vulkan: wrong values around the bad id", nm, (long long)bad[k],
                  dt ? "i32" : "i64");
          }
        }
        pv_plan_free(p);
        pv_graph_free(g);
        pv_context_free(ctx);
      }
  printf("ok   embedding / scatter_add ids out of range on vulkan\n");
}

static void scatter_exact_cases(pv_context *ctx) {
  enum { N = 3000, D = 33, V = 50 };
  for (int dt = 0; dt < 2; dt++) {
    pv_graph *g = pv_graph_new(ctx);
    int64_t ds[2] = {N, D}, is[1] = {N};
    pv_tensor *dy = pv_input(g, "dy", PV_F32, 2, ds), *ids = pv_input(g, "ids", dt ? PV_I32 : PV_I64, 1, is);
    pv_tensor *y = pv_scatter_add(g, dy, ids, V);
    pv_mark_output(y);
    static float dv[N * D], yv[V * D], yv2[V * D], yc[V * D];
    static int64_t iv[N];
    for (int i = 0; i < N * D; i++)
      dv[i] = (float)(2 * urand() - 1) * (float)(1 + 1000 * (i % 7 == 0));
    for (int i = 0; i < N; i++)
      iv[i] = urand() < 0.6 ? 0 : (int64_t)(urand() * (V - 5)); /* row 0: most ids */
    int ok = 1;
    const char *be[3] = {"vulkan", "vulkan", "cpu"};
    float *out[3] = {yv, yv2, yc};
    for (int b = 0; b < 3 && ok; b++) {
      pv_plan *p = NULL;
      pv_plan_options o = {be[b], 0, -1, 0};
      ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, dy, PV_F32, dv, N * D) == PV_OK &&
           pv_plan_write(p, ids, PV_I64, iv, N) == PV_OK && pv_plan_run(p) == PV_OK &&
           pv_plan_read(p, y, PV_F32, out[b], V * D) == PV_OK;
      CHECK(ok, "scatter_add exact (%s): %s", be[b], pv_last_error(ctx));
      pv_plan_free(p);
    }
    if (ok) {
      CHECK(!memcmp(yv, yc, sizeof yv), "scatter_add %s: vulkan not bitwise equal to cpu (rel %.3g)",
            dt ? "i32" : "i64", rel_l2(yv, yc, V * D));
      CHECK(!memcmp(yv, yv2, sizeof yv), "scatter_add: two vulkan plans differ");
    }
    pv_graph_free(g);
  }
  printf("ok   scatter_add skewed ids: vulkan bitwise equal to cpu\n");
}

/* ------------------------------------------------------------ adamw and assign */
static void adamw_cases(void) {
  enum { NG = 3, STEPS = 4 };
  int64_t n[NG] = {1000, 37, 5};
  double ls[NG] = {1.0, 0.37, 2.0}, wd[NG] = {0.1, 0.0, 0.013};
  float b1s[2] = {0.9f, 0.3f}; /* lerp weight 0.1 (small branch) and 0.7 */
  for (int bi = 0; bi < 2; bi++) {
    float *res[2][NG][3];
    for (int be = 0; be < 2; be++) {
      pv_context *ctx = pv_context_new();
      pv_graph *g = pv_graph_new(ctx);
      int64_t six = 6;
      pv_tensor *H = pv_input(g, "hyper", PV_F32, 1, &six), *G[NG];
      pv_var *vp[NG], *vm[NG], *vv[NG];
      for (int k = 0; k < NG; k++) {
        char nm[32];
        snprintf(nm, sizeof nm, "p%d", k);
        pv_var_new(ctx, nm, PV_F32, 1, &n[k], &vp[k]);
        snprintf(nm, sizeof nm, "p%d.m", k);
        pv_var_new(ctx, nm, PV_F32, 1, &n[k], &vm[k]);
        snprintf(nm, sizeof nm, "p%d.v", k);
        pv_var_new(ctx, nm, PV_F32, 1, &n[k], &vv[k]);
        float *p0 = malloc(sizeof(float) * (size_t)n[k]);
        for (int64_t i = 0; i < n[k]; i++)
          p0[i] = (float)cos(0.9 * (double)i + k);
        pv_var_write(vp[k], PV_F32, p0, n[k]);
        free(p0);
        pv_var_fill(vm[k], 0);
        pv_var_fill(vv[k], 0);
        G[k] = pv_input(g, "grad", PV_F32, 1, &n[k]);
        pv_tensor *tok =
            pv_adamw(g, pv_use_var(g, vp[k]), G[k], pv_use_var(g, vm[k]), pv_use_var(g, vv[k]), H, ls[k], wd[k]);
        if (k == 0) pv_mark_output(tok);
      }
      pv_plan *p = NULL;
      pv_plan_options o = {be ? "cpu" : "vulkan", 0, -1, 0};
      int ok = pv_plan_compile(g, &o, &p) == PV_OK;
      for (int step = 1; ok && step <= STEPS; step++) {
        float h[6] = {0.05f, b1s[bi], 0.999f, 1e-8f, 0, 0};
        h[4] = (float)(1.0 - pow((double)h[1], step));
        h[5] = (float)(1.0 - pow((double)h[2], step));
        ok &= pv_plan_write(p, H, PV_F32, h, 6) == PV_OK;
        for (int k = 0; k < NG; k++) {
          float *gv = malloc(sizeof(float) * (size_t)n[k]);
          for (int64_t i = 0; i < n[k]; i++)
            gv[i] = (float)(sin(1.3 * (double)i + 0.7 * step + k) * (k ? 0.01 : 2));
          ok &= pv_plan_write(p, G[k], PV_F32, gv, n[k]) == PV_OK;
          free(gv);
        }
        ok &= pv_plan_run(p) == PV_OK;
      }
      CHECK(ok, "adamw (%s): %s", o.backend, pv_last_error(ctx));
      for (int k = 0; k < NG; k++) {
        pv_var *vs[3] = {vp[k], vm[k], vv[k]};
        for (int j = 0; j < 3; j++) {
          res[be][k][j] = calloc((size_t)n[k], sizeof(float));
          pv_var_read(vs[j], PV_F32, res[be][k][j], n[k]);
        }
      }
      pv_plan_free(p);
      pv_graph_free(g);
      pv_context_free(ctx);
    }
    int exact = 1;
    for (int k = 0; k < NG; k++)
      for (int j = 0; j < 3; j++) {
        double e = 0, mx = 0;
        for (int64_t i = 0; i < n[k]; i++)
          mx = fmax(mx, fabs(res[1][k][j][i]));
        for (int64_t i = 0; i < n[k]; i++)
          e = fmax(e, fabs((double)res[0][k][j][i] - res[1][k][j][i]) / fmax(fabs(res[1][k][j][i]), 1e-3 * mx + 1e-30));
        exact &= !memcmp(res[0][k][j], res[1][k][j], sizeof(float) * (size_t)n[k]);
        CHECK(e <= 1e-6, "adamw beta1=%g group %d %s: vulkan vs cpu max rel %.3g", b1s[bi], k,
              j == 0   ? "param"
              : j == 1 ? "m"
                       : "v",
              e);
        free(res[0][k][j]);
        free(res[1][k][j]);
      }
    printf("ok   adamw beta1=%g on vulkan vs cpu (%s)\n", b1s[bi], exact ? "bitwise equal" : "within 1e-6");
  }
}

static void assign_cases(void) {
  enum { N = 700 };
  int64_t sh[1] = {N}, one = 1;
  float got[2][3][N];
  for (int be = 0; be < 2; be++) {
    pv_context *ctx = pv_context_new();
    pv_var *va, *vb, *vc;
    pv_var_new(ctx, "a", PV_F32, 1, sh, &va);
    pv_var_new(ctx, "b", PV_F32, 1, sh, &vb);
    pv_var_new(ctx, "c", PV_F32, 1, sh, &vc);
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *val = pv_input(g, "value", PV_F32, 1, sh), *fac = pv_input(g, "factor", PV_F32, 1, &one);
    pv_tensor *A = pv_use_var(g, va), *B = pv_use_var(g, vb), *C = pv_use_var(g, vc);
    pv_assign(g, A, val, NULL, 0);
    pv_assign(g, B, val, fac, 1);
    pv_assign(g, C, pv_scale(g, A, 3), fac, 0);
    pv_var_fill(va, 3);
    pv_var_fill(vb, 1.25);
    pv_var_fill(vc, 0);
    float x[N], f = -0.3f;
    for (int i = 0; i < N; i++)
      x[i] = (float)sin(0.1 * i);
    pv_plan_options o = {be ? "cpu" : "vulkan", 0, -1, 0};
    pv_plan *p = NULL;
    int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, val, PV_F32, x, N) == PV_OK &&
             pv_plan_write(p, fac, PV_F32, &f, 1) == PV_OK && pv_plan_run(p) == PV_OK && pv_plan_run(p) == PV_OK;
    CHECK(ok, "assign (%s): %s", o.backend, pv_last_error(ctx));
    pv_var_read(va, PV_F32, got[be][0], N);
    pv_var_read(vb, PV_F32, got[be][1], N);
    pv_var_read(vc, PV_F32, got[be][2], N);
    pv_plan_free(p);
    pv_graph_free(g);
    pv_context_free(ctx);
  }
  CHECK(!memcmp(got[0], got[1], sizeof got[0]), "assign: vulkan and cpu differ");
  printf("ok   assign set / accumulate / factor on vulkan: bitwise equal to cpu\n");
}

int main(void) {
  pv_context *ctx = pv_context_new();
  if (!pv_t_vulkan_required(ctx)) {
    pv_context_free(ctx);
    return pv_t_finish();
  }
  mm_cases(ctx);
  scatter_exact_cases(ctx);
  if (pv__vk_validation_errors) CHECK(pv__vk_validation_errors(ctx) == 0, "validation errors in the matmul cases");
  pv_context_free(ctx);
  mm_grad_cases();
  emb_range_cases();
  adamw_cases();
  assign_cases();
  pv_t_check_validation();
  return pv_t_finish();
}
