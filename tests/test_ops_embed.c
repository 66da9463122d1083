/* Op tests: rope, embedding / scatter_add, patchify / unpatchify / patch_embed. */
#include "opcheck.h"
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Builders defined in ops/ but not (yet) declared in pivot.h. */

#define IN(nd, ...) {nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 1, 0}
#define IDS(dt, lo, hi, nd, ...) {nd, {__VA_ARGS__}, OC_IDS, lo, hi, 0, dt}

/* ------------------------------------------------------------ rope */
typedef struct {
  double theta;
  int rot;
} rope_ud;
static pv_tensor *b_rope(pv_graph *g, pv_tensor **x, void *u) {
  rope_ud *r = u;
  return pv_rope(g, x[0], x[1], r->theta, r->rot);
}
static pv_tensor *b_rope_inplace(pv_graph *g, pv_tensor **x, void *u) { /* the scaled copy dies at rope */
  rope_ud *r = u;
  return pv_rope(g, pv_scale(g, x[0], 2.0), x[1], r->theta, r->rot);
}

static void rope_checks(void) {
  rope_ud d1e4 = {1e4, 0}, d1e6 = {1e6, 0}, p1e4 = {1e4, 4}, p1e6 = {1e6, 6};
  oc_input a[2] = {IN(4, 2, 5, 3, 8), IDS(PV_I64, 0, 64, 2, 2, 5)};
  oc_check("rope pos [B,T] i64 full 1e4", 2, a, b_rope, &d1e4, NULL);
  oc_check("rope pos [B,T] i64 full 1e6", 2, a, b_rope, &d1e6, NULL);
  oc_check("rope pos [B,T] i64 partial 1e4", 2, a, b_rope, &p1e4, NULL);
  oc_input b[2] = {IN(4, 3, 7, 5, 10), IDS(PV_I32, 0, 64, 1, 7)};
  oc_check("rope pos [T] i32 full 1e6", 2, b, b_rope, &d1e6, NULL);
  oc_check("rope pos [T] i32 partial 1e6", 2, b, b_rope, &p1e6, NULL);
  oc_check("rope pos [T] i32 partial 1e4", 2, b, b_rope, &p1e4, NULL);
  oc_input c[2] = {IN(4, 1, 3, 1, 2), IDS(PV_I32, 0, 16, 2, 1, 3)};
  oc_check("rope D=2", 2, c, b_rope, &d1e4, NULL);
  oc_check("rope in place, partial", 2, b, b_rope_inplace, &p1e6, NULL);
  /* long positions: the CPU kernel computes angles in float32 like transformers (error ~ pos * 2^-24) */
  oc_input d[2] = {IN(4, 1, 9, 3, 16), IDS(PV_I64, 0, 4096, 2, 1, 9)};
  oc_opts lo = {1e-4, 0, 1e-4, 0, 0, 0};
  oc_check("rope long positions", 2, d, b_rope, &d1e6, &lo);

  /* relative rotation: shifting every position by 5 changes q and k, not q_i . k_j */
  enum { T = 12, H = 3, D = 8 };
  int64_t xs[4] = {1, T, H, D}, ps[1] = {T};
  const char *backends[2] = {"cpu", "ref"};
  float q[T * H * D], k[T * H * D];
  for (int i = 0; i < T * H * D; i++) {
    q[i] = (float)sin(0.37 * i + 0.1);
    k[i] = (float)cos(0.23 * i - 0.4);
  }
  for (int be = 0; be < 2; be++) {
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *qi = pv_input(g, "q", PV_F32, 4, xs), *ki = pv_input(g, "k", PV_F32, 4, xs);
    pv_tensor *pos = pv_input(g, "pos", PV_I64, 1, ps);
    pv_tensor *qr = pv_rope(g, qi, pos, 1e4, 0), *kr = pv_rope(g, ki, pos, 1e4, 0);
    pv_mark_output(qr);
    pv_mark_output(kr);
    pv_plan *p = NULL;
    pv_plan_options o = {backends[be], 0, -1, 0};
    int ok = pv_graph_status(g) == PV_OK && pv_plan_compile(g, &o, &p) == PV_OK;
    CHECK(ok, "rope relative (%s): build: %s %s", backends[be], pv_graph_error(g), pv_last_error(ctx));
    double out[2][2][T * H * D]; /* [shift][q/k] */
    for (int s = 0; ok && s < 2; s++) {
      int64_t pv[T];
      for (int i = 0; i < T; i++) pv[i] = i + 5 * s;
      ok = pv_plan_write(p, qi, PV_F32, q, T * H * D) == PV_OK && pv_plan_write(p, ki, PV_F32, k, T * H * D) == PV_OK &&
           pv_plan_write(p, pos, PV_I64, pv, T) == PV_OK && pv_plan_run(p) == PV_OK &&
           pv_plan_read(p, qr, PV_F64, out[s][0], T * H * D) == PV_OK &&
           pv_plan_read(p, kr, PV_F64, out[s][1], T * H * D) == PV_OK;
      CHECK(ok, "rope relative (%s): run: %s", backends[be], pv_last_error(ctx));
    }
    if (ok) {
      double dq = 0, dk = 0, derr = 0, dmax = 0;
      for (int i = 0; i < T * H * D; i++) {
        dq = fmax(dq, fabs(out[0][0][i] - out[1][0][i]));
        dk = fmax(dk, fabs(out[0][1][i] - out[1][1][i]));
      }
      for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++)
          for (int j = 0; j < T; j++) {
            double s0 = 0, s1 = 0;
            for (int c = 0; c < D; c++) {
              int qi_ = (i * H + h) * D + c, kj = (j * H + h) * D + c;
              s0 += out[0][0][qi_] * out[0][1][kj];
              s1 += out[1][0][qi_] * out[1][1][kj];
            }
            derr = fmax(derr, fabs(s0 - s1));
            dmax = fmax(dmax, fabs(s0));
          }
      double tol = be == 0 ? 2e-5 : 1e-12;
      CHECK(dq > 0.1 && dk > 0.1, "rope relative (%s): shifted positions should change q and k (%g, %g)", backends[be],
            dq, dk);
      CHECK(derr <= tol * (dmax + 1), "rope relative (%s): q.k changed by %g (max |q.k| %g)", backends[be], derr, dmax);
    }
    pv_plan_free(p);
    pv_graph_free(g);
    pv_context_free(ctx);
  }

  /* shape errors name the op and the shapes */
  pv_context *ctx = pv_context_new();
  int64_t x4[4] = {2, 5, 3, 8}, bad_pos[2] = {5, 2};
  struct {
    int rot;
    int pos_bad;
    const char *want;
  } cases[3] = {{5, 0, "rot_dims 5"}, {10, 0, "[2, 5, 3, 8]"}, {0, 1, "[5, 2]"}};
  for (int c2 = 0; c2 < 3; c2++) {
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *x = pv_input(g, "x", PV_F32, 4, x4);
    pv_tensor *pos = pv_input(g, "pos", PV_I32, 2, cases[c2].pos_bad ? bad_pos : x4);
    pv_tensor *y = pv_rope(g, x, pos, 1e4, cases[c2].rot);
    const char *e = pv_graph_error(g);
    CHECK(y == NULL && pv_graph_status(g) == PV_ERR_SHAPE && strstr(e, "rope") && strstr(e, cases[c2].want),
          "rope error case %d: got '%s'", c2, e);
    pv_graph_free(g);
  }
  pv_context_free(ctx);
}

/* ------------------------------------------------------------ embedding and scatter_add */
static pv_tensor *b_embedding(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_embedding(g, x[0], x[1]);
}
static pv_tensor *b_scatter(pv_graph *g, pv_tensor **x, void *u) {
  return pv_scatter_add(g, x[0], x[1], (int64_t)(intptr_t)u);
}
static pv_tensor *b_emb_twice(pv_graph *g, pv_tensor **x, void *u) { /* weight used by two lookups */
  (void)u;
  return pv_mul(g, pv_embedding(g, x[0], x[1]), pv_embedding(g, x[0], x[2]));
}

static void embedding_checks(void) {
  /* 21 ids over 5 rows: rows are hit several times, their gradients accumulate */
  oc_input e32[2] = {IN(2, 5, 6), IDS(PV_I32, 0, 5, 2, 3, 7)};
  oc_input e64[2] = {IN(2, 5, 6), IDS(PV_I64, 0, 5, 2, 3, 7)};
  oc_check("embedding i32 repeated ids", 2, e32, b_embedding, NULL, NULL);
  oc_check("embedding i64 repeated ids", 2, e64, b_embedding, NULL, NULL);
  oc_input e1[2] = {IN(2, 300, 4), IDS(PV_I64, 0, 300, 1, 11)};
  oc_check("embedding 1-d ids, large vocab", 2, e1, b_embedding, NULL, NULL);
  oc_input e2[3] = {IN(2, 4, 3), IDS(PV_I32, 0, 4, 1, 9), IDS(PV_I64, 0, 4, 1, 9)};
  oc_check("embedding weight shared by two lookups", 3, e2, b_emb_twice, NULL, NULL);
  oc_input s32[2] = {IN(3, 3, 7, 6), IDS(PV_I32, 0, 5, 2, 3, 7)};
  oc_input s64[2] = {IN(2, 40, 3), IDS(PV_I64, 0, 9, 1, 40)};
  oc_check("scatter_add i32", 2, s32, b_scatter, (void *)(intptr_t)5, NULL);
  oc_check("scatter_add i64 (rows never hit stay 0)", 2, s64, b_scatter, (void *)(intptr_t)12, NULL);

  /* scatter_add gives bit-identical results for 1 and 3 threads (fixed accumulation order) */
  {
    enum { N = 257, V = 7, D = 5 };
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    int64_t ds[2] = {N, D}, is[1] = {N};
    pv_tensor *dy = pv_input(g, "dy", PV_F32, 2, ds), *ids = pv_input(g, "ids", PV_I32, 1, is);
    pv_tensor *y = pv_scatter_add(g, dy, ids, V);
    pv_mark_output(y);
    static float dv[N * D];
    int32_t iv[N];
    for (int i = 0; i < N * D; i++) dv[i] = (float)sin(1.7 * i) * (i % 3 ? 1e-3f : 1e3f);
    for (int i = 0; i < N; i++) iv[i] = (i * 5 + i / 3) % V;
    float out[2][V * D];
    for (int r = 0; r < 2; r++) {
      pv_plan *p = NULL;
      pv_plan_options o = {"cpu", r ? 3 : 1, -1, 0};
      int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, dy, PV_F32, dv, N * D) == PV_OK &&
               pv_plan_write(p, ids, PV_I32, iv, N) == PV_OK && pv_plan_run(p) == PV_OK &&
               pv_plan_read(p, y, PV_F32, out[r], V * D) == PV_OK;
      CHECK(ok, "scatter_add threads: %s", pv_last_error(ctx));
      pv_plan_free(p);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "scatter_add: results differ between 1 and 3 threads");
    pv_graph_free(g);
    pv_context_free(ctx);
  }

  /* an out-of-range id is a run error naming the op; the other rows are still looked up */
  const char *backends[2] = {"cpu", "ref"};
  int64_t bad[2] = {4, -1};
  for (int be = 0; be < 2; be++)
    for (int k = 0; k < 2; k++) {
      pv_context *ctx = pv_context_new();
      pv_graph *g = pv_graph_new(ctx);
      int64_t ws[2] = {4, 3}, is[1] = {3};
      pv_tensor *w = pv_input(g, "w", PV_F32, 2, ws), *ids = pv_input(g, "ids", PV_I64, 1, is);
      pv_tensor *y = pv_embedding(g, w, ids);
      pv_mark_output(y);
      pv_plan *p = NULL;
      pv_plan_options o = {backends[be], 0, -1, 0};
      float wv[12];
      for (int i = 0; i < 12; i++) wv[i] = (float)(i + 1);
      int64_t iv[3] = {1, bad[k], 3};
      int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, w, PV_F32, wv, 12) == PV_OK &&
               pv_plan_write(p, ids, PV_I64, iv, 3) == PV_OK;
      CHECK(ok, "embedding range (%s): setup: %s", backends[be], pv_last_error(ctx));
      if (ok) {
        pv_status st = pv_plan_run(p);
        const char *e = pv_last_error(ctx);
        CHECK(st == PV_ERR_INVALID && strstr(e, "embedding"), "embedding id %lld (%s): status %s, error '%s'",
              (long long)bad[k], backends[be], pv_status_name(st), e);
      }
      pv_plan_free(p);
      pv_graph_free(g);
      pv_context_free(ctx);
    }

  /* shape errors */
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t w3[3] = {4, 3, 2}, is[1] = {3};
  pv_tensor *y = pv_embedding(g, pv_input(g, "w", PV_F32, 3, w3), pv_input(g, "ids", PV_I32, 1, is));
  CHECK(!y && strstr(pv_graph_error(g), "embedding") && strstr(pv_graph_error(g), "[4, 3, 2]"),
        "embedding 3-d weight: '%s'", pv_graph_error(g));
  pv_graph_free(g);
  g = pv_graph_new(ctx);
  int64_t w2[2] = {4, 3};
  y = pv_embedding(g, pv_input(g, "w", PV_F32, 2, w2), pv_input(g, "ids", PV_F32, 1, is));
  CHECK(!y && pv_graph_status(g) == PV_ERR_DTYPE && strstr(pv_graph_error(g), "embedding"), "embedding f32 ids: '%s'",
        pv_graph_error(g));
  pv_graph_free(g);
  pv_context_free(ctx);
}

/* ------------------------------------------------------------ patches */
static pv_tensor *b_patchify(pv_graph *g, pv_tensor **x, void *u) { return pv_patchify(g, x[0], (int)(intptr_t)u); }
static pv_tensor *b_unpatchify(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_unpatchify(g, x[0], 4, 8, 12);
}
static pv_tensor *b_patch_roundtrip(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_unpatchify(g, pv_patchify(g, x[0], 2), 2, 6, 4);
}
static pv_tensor *b_patch_embed(pv_graph *g, pv_tensor **x, void *u) {
  return pv_patch_embed(g, x[0], x[1], u ? x[2] : NULL, 4);
}

static void patch_checks(void) {
  oc_input pa[1] = {IN(4, 2, 3, 8, 12)};
  oc_check("patchify P=4", 1, pa, b_patchify, (void *)(intptr_t)4, NULL);
  oc_check("patchify P=1", 1, pa, b_patchify, (void *)(intptr_t)1, NULL);
  oc_input pb[1] = {IN(4, 1, 2, 5, 5)};
  oc_check("patchify P=5 single patch", 1, pb, b_patchify, (void *)(intptr_t)5, NULL);
  oc_input up[1] = {IN(3, 2, 6, 48)};
  oc_check("unpatchify P=4", 1, up, b_unpatchify, NULL, NULL);
  oc_input rt[1] = {IN(4, 2, 3, 6, 4)};
  oc_check("patchify -> unpatchify", 1, rt, b_patch_roundtrip, NULL, NULL);

  /* exact values: layout and the round trip */
  {
    enum { B = 2, C = 3, H = 6, W = 4, P = 2, NW = W / P, F = C * P * P, N = (H / P) * (W / P) };
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    int64_t xs[4] = {B, C, H, W};
    pv_tensor *x = pv_input(g, "x", PV_F32, 4, xs);
    pv_tensor *pt = pv_patchify(g, x, P), *back = pv_unpatchify(g, pt, P, H, W);
    pv_mark_output(pt);
    pv_mark_output(back);
    float xv[B * C * H * W], pv[B * N * F], bv[B * C * H * W];
    for (int i = 0; i < B * C * H * W; i++) xv[i] = (float)i;
    const char *backends[2] = {"cpu", "ref"};
    for (int be = 0; be < 2; be++) {
      pv_plan *p = NULL;
      pv_plan_options o = {backends[be], 0, -1, 0};
      int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, x, PV_F32, xv, B * C * H * W) == PV_OK &&
               pv_plan_run(p) == PV_OK && pv_plan_read(p, pt, PV_F32, pv, B * N * F) == PV_OK &&
               pv_plan_read(p, back, PV_F32, bv, B * C * H * W) == PV_OK;
      CHECK(ok, "patchify values (%s): %s", backends[be], pv_last_error(ctx));
      int bad = 0;
      for (int b = 0; ok && b < B; b++)
        for (int n = 0; n < N; n++)
          for (int c = 0; c < C; c++)
            for (int ky = 0; ky < P; ky++)
              for (int kx = 0; kx < P; kx++) {
                int yy = (n / NW) * P + ky, xx = (n % NW) * P + kx;
                bad += pv[(b * N + n) * F + (c * P + ky) * P + kx] != xv[((b * C + c) * H + yy) * W + xx];
              }
      CHECK(ok && !bad, "patchify (%s): %d elements in the wrong place", backends[be], bad);
      CHECK(ok && memcmp(xv, bv, sizeof xv) == 0, "unpatchify(patchify(x)) != x (%s)", backends[be]);
      pv_plan_free(p);
    }
    pv_graph_free(g);
    pv_context_free(ctx);
  }

  /* errors name the op and the shape */
  {
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    int64_t xs[4] = {1, 3, 10, 8};
    pv_tensor *y = pv_patchify(g, pv_input(g, "x", PV_F32, 4, xs), 4);
    const char *e = pv_graph_error(g);
    CHECK(!y && pv_graph_status(g) == PV_ERR_SHAPE && strstr(e, "patchify") && strstr(e, "[1, 3, 10, 8]"),
          "patchify H %% P: '%s'", e);
    pv_graph_free(g);
    g = pv_graph_new(ctx);
    int64_t ws[4] = {5, 3, 4, 4}, x2[4] = {1, 3, 8, 9};
    y = pv_patch_embed(g, pv_input(g, "x", PV_F32, 4, x2), pv_input(g, "w", PV_F32, 4, ws), NULL, 4);
    e = pv_graph_error(g);
    CHECK(!y && pv_graph_status(g) == PV_ERR_SHAPE && strstr(e, "patchify") && strstr(e, "[1, 3, 8, 9]"),
          "patch_embed W %% P: '%s'", e);
    pv_graph_free(g);
    g = pv_graph_new(ctx);
    int64_t wb[4] = {5, 2, 4, 4}, x3[4] = {1, 3, 8, 8};
    y = pv_patch_embed(g, pv_input(g, "x", PV_F32, 4, x3), pv_input(g, "w", PV_F32, 4, wb), NULL, 4);
    e = pv_graph_error(g);
    CHECK(!y && pv_graph_status(g) == PV_ERR_SHAPE && strstr(e, "patch_embed") && strstr(e, "[5, 2, 4, 4]"),
          "patch_embed channels: '%s'", e);
    pv_graph_free(g);
    pv_context_free(ctx);
  }

  /* patch_embed (needs pv_matmul) */
  oc_input pe[3] = {IN(4, 2, 3, 8, 12), IN(4, 5, 3, 4, 4), IN(1, 5)};
  oc_check("patch_embed with bias", 3, pe, b_patch_embed, (void *)1, NULL);
  oc_check("patch_embed without bias", 2, pe, b_patch_embed, NULL, NULL);

  /* patch_embed equals a direct stride-P convolution */
  {
    enum { B = 2, C = 3, H = 8, W = 12, P = 4, D = 5, NH = H / P, NW = W / P };
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    int64_t xs[4] = {B, C, H, W}, ws[4] = {D, C, P, P}, bs[1] = {D};
    pv_tensor *x = pv_input(g, "x", PV_F32, 4, xs), *w = pv_input(g, "w", PV_F32, 4, ws);
    pv_tensor *b = pv_input(g, "b", PV_F32, 1, bs);
    pv_tensor *y = pv_patch_embed(g, x, w, b, P);
    pv_plan *p = NULL;
    int ok = y && pv_mark_output(y) == PV_OK && pv_plan_compile(g, NULL, &p) == PV_OK;
    CHECK(ok, "patch_embed conv: build: %s %s", pv_graph_error(g), pv_last_error(ctx));
    if (ok) {
      float xv[B * C * H * W], wv[D * C * P * P], bv[D], yv[B * NH * NW * D];
      for (int i = 0; i < B * C * H * W; i++) xv[i] = (float)sin(0.3 * i);
      for (int i = 0; i < D * C * P * P; i++) wv[i] = (float)cos(0.7 * i);
      for (int i = 0; i < D; i++) bv[i] = 0.5f * (float)i;
      ok = pv_plan_write(p, x, PV_F32, xv, B * C * H * W) == PV_OK &&
           pv_plan_write(p, w, PV_F32, wv, D * C * P * P) == PV_OK && pv_plan_write(p, b, PV_F32, bv, D) == PV_OK &&
           pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, yv, B * NH * NW * D) == PV_OK;
      CHECK(ok, "patch_embed conv: run: %s", pv_last_error(ctx));
      double err = 0;
      for (int bb = 0; ok && bb < B; bb++)
        for (int oy = 0; oy < NH; oy++)
          for (int ox = 0; ox < NW; ox++)
            for (int d = 0; d < D; d++) {
              double s = bv[d];
              for (int c = 0; c < C; c++)
                for (int ky = 0; ky < P; ky++)
                  for (int kx = 0; kx < P; kx++)
                    s += (double)wv[((d * C + c) * P + ky) * P + kx] *
                         xv[((bb * C + c) * H + oy * P + ky) * W + ox * P + kx];
              err = fmax(err, fabs(s - yv[((bb * NH + oy) * NW + ox) * D + d]));
            }
      CHECK(ok && err < 1e-4, "patch_embed vs direct convolution: max err %g", err);
    }
    pv_plan_free(p);
    pv_graph_free(g);
    pv_context_free(ctx);
  }
}

int main(void) {
  rope_checks();
  embedding_checks();
  patch_checks();
  return pv_t_finish();
}
