/* Vulkan backend tests (lavapipe in CI: small shapes, but larger than one workgroup in every dimension and beyond
 * 65535 workgroups once). Needs Vulkan: without it the test prints why and fails, unless PIVOT_ALLOW_NO_VULKAN=1.
 * Runs with the Khronos validation layer (PIVOT_VK_VALIDATION=1) and requires zero validation errors.
 *  - Vulkan vs CPU for leaf, elementwise, reduction and shape ops, dtypes f32/f16/bf16/i32/i64, forward and backward;
 *  - determinism (a second run is bitwise equal), replay (one plan run 3 times == 3 fresh plans), re-recording
 *    (PIVOT_VK_NO_REPLAY), split submits (PIVOT_VK_SUBMIT_DISPATCHES), profiling;
 *  - variables: uploads when the host copy is newer, device-newer copies read back by pv_var_read and CPU plans;
 *  - device selection errors and the "no Vulkan" path (PIVOT_VK_LOADER=/nonexistent/...) next to a working CPU. */
#include "pivot.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* internal hooks (runtime/vulkan/vk.h); weak so the test links in a build without Vulkan */
pv_status pv__vk_var_device_write(pv_var *v, const void *data) __attribute__((weak));

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return (double)(rs >> 11) / 9007199254740992.0;
}
static double nrand(void) {
  double u = urand(), v = urand();
  if (u < 1e-12) u = 1e-12;
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int is_int(pv_dtype t) { return t == PV_I32 || t == PV_I64; }

/* ------------------------------------------------------------ Vulkan vs CPU on one graph */
#define MAXT 16
typedef struct gc {
  pv_graph *g;
  pv_tensor *in[MAXT];
  int nin;
  pv_tensor *out[MAXT];
  int nout;
  double lo, hi; /* input range (uniform) when hi > lo, else normal */
} gc;

static pv_tensor *add_in(gc *c, const char *name, pv_dtype dt, int nd, const int64_t *sh) {
  pv_tensor *t = pv_input(c->g, name, dt, nd, sh);
  c->in[c->nin++] = t;
  return t;
}
static void add_out(gc *c, pv_tensor *t) {
  if (!t) return;
  pv_mark_output(t);
  c->out[c->nout++] = t;
}

static double rel_l2(const double *a, const double *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int run_plan(pv_context *ctx, gc *c, const char *backend, double **data, double **res, pv_plan **keep) {
  pv_plan *p = NULL;
  pv_plan_options o = {backend, 0, -1, 0};
  int ok = pv_plan_compile(c->g, &o, &p) == PV_OK;
  for (int i = 0; ok && i < c->nin; i++) {
    int64_t n = pv_tensor_numel(c->in[i]);
    if (is_int(pv_tensor_dtype(c->in[i]))) { /* ids are written as i64 */
      int64_t *ids = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
      for (int64_t j = 0; j < n; j++)
        ids[j] = (int64_t)data[i][j];
      ok = pv_plan_write(p, c->in[i], PV_I64, ids, n) == PV_OK;
      free(ids);
    } else
      ok = pv_plan_write(p, c->in[i], PV_F64, data[i], n) == PV_OK;
  }
  ok = ok && pv_plan_run(p) == PV_OK;
  for (int i = 0; ok && i < c->nout; i++)
    ok = pv_plan_read(p, c->out[i], PV_F64, res[i], pv_tensor_numel(c->out[i])) == PV_OK;
  if (!ok) fprintf(stderr, "  %s: %s\n", backend, pv_last_error(ctx));
  if (keep && ok)
    *keep = p;
  else
    pv_plan_free(p);
  return ok;
}

/* tol < 0: exact; else rel L2 per output. Also checks that a second Vulkan run is bitwise equal. */
static void compare(const char *name, pv_context *ctx, gc *c, double tol) {
  CHECK(pv_graph_status(c->g) == PV_OK, "%s: graph: %s", name, pv_graph_error(c->g));
  if (pv_graph_status(c->g) != PV_OK) return;
  double *data[MAXT], *yc[MAXT], *yv[MAXT], *yv2[MAXT];
  for (int i = 0; i < c->nin; i++) {
    int64_t n = pv_tensor_numel(c->in[i]);
    pv_dtype dt = pv_tensor_dtype(c->in[i]);
    data[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t j = 0; j < n; j++) {
      double v = c->hi > c->lo ? c->lo + (c->hi - c->lo) * urand() : nrand();
      data[i][j] = is_int(dt) ? floor(v) : (double)(float)v;
    }
  }
  for (int i = 0; i < c->nout; i++) {
    size_t n = (size_t)pv_tensor_numel(c->out[i]) + 1;
    yc[i] = calloc(n, sizeof(double));
    yv[i] = calloc(n, sizeof(double));
    yv2[i] = calloc(n, sizeof(double));
  }
  pv_plan *pv = NULL;
  int ok = run_plan(ctx, c, "cpu", data, yc, NULL);
  CHECK(ok, "%s: cpu run", name);
  int okv = ok && run_plan(ctx, c, "vulkan", data, yv, &pv);
  CHECK(okv, "%s: vulkan run: %s", name, pv_last_error(ctx));
  if (okv) {
    for (int i = 0; i < c->nout; i++) {
      int64_t n = pv_tensor_numel(c->out[i]);
      if (tol < 0) {
        int64_t bad = -1;
        for (int64_t j = 0; j < n && bad < 0; j++)
          if (yv[i][j] != yc[i][j]) bad = j;
        CHECK(bad < 0, "%s: output %d differs at %lld: vulkan %.9g cpu %.9g", name, i, (long long)bad,
              bad >= 0 ? yv[i][bad] : 0.0, bad >= 0 ? yc[i][bad] : 0.0);
      } else {
        double e = rel_l2(yv[i], yc[i], n);
        int fin = 1;
        for (int64_t j = 0; j < n; j++)
          fin &= isfinite(yv[i][j]);
        CHECK(fin && e <= tol, "%s: output %d vulkan vs cpu rel err %.3g (tol %.1g)%s", name, i, e, tol,
              fin ? "" : " non-finite");
      }
    }
    /* determinism: run again */
    int ok2 = pv_plan_run(pv) == PV_OK;
    for (int i = 0; ok2 && i < c->nout; i++)
      ok2 = pv_plan_read(pv, c->out[i], PV_F64, yv2[i], pv_tensor_numel(c->out[i])) == PV_OK &&
            memcmp(yv[i], yv2[i], sizeof(double) * (size_t)pv_tensor_numel(c->out[i])) == 0;
    CHECK(ok2, "%s: a second vulkan run differs (%s)", name, pv_last_error(ctx));
  }
  pv_plan_free(pv);
  for (int i = 0; i < c->nin; i++)
    free(data[i]);
  for (int i = 0; i < c->nout; i++)
    free(yc[i]), free(yv[i]), free(yv2[i]);
  pv_graph_free(c->g);
  if (ok && okv) printf("ok   %s\n", name);
}

static gc gc_new(pv_context *ctx) {
  gc c;
  memset(&c, 0, sizeof c);
  c.g = pv_graph_new(ctx);
  return c;
}

/* out' = sum_all(out * R); grads of the trainable inputs become outputs */
static void add_backward(gc *c, pv_tensor *out) {
  int64_t sh[8];
  int nd = pv_tensor_ndim(out);
  for (int i = 0; i < nd; i++)
    sh[i] = pv_tensor_dim(out, i);
  pv_tensor *R = add_in(c, "R", PV_F32, nd, sh);
  pv_tensor *loss = pv_sum_all(c->g, pv_mul(c->g, out, R));
  if (!loss || pv_graph_backward(c->g, loss) != PV_OK) return;
  for (int i = 0; i < c->nin - 1; i++) {
    pv_tensor *gr = pv_grad(c->g, c->in[i]);
    if (gr) add_out(c, gr);
  }
}

static void reduce_cases(pv_context *ctx, const char *tag) {
  char nm[128];
  {
    gc c = gc_new(ctx);
    int64_t s1[3] = {3, 5000, 2}, s2[2] = {300, 1000}, s3[2] = {777, 300}, s4[3] = {100, 70, 100}, s5[2] = {10, 40};
    pv_tensor *x1 = add_in(&c, "x1", PV_F32, 3, s1), *x2 = add_in(&c, "x2", PV_F32, 2, s2);
    pv_tensor *x3 = add_in(&c, "x3", PV_F32, 2, s3), *x4 = add_in(&c, "x4", PV_F32, 3, s4);
    pv_tensor *x5 = add_in(&c, "x5", PV_F32, 2, s5);
    add_out(&c, pv_sum(c.g, x1, 1, 0));
    add_out(&c, pv_max(c.g, x1, 1, 1));
    add_out(&c, pv_mean(c.g, x2, -1, 0));
    add_out(&c, pv_max(c.g, x2, -1, 0));
    add_out(&c, pv_max(c.g, x3, 0, 0));
    add_out(&c, pv_sum(c.g, x3, 0, 1));
    add_out(&c, pv_sum(c.g, x4, 1, 0));
    add_out(&c, pv_max(c.g, x4, 1, 0));
    add_out(&c, pv_mean(c.g, x4, 0, 0));
    add_out(&c, pv_sum(c.g, x5, 1, 0));
    add_out(&c, pv_max(c.g, x5, 0, 0));
    snprintf(nm, sizeof nm, "reduce sum/mean/max, long and short axes%s", tag);
    compare(nm, ctx, &c, 1e-5);
  }
  {
    gc c = gc_new(ctx);
    int64_t s1[1] = {3000001}, s2[2] = {123, 457};
    pv_tensor *x1 = add_in(&c, "x1", PV_F32, 1, s1), *x2 = add_in(&c, "x2", PV_F32, 2, s2);
    add_out(&c, pv_sumsq(c.g, x1));
    add_out(&c, pv_sum_all(c.g, pv_unary(c.g, PV_ABS, x1)));
    add_out(&c, pv_sum_all(c.g, x2));
    snprintf(nm, sizeof nm, "reduce_all over 3M elements (two passes)%s", tag);
    compare(nm, ctx, &c, 1e-5);
  }
  {
    gc c = gc_new(ctx);
    int64_t s1[2] = {512, 384}, t1[1] = {384}, s2[4] = {2, 3, 4, 5}, t2[3] = {3, 1, 5}, s3[3] = {64, 33, 70},
            t3[3] = {64, 1, 1}, e1[3] = {7, 300, 384};
    pv_tensor *x1 = add_in(&c, "x1", PV_F32, 2, s1), *x2 = add_in(&c, "x2", PV_F32, 4, s2);
    pv_tensor *x3 = add_in(&c, "x3", PV_F32, 3, s3);
    add_out(&c, pv_sum_to(c.g, x1, 1, t1));
    add_out(&c, pv_sum_to(c.g, x2, 3, t2));
    add_out(&c, pv_sum_to(c.g, x3, 3, t3));
    add_out(&c, pv_expand(c.g, pv_sum_to(c.g, x1, 1, t1), 3, e1));
    snprintf(nm, sizeof nm, "sum_to and expand%s", tag);
    compare(nm, ctx, &c, 1e-5);
  }
}

static void op_cases(pv_context *ctx) {
  /* elementwise beyond 65535 workgroups (65535 * 256 elements), broadcast bias, unary */
  {
    gc c = gc_new(ctx);
    int64_t sh[2] = {4099, 4097}, b[1] = {4097};
    pv_tensor *x = add_in(&c, "x", PV_F32, 2, sh), *bias = add_in(&c, "b", PV_F32, 1, b);
    add_out(&c, pv_unary(c.g, PV_GELU_TANH, pv_add(c.g, x, bias)));
    compare("elementwise over 65535 workgroups", ctx, &c, 1e-5);
  }
  {
    gc c = gc_new(ctx);
    int64_t sa[4] = {3, 1, 70, 9}, sb[3] = {300, 1, 9};
    pv_tensor *a = add_in(&c, "a", PV_F32, 4, sa), *b = add_in(&c, "b", PV_F32, 3, sb);
    pv_set_trainable(a, 1);
    pv_set_trainable(b, 1);
    pv_tensor *y = pv_div(c.g, pv_sub(c.g, pv_mul(c.g, a, b), a), pv_add_scalar(c.g, pv_unary(c.g, PV_SQUARE, b), 1.0));
    add_out(&c, y);
    add_backward(&c, y);
    compare("binary broadcasting both ways + backward (sum_to)", ctx, &c, 1e-5);
  }
  for (int k = 0; k < PV_UNARY_COUNT; k++) {
    gc c = gc_new(ctx);
    int64_t sh[2] = {301, 517};
    c.lo = k == PV_LOG || k == PV_SQRT || k == PV_RSQRT ? 0.25 : -6;
    c.hi = 6;
    pv_tensor *x = add_in(&c, "x", PV_F32, 2, sh), *dy = add_in(&c, "dy", PV_F32, 2, sh);
    add_out(&c, pv_unary(c.g, (pv_unary_kind)k, x));
    add_out(&c, pv_unary_grad(c.g, (pv_unary_kind)k, x, dy));
    char nm[64];
    snprintf(nm, sizeof nm, "unary kind %d (large |x|)", k);
    compare(nm, ctx, &c, 2e-5);
  }
  /* reductions: long axes (workgroup per output), many outputs (invocation per output), strided axes */
  reduce_cases(ctx, "");
  {
    gc c = gc_new(ctx);
    int64_t s[3] = {40, 130, 3};
    pv_tensor *x = add_in(&c, "x", PV_F32, 3, s);
    pv_set_trainable(x, 1);
    pv_tensor *y = pv_add(c.g, pv_max(c.g, x, 1, 1), pv_mean(c.g, x, -1, 1));
    add_out(&c, y);
    add_backward(&c, y);
    compare("reduce backward (max_grad, expand)", ctx, &c, 1e-5);
  }
  /* shape ops */
  {
    gc c = gc_new(ctx);
    int64_t s[4] = {17, 33, 9, 5}, r[2] = {17 * 33, 45};
    pv_tensor *x = add_in(&c, "x", PV_F32, 4, s);
    pv_set_trainable(x, 1);
    int perm[4] = {3, 1, 0, 2};
    pv_tensor *p = pv_permute(c.g, x, 4, perm);
    pv_tensor *sl = pv_slice(c.g, p, 1, 3, 30);
    pv_tensor *parts[5] = {pv_slice(c.g, x, 2, 0, 2), pv_slice(c.g, x, 2, 4, 4), pv_copy(c.g, x),
                           pv_slice(c.g, x, 2, 7, 9), pv_slice(c.g, x, 2, -3, -1)};
    pv_tensor *cc = pv_concat(c.g, 5, parts, 2);
    pv_tensor *y = pv_add(c.g, pv_sum_all(c.g, sl), pv_sum_all(c.g, pv_unary(c.g, PV_SQUARE, cc)));
    add_out(&c, p);
    add_out(&c, sl);
    add_out(&c, cc);
    add_out(&c, pv_reshape(c.g, pv_transpose(c.g, pv_reshape(c.g, x, 2, r), 0, 1), 2, r));
    add_backward(&c, y);
    compare("permute/slice/concat/copy/reshape + backward (unslice)", ctx, &c, 1e-6);
  }
  /* dtypes: 16-bit and integer tensors through shape ops and casts (exact) */
  {
    gc c = gc_new(ctx);
    c.lo = -70000, c.hi = 70000;
    int64_t s[3] = {7, 9, 13};
    pv_tensor *x = add_in(&c, "x", PV_F32, 3, s);
    int perm[3] = {2, 0, 1};
    pv_tensor *h = pv_cast(c.g, x, PV_F16), *bh = pv_cast(c.g, x, PV_BF16);
    add_out(&c, pv_cast(c.g, pv_permute(c.g, h, 3, perm), PV_F32));
    add_out(&c, pv_cast(c.g, pv_slice(c.g, bh, 2, 1, 12), PV_F32));
    pv_tensor *hp[3] = {pv_slice(c.g, h, 1, 0, 3), h, pv_slice(c.g, h, 1, 5, 6)};
    add_out(&c, pv_cast(c.g, pv_concat(c.g, 3, hp, 1), PV_F32));
    add_out(&c, pv_cast(c.g, pv_cast(c.g, bh, PV_F16), PV_F32));
    add_out(&c, pv_cast(c.g, pv_copy(c.g, h), PV_BF16));
    add_out(&c, pv_cast(c.g, x, PV_I32));
    add_out(&c, pv_cast(c.g, x, PV_I64));
    add_out(&c, pv_cast(c.g, pv_cast(c.g, x, PV_I64), PV_I32));
    add_out(&c, pv_cast(c.g, pv_cast(c.g, x, PV_I32), PV_I64));
    add_out(&c, pv_cast(c.g, pv_cast(c.g, x, PV_I64), PV_F32));
    add_out(&c, pv_cast(c.g, pv_cast(c.g, x, PV_I32), PV_F16));
    compare("casts f32/f16/bf16/i32/i64 and 16-bit shape ops", ctx, &c, -1);
  }
  {
    gc c = gc_new(ctx);
    c.lo = -1000, c.hi = 1000;
    int64_t s[2] = {33, 65}, r[3] = {3, 11, 65};
    pv_tensor *ids = add_in(&c, "ids", PV_I64, 2, s), *h = add_in(&c, "h", PV_F16, 2, s);
    pv_tensor *i32 = add_in(&c, "i32", PV_I32, 2, s);
    int perm[3] = {1, 2, 0};
    add_out(&c, pv_permute(c.g, pv_reshape(c.g, ids, 3, r), 3, perm));
    add_out(&c, pv_transpose(c.g, h, 0, 1));
    pv_tensor *ip[2] = {i32, pv_slice(c.g, i32, 0, 30, 33)};
    add_out(&c, pv_concat(c.g, 2, ip, 0));
    add_out(&c, pv_copy(c.g, ids));
    add_out(&c, pv_arange(c.g, 100003, PV_I64));
    add_out(&c, pv_arange(c.g, 70001, PV_I32));
    add_out(&c, pv_arange(c.g, 1025, PV_F32));
    int64_t fs[2] = {300, 301};
    add_out(&c, pv_fill(c.g, -2.5, 2, fs));
    add_out(&c, pv_slice(c.g, h, 1, 3, 3)); /* empty */
    compare("i64/i32/f16 inputs, arange, fill, empty slice", ctx, &c, -1);
  }
}

/* ------------------------------------------------------------ replay, re-recording, split submits, profiling */
static pv_graph *chain(pv_context *ctx, pv_tensor **x, pv_tensor **y) {
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[2] = {37, 300};
  *x = pv_input(g, "x", PV_F32, 2, sh);
  pv_tensor *h = *x;
  for (int i = 0; i < 12; i++) {
    pv_tensor *m = pv_mean(g, h, -1, 1);
    h = pv_add(g, pv_unary(g, PV_TANH, pv_sub(g, h, m)), pv_scale(g, h, 0.5));
  }
  *y = pv_sum(g, h, 0, 0);
  pv_mark_output(*y);
  return g;
}

static void replay_cases(pv_context *ctx) {
  pv_tensor *x, *y;
  pv_graph *g = chain(ctx, &x, &y);
  pv_plan_options ov = {"vulkan", 0, -1, 0};
  enum { N = 37 * 300 };
  static float in[3][N], keep[3][300], fresh[300];
  for (int r = 0; r < 3; r++)
    for (int i = 0; i < N; i++)
      in[r][i] = (float)nrand();
  pv_plan *p = NULL;
  int ok = pv_plan_compile(g, &ov, &p) == PV_OK;
  CHECK(ok, "replay: compile: %s", pv_last_error(ctx));
  for (int r = 0; ok && r < 3; r++) {
    ok = pv_plan_write(p, x, PV_F32, in[r], N) == PV_OK && pv_plan_run(p) == PV_OK &&
         pv_plan_read(p, y, PV_F32, keep[r], 300) == PV_OK;
    CHECK(ok, "replay: run %d: %s", r, pv_last_error(ctx));
  }
  for (int r = 0; ok && r < 3; r++) {
    pv_plan *q = NULL;
    int okq = pv_plan_compile(g, &ov, &q) == PV_OK && pv_plan_write(q, x, PV_F32, in[r], N) == PV_OK &&
              pv_plan_run(q) == PV_OK && pv_plan_read(q, y, PV_F32, fresh, 300) == PV_OK;
    CHECK(okq && !memcmp(fresh, keep[r], sizeof fresh), "replay: run %d of one plan differs from a fresh plan", r);
    pv_plan_free(q);
  }
  /* re-recording each run and splitting into one dispatch per submit give the same bits */
  if (ok) {
    setenv("PIVOT_VK_NO_REPLAY", "1", 1);
    setenv("PIVOT_VK_SUBMIT_DISPATCHES", "1", 1);
    ok = pv_plan_write(p, x, PV_F32, in[1], N) == PV_OK && pv_plan_run(p) == PV_OK &&
         pv_plan_read(p, y, PV_F32, fresh, 300) == PV_OK;
    CHECK(ok && !memcmp(fresh, keep[1], sizeof fresh), "re-recorded split run differs (%s)", pv_last_error(ctx));
    unsetenv("PIVOT_VK_NO_REPLAY");
    unsetenv("PIVOT_VK_SUBMIT_DISPATCHES");
    /* recorded with split submits, then replayed */
    pv_plan_free(p);
    p = NULL;
    setenv("PIVOT_VK_SUBMIT_DISPATCHES", "3", 1);
    ok = pv_plan_compile(g, &ov, &p) == PV_OK;
    for (int r = 0; ok && r < 2; r++) {
      ok = pv_plan_write(p, x, PV_F32, in[2], N) == PV_OK && pv_plan_run(p) == PV_OK &&
           pv_plan_read(p, y, PV_F32, fresh, 300) == PV_OK;
      CHECK(ok && !memcmp(fresh, keep[2], sizeof fresh), "split submits: run %d differs (%s)", r, pv_last_error(ctx));
    }
    unsetenv("PIVOT_VK_SUBMIT_DISPATCHES");
  }
  /* profiling */
  if (ok) {
    char buf[4096] = {0};
    ok = pv_plan_set_profiling(p, 1) == PV_OK && pv_plan_run(p) == PV_OK && pv_plan_run(p) == PV_OK &&
         pv_plan_profile(p, buf, sizeof buf) == PV_OK;
    CHECK(ok && strstr(buf, "binary") && strstr(buf, "reduce") && strstr(buf, "total"), "profile table: %s", buf);
    const char *line = strstr(buf, "\nbinary");
    CHECK(line && atoll(line + 21) == 48, "profile: binary calls (2 runs x 24): %s", buf);
    ok = pv_plan_read(p, y, PV_F32, fresh, 300) == PV_OK;
    CHECK(ok && !memcmp(fresh, keep[2], sizeof fresh), "profiled run differs");
    pv_plan_set_profiling(p, 0);
    ok = pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, fresh, 300) == PV_OK;
    CHECK(ok && !memcmp(fresh, keep[2], sizeof fresh), "run after profiling differs");
    printf("ok   replay, re-recording, split submits, profiling\n");
  }
  pv_plan_free(p);
  pv_graph_free(g);
}

/* ------------------------------------------------------------ variables */
static int read_y(pv_context *ctx, pv_graph *g, const char *be, pv_tensor *x, pv_tensor *y, const float *xs, float *out,
                  int n) {
  pv_plan *p = NULL;
  pv_plan_options o = {be, 0, -1, 0};
  int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, x, PV_F32, xs, n) == PV_OK &&
           pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, out, n) == PV_OK;
  if (!ok) fprintf(stderr, "  %s: %s\n", be, pv_last_error(ctx));
  pv_plan_free(p);
  return ok;
}

static void var_cases(pv_context *ctx) {
  enum { N = 1000 };
  int64_t sh[1] = {N};
  pv_var *w = NULL;
  CHECK(pv_var_new(ctx, "w", PV_F32, 1, sh, &w) == PV_OK, "var_new");
  if (!w) return;
  static float xs[N], wv[N], out[N], w2[N], w3[N], got[N];
  for (int i = 0; i < N; i++)
    xs[i] = (float)nrand(), wv[i] = (float)nrand(), w2[i] = (float)nrand(), w3[i] = i * 0.5f;
  pv_var_write(w, PV_F32, wv, N);
  pv_graph *g = pv_graph_new(ctx);
  pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh), *wn = pv_use_var(g, w);
  pv_tensor *y = pv_mul(g, x, wn);
  pv_mark_output(y);
  int ok = read_y(ctx, g, "vulkan", x, y, xs, out, N);
  int good = ok;
  for (int i = 0; ok && i < N; i++)
    good &= out[i] == xs[i] * wv[i];
  CHECK(good, "var: vulkan uses the var's value");
  /* host write after a Vulkan run: uploaded again */
  pv_var_write(w, PV_F32, w2, N);
  ok = read_y(ctx, g, "vulkan", x, y, xs, out, N);
  good = ok;
  for (int i = 0; ok && i < N; i++)
    good &= out[i] == xs[i] * w2[i];
  CHECK(good, "var: a host write is uploaded before the next Vulkan run");
  /* device-newer copy: pv_var_read and CPU plans read it back */
  if (pv__vk_var_device_write) {
    CHECK(pv__vk_var_device_write(w, w3) == PV_OK, "device write: %s", pv_last_error(ctx));
    ok = read_y(ctx, g, "cpu", x, y, xs, out, N);
    good = ok;
    for (int i = 0; ok && i < N; i++)
      good &= out[i] == xs[i] * w3[i];
    CHECK(good, "var: a CPU plan sees the device-newer copy");
    memset(got, 0, sizeof got);
    CHECK(pv_var_read(w, PV_F32, got, N) == PV_OK && !memcmp(got, w3, sizeof got), "var: pv_var_read after sync");
    CHECK(pv__vk_var_device_write(w, w2) == PV_OK, "device write");
    CHECK(pv_var_read(w, PV_F32, got, N) == PV_OK && !memcmp(got, w2, sizeof got),
          "var: pv_var_read reads the device-newer copy");
  }
  /* an update op on Vulkan: assign (skipped while assign has no Vulkan kernel) */
  pv_graph *g2 = pv_graph_new(ctx);
  pv_tensor *v2 = pv_input(g2, "v", PV_F32, 1, sh);
  pv_tensor *tok = pv_assign(g2, pv_use_var(g2, w), pv_scale(g2, v2, 2.0), NULL, 1);
  pv_plan *pa = NULL;
  pv_plan_options ov = {"vulkan", 0, -1, 0};
  pv_status st = tok ? pv_plan_compile(g2, &ov, &pa) : pv_graph_status(g2);
  if (st == PV_ERR_UNSUPPORTED) {
    printf("skip assign on vulkan: %s\n", tok ? pv_last_error(ctx) : pv_graph_error(g2));
  } else {
    CHECK(st == PV_OK, "assign: compile: %s", pv_last_error(ctx));
    pv_var_write(w, PV_F32, wv, N);
    ok = st == PV_OK && pv_plan_write(pa, v2, PV_F32, xs, N) == PV_OK && pv_plan_run(pa) == PV_OK;
    CHECK(ok, "assign: run: %s", pv_last_error(ctx));
    CHECK(pv_var_read(w, PV_F32, got, N) == PV_OK, "assign: var_read");
    good = ok;
    for (int i = 0; ok && i < N; i++)
      good &= got[i] == wv[i] + 2.0f * xs[i];
    CHECK(good, "assign on vulkan: pv_var_read sees the update");
    ok = ok && pv_plan_write(pa, v2, PV_F32, xs, N) == PV_OK && pv_plan_run(pa) == PV_OK;
    ok = ok && read_y(ctx, g, "cpu", x, y, xs, out, N);
    good = ok;
    for (int i = 0; ok && i < N; i++)
      good &= out[i] == xs[i] * (wv[i] + 2.0f * xs[i] + 2.0f * xs[i]);
    CHECK(good, "assign on vulkan twice, then a CPU plan sees it");
  }
  pv_plan_free(pa);
  /* an update on the CPU, then Vulkan reads the new host copy */
  pa = NULL;
  pv_plan_options oc = {"cpu", 0, -1, 0};
  if (tok && pv_plan_compile(g2, &oc, &pa) == PV_OK) {
    pv_var_write(w, PV_F32, wv, N);
    ok = read_y(ctx, g, "vulkan", x, y, xs, out, N); /* device copy now == wv */
    ok = ok && pv_plan_write(pa, v2, PV_F32, w3, N) == PV_OK && pv_plan_run(pa) == PV_OK;
    ok = ok && read_y(ctx, g, "vulkan", x, y, xs, out, N);
    good = ok;
    for (int i = 0; ok && i < N; i++)
      good &= out[i] == xs[i] * (wv[i] + 2.0f * w3[i]);
    CHECK(good, "var: a CPU update is uploaded before the next Vulkan run");
  }
  pv_plan_free(pa);
  pv_graph_free(g2);
  pv_graph_free(g);
  printf("ok   variables\n");
}

/* ------------------------------------------------------------ devices and errors */
static void limit_cases(void) {
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  /* a tensor over maxStorageBufferRange (lavapipe: 128 MiB; 4 GiB elsewhere): rejected, named */
  int64_t big[1] = {((int64_t)1 << 32) / 4 + 1};
  pv_tensor *x = pv_input(g, "huge_input", PV_F32, 1, big);
  pv_mark_output(pv_scale(g, x, 2.0));
  pv_plan *p = NULL;
  pv_plan_options o = {"vulkan", 0, -1, 0};
  pv_status st = pv_plan_compile(g, &o, &p);
  CHECK(st == PV_ERR_UNSUPPORTED && !p && strstr(pv_last_error(ctx), "huge_input") &&
            strstr(pv_last_error(ctx), "maxStorageBufferRange"),
        "over maxStorageBufferRange: %d %s", st, pv_last_error(ctx));
  pv_graph_free(g);
  /* an arena over the device memory limits (each tensor fits a binding): PV_ERR_NOMEM, never a crash */
  g = pv_graph_new(ctx);
  int64_t sh[1] = {(int64_t)1 << 25}; /* 128 MiB each */
  for (int i = 0; i < 2000; i++) {    /* 250 GiB */
    char nm[32];
    snprintf(nm, sizeof nm, "in%d", i);
    pv_mark_output(pv_input(g, nm, PV_F32, 1, sh));
  }
  int64_t one = 1;
  pv_mark_output(pv_fill(g, 1.0, 1, &one));
  st = pv_plan_compile(g, &o, &p);
  CHECK(st == PV_ERR_NOMEM && !p, "250 GiB arena: %d %s", st, pv_last_error(ctx));
  printf("ok   limits: %s\n", pv_last_error(ctx));
  pv_graph_free(g);
  pv_context_free(ctx);
}

static void device_cases(void) {
  pv_context *ctx = pv_context_new();
  char buf[4096];
  CHECK(pv_backend_describe(ctx, "vulkan", buf, sizeof buf) == PV_OK && strstr(buf, "vulkan device 0"), "describe: %s",
        buf);
  printf("%s\n", buf);
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[1] = {5};
  pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh);
  pv_mark_output(pv_scale(g, x, 2.0));
  pv_plan *p = NULL;
  pv_plan_options o = {"vulkan", 0, 99, 0};
  pv_status st = pv_plan_compile(g, &o, &p);
  CHECK(st == PV_ERR_INVALID && strstr(pv_last_error(ctx), "out of range"), "device 99: %d %s", st, pv_last_error(ctx));
  setenv("PIVOT_DEVICE", "abc", 1);
  o.device = -1;
  st = pv_plan_compile(g, &o, &p);
  CHECK(st == PV_ERR_INVALID && strstr(pv_last_error(ctx), "PIVOT_DEVICE"), "PIVOT_DEVICE=abc: %s", pv_last_error(ctx));
  unsetenv("PIVOT_DEVICE");
  st = pv_plan_compile(g, &o, &p);
  CHECK(st == PV_OK, "compile after errors: %s", pv_last_error(ctx));
  pv_plan_free(p);
  pv_graph_free(g);
  pv_context_free(ctx);
}

static void no_vulkan_case(void) {
  const char *old = getenv("PIVOT_VK_LOADER");
  char *saved = old ? strdup(old) : NULL;
  setenv("PIVOT_VK_LOADER", "/nonexistent/libvulkan.so", 1);
  pv_context *ctx = pv_context_new();
  const char *why = NULL;
  int av = pv_backend_available(ctx, "vulkan", &why);
  CHECK(!av && why && strstr(why, "/nonexistent/libvulkan.so"), "no vulkan: available %d, why '%s'", av,
        why ? why : "(null)");
  char buf[512];
  CHECK(pv_backend_describe(ctx, "vulkan", buf, sizeof buf) == PV_ERR_UNSUPPORTED, "no vulkan: describe");
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[1] = {4};
  pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh), *y = pv_scale(g, x, 3.0);
  pv_mark_output(y);
  pv_plan *p = NULL;
  pv_plan_options ov = {"vulkan", 0, -1, 0};
  pv_status st = pv_plan_compile(g, &ov, &p);
  CHECK(st == PV_ERR_UNSUPPORTED && !p && strstr(pv_last_error(ctx), "vulkan") &&
            strstr(pv_last_error(ctx), "/nonexistent/libvulkan.so"),
        "no vulkan: compile: %d %s", st, pv_last_error(ctx));
  pv_plan_options oc = {"cpu", 0, -1, 0};
  float in[4] = {1, 2, 3, 4}, out[4] = {0};
  int ok = pv_plan_compile(g, &oc, &p) == PV_OK && pv_plan_write(p, x, PV_F32, in, 4) == PV_OK &&
           pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, out, 4) == PV_OK;
  CHECK(ok && out[3] == 12.0f, "no vulkan: the CPU path works: %s", pv_last_error(ctx));
  pv_plan_free(p);
  if (saved)
    setenv("PIVOT_VK_LOADER", saved, 1);
  else
    unsetenv("PIVOT_VK_LOADER");
  /* re-evaluated once the environment changes back */
  int av2 = pv_backend_available(ctx, "vulkan", &why);
  CHECK(av2, "vulkan available again after restoring PIVOT_VK_LOADER: %s", why ? why : "");
  pv_graph_free(g);
  pv_context_free(ctx);
  free(saved);
  printf("ok   no-vulkan path (PIVOT_VK_LOADER=/nonexistent/libvulkan.so)\n");
}

/* Many contexts in sequence in one process, each opening a device and running a plan: the VkInstance is made once
 * per process and shared (NVIDIA's driver failed vkCreateInstance after ~30 create/destroy cycles). */
static void many_contexts_case(void) {
  int ok = 0;
  for (int i = 0; i < 40; i++) {
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    int64_t sh[1] = {5};
    pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh), *y = pv_scale(g, x, (double)(i + 1));
    pv_mark_output(y);
    pv_plan *p = NULL;
    pv_plan_options ov = {"vulkan", 0, -1, 0};
    float in[5] = {1, 2, 3, 4, 5}, out[5] = {0};
    if (pv_plan_compile(g, &ov, &p) == PV_OK && pv_plan_write(p, x, PV_F32, in, 5) == PV_OK &&
        pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, out, 5) == PV_OK && out[4] == 5.0f * (float)(i + 1))
      ok++;
    else
      fprintf(stderr, "context %d: %s\n", i, pv_last_error(ctx));
    pv_plan_free(p);
    pv_graph_free(g);
    pv_context_free(ctx);
  }
  CHECK(ok == 40, "40 contexts in sequence: %d ran", ok);
  printf("ok   40 Vulkan contexts in sequence in one process\n");
}

int main(void) {
  pv_context *ctx = pv_context_new();
  if (!pv_t_vulkan_required(ctx)) {
    pv_context_free(ctx);
    return pv_t_finish();
  }
  op_cases(ctx);
  replay_cases(ctx);
  var_cases(ctx);
  pv_context_free(ctx);
  /* the shared-memory variants of the subgroup shaders (pipelines are per context) */
  setenv("PIVOT_VK_NO_SUBGROUP", "1", 1);
  ctx = pv_context_new();
  reduce_cases(ctx, " (no subgroups)");
  pv_context_free(ctx);
  unsetenv("PIVOT_VK_NO_SUBGROUP");
  limit_cases();
  device_cases();
  many_contexts_case();
  no_vulkan_case();
  pv_t_check_validation();
  return pv_t_finish();
}
