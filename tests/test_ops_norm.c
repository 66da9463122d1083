/* Op tests: layer_norm, rms_norm, softmax, log_softmax (forward vs reference, gradients vs finite differences,
 * CPU gradients vs reference), plus direct value checks against formulas and error messages. */
#include "opcheck.h"
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define IN(nd, ...) {nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 1, 0}
#define INC(nd, ...) {nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 0, 0} /* constant (not trainable): masks */
#define INU(lo, hi, nd, ...) {nd, {__VA_ARGS__}, OC_UNIFORM, lo, hi, 1, 0}

/* an intermediate copy of x, so that the op may run in place (inputs are never overwritten) */
static pv_tensor *tmp(pv_graph *g, pv_tensor *x) { return pv_add_scalar(g, x, 0.0); }

/* ------------------------------------------------------------ norm builders */
static pv_tensor *b_ln_wb(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_layer_norm(g, x[0], x[1], x[2], 1e-5);
}
static pv_tensor *b_ln_w(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_layer_norm(g, x[0], x[1], NULL, 1e-5);
}
static pv_tensor *b_ln_b(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_layer_norm(g, x[0], NULL, x[1], 1e-5);
}
static pv_tensor *b_ln(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_layer_norm(g, x[0], NULL, NULL, 1e-5);
}
static pv_tensor *b_ln_inplace(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_layer_norm(g, tmp(g, x[0]), x[1], x[2], 1e-6);
}
static pv_tensor *b_rms_w(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_rms_norm(g, x[0], x[1], 1e-6); }
static pv_tensor *b_rms(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_rms_norm(g, x[0], NULL, 1e-6); }
static pv_tensor *b_rms_inplace(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_rms_norm(g, tmp(g, x[0]), x[1], 1e-6);
}
/* normalisation of a normalisation (x feeds two consumers, xhat recomputed twice) */
static pv_tensor *b_ln_rms(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  return pv_add(g, pv_rms_norm(g, pv_layer_norm(g, x[0], x[1], x[2], 1e-5), x[1], 1e-5), x[0]);
}

/* ------------------------------------------------------------ softmax builders */
typedef struct {
  int log, causal, with_mask, exp_after; /* exp_after: exp(log_softmax) keeps -inf entries finite */
  double scale;
} sm_case;
static pv_tensor *sm_finish(pv_graph *g, const sm_case *c, pv_tensor *y) {
  return c->log && c->exp_after ? pv_unary(g, PV_EXP, y) : y;
}
static pv_tensor *b_sm(pv_graph *g, pv_tensor **x, void *u) {
  const sm_case *c = u;
  pv_tensor *m = c->with_mask ? x[1] : NULL;
  pv_tensor *y = c->log ? pv_log_softmax(g, tmp(g, x[0]), m, c->scale, c->causal)
                        : pv_softmax(g, tmp(g, x[0]), m, c->scale, c->causal);
  return sm_finish(g, c, y);
}
static pv_tensor *b_sm_plain_x(pv_graph *g, pv_tensor **x, void *u) { /* x an input: not in place */
  const sm_case *c = u;
  pv_tensor *m = c->with_mask ? x[1] : NULL;
  pv_tensor *y =
      c->log ? pv_log_softmax(g, x[0], m, c->scale, c->causal) : pv_softmax(g, x[0], m, c->scale, c->causal);
  return sm_finish(g, c, y);
}
/* x [2, 4, 6]: mask [4, 6] with -inf at row 1 cols 0..2, all of row 3 (a fully masked row) */
static pv_tensor *b_sm_inf_mask(pv_graph *g, pv_tensor **x, void *u) {
  const sm_case *c = u;
  const double NI = -INFINITY;
  int64_t s26[2] = {2, 6}, s13[2] = {1, 3}, s16[2] = {1, 6};
  pv_tensor *r1[2] = {pv_fill(g, NI, 2, s13), pv_fill(g, 0.0, 2, s13)};
  pv_tensor *rows[3] = {pv_fill(g, 0.0, 2, s26), pv_concat(g, 2, r1, 1), pv_fill(g, NI, 2, s16)};
  pv_tensor *mask = pv_concat(g, 3, rows, 0);
  pv_tensor *y = c->log ? pv_log_softmax(g, tmp(g, x[0]), mask, c->scale, c->causal)
                        : pv_softmax(g, tmp(g, x[0]), mask, c->scale, c->causal);
  return sm_finish(g, c, y);
}

/* ------------------------------------------------------------ direct checks against formulas */
static int run_cpu(pv_graph *g, pv_tensor *in, const double *data, int nout, pv_tensor **outs, double **bufs) {
  pv_plan *p = NULL;
  pv_plan_options o = {"cpu", 0, -1, 0};
  for (int i = 0; i < nout; i++) pv_mark_output(outs[i]);
  int ok = pv_plan_compile(g, &o, &p) == PV_OK && pv_plan_write(p, in, PV_F64, data, pv_tensor_numel(in)) == PV_OK &&
           pv_plan_run(p) == PV_OK;
  for (int i = 0; ok && i < nout; i++)
    ok = pv_plan_read(p, outs[i], PV_F64, bufs[i], pv_tensor_numel(outs[i])) == PV_OK;
  CHECK(ok, "direct run: %s / %s", pv_graph_error(g), pv_last_error(pv_graph_context(g)));
  pv_plan_free(p);
  return ok;
}

static void test_norm_values(void) {
  enum { R = 3, D = 8 };
  double x[R * D], y5[R * D], y6[R * D], yr[R * D];
  for (int i = 0; i < R * D; i++) x[i] = 1e-3 * sin(1.7 * i + 0.3) + (i / D) * 0.5; /* variance ~ eps */
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[2] = {R, D};
  pv_tensor *in = pv_input(g, "x", PV_F32, 2, sh);
  pv_tensor *outs[3] = {pv_layer_norm(g, in, NULL, NULL, 1e-5), pv_layer_norm(g, in, NULL, NULL, 1e-6),
                        pv_rms_norm(g, in, NULL, 1e-6)};
  double *bufs[3] = {y5, y6, yr};
  for (int i = 0; i < R * D; i++) x[i] = (double)(float)x[i];
  if (run_cpu(g, in, x, 3, outs, bufs)) {
    double e5 = 0, e6 = 0, er = 0, diff = 0;
    for (int r = 0; r < R; r++) {
      const double *xr = x + r * D;
      double mu = 0, var = 0, ms = 0;
      for (int i = 0; i < D; i++) mu += xr[i] / D, ms += xr[i] * xr[i] / D;
      for (int i = 0; i < D; i++) var += (xr[i] - mu) * (xr[i] - mu) / D; /* biased */
      for (int i = 0; i < D; i++) {
        int k = r * D + i;
        e5 = fmax(e5, fabs(y5[k] - (xr[i] - mu) / sqrt(var + 1e-5)));
        e6 = fmax(e6, fabs(y6[k] - (xr[i] - mu) / sqrt(var + 1e-6)));
        er = fmax(er, fabs(yr[k] - xr[i] / sqrt(ms + 1e-6)));
        diff = fmax(diff, fabs(y5[k] - y6[k]));
      }
    }
    CHECK(e5 < 1e-3 && e6 < 1e-3, "layer_norm values vs formula: err %g (eps 1e-5), %g (eps 1e-6)", e5, e6);
    CHECK(er < 1e-4, "rms_norm values vs formula: err %g", er);
    CHECK(diff > 0.1, "layer_norm eps 1e-5 vs 1e-6 should differ, max diff %g", diff);
  }
  pv_graph_free(g);
  pv_context_free(ctx);
  printf("ok   norm values and eps\n");
}

static void test_softmax_values(void) {
  enum { TQ = 3, TK = 4 };
  double x[TQ * TK], ys[TQ * TK], yl[TQ * TK], yf[5 * 2];
  for (int i = 0; i < TQ * TK; i++) x[i] = (double)(float)(0.37 * i - 1.1 * (i % 3));
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[3] = {1, TQ, TK}, s52[2] = {5, 2};
  pv_tensor *in = pv_input(g, "x", PV_F32, 3, sh);
  pv_tensor *x52 = pv_reshape(g, pv_slice(g, pv_reshape(g, in, 1, (int64_t[]){TQ * TK}), 0, 0, 10), 2, s52);
  pv_tensor *outs[3] = {pv_softmax(g, in, NULL, 0.5, 1), pv_log_softmax(g, in, NULL, 0.5, 1),
                        pv_softmax(g, x52, NULL, 1.0, 1)}; /* Tq 5 > Tk 2: rows 0..2 fully masked */
  double *bufs[3] = {ys, yl, yf};
  if (run_cpu(g, in, x, 3, outs, bufs)) {
    double err = 0;
    int excl_ok = 1;
    for (int i = 0; i < TQ; i++) {
      int lim = i + (TK - TQ) + 1; /* allowed j < lim */
      double m = -INFINITY, s = 0;
      for (int j = 0; j < lim; j++) m = fmax(m, 0.5 * x[i * TK + j]);
      for (int j = 0; j < lim; j++) s += exp(0.5 * x[i * TK + j] - m);
      for (int j = 0; j < TK; j++) {
        int k = i * TK + j;
        if (j < lim) {
          err = fmax(err, fabs(ys[k] - exp(0.5 * x[k] - m) / s));
          err = fmax(err, fabs(yl[k] - (0.5 * x[k] - m - log(s))));
        } else excl_ok &= ys[k] == 0.0 && yl[k] == -INFINITY;
      }
    }
    CHECK(err < 1e-5, "causal softmax/log_softmax values vs formula: err %g", err);
    CHECK(excl_ok, "causal excluded entries: softmax 0 and log_softmax -inf");
    int full_ok = 1;
    for (int k = 0; k < 6; k++) full_ok &= yf[k] == 0.0;
    full_ok &= fabs(yf[6] - 1.0) < 1e-6 && yf[7] == 0.0 && fabs(yf[8] + yf[9] - 1.0) < 1e-6;
    CHECK(full_ok, "causal Tq > Tk: fully masked rows give 0, others sum to 1 (%g %g %g %g)", yf[6], yf[7], yf[8],
          yf[9]);
  }
  pv_graph_free(g);
  pv_context_free(ctx);
  printf("ok   softmax values\n");
}

/* ------------------------------------------------------------ error messages */
static void expect_error(const char *what, pv_graph *g, pv_tensor *t, pv_status st, const char *const *needles) {
  const char *e = pv_graph_error(g);
  int ok = t == NULL && pv_graph_status(g) == st;
  for (int i = 0; ok && needles[i]; i++) ok = strstr(e, needles[i]) != NULL;
  CHECK(ok, "%s: expected %s naming the op and shapes, got %s: '%s'", what, pv_status_name(st),
        pv_status_name(pv_graph_status(g)), e);
}

static void test_errors(void) {
  pv_context *ctx = pv_context_new();
  int64_t sx[2] = {3, 8}, sw[1] = {7}, sx3[3] = {2, 3, 5}, sm[2] = {4, 5}, s1[1] = {5};
  struct {
    const char *what;
    int kind;
    pv_status st;
    const char *needles[4];
  } cases[] = {
      {"layer_norm wrong w", 0, PV_ERR_SHAPE, {"layer_norm", "[7]", "[3, 8]", NULL}},
      {"layer_norm wrong b", 1, PV_ERR_SHAPE, {"layer_norm", "b has shape [7]", "[3, 8]", NULL}},
      {"rms_norm wrong w", 2, PV_ERR_SHAPE, {"rms_norm", "[7]", "[3, 8]", NULL}},
      {"softmax mask not broadcastable", 3, PV_ERR_SHAPE, {"softmax", "[4, 5]", "[2, 3, 5]", NULL}},
      {"log_softmax mask not broadcastable", 4, PV_ERR_SHAPE, {"log_softmax", "[4, 5]", "[2, 3, 5]", NULL}},
      {"softmax causal on 1-d", 5, PV_ERR_SHAPE, {"softmax", "causal", "[5]", NULL}},
      {"layer_norm negative eps", 6, PV_ERR_INVALID, {"layer_norm", "eps", NULL, NULL}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *x = pv_input(g, "x", PV_F32, 2, sx), *w = pv_input(g, "w", PV_F32, 1, sw);
    pv_tensor *x3 = pv_input(g, "x3", PV_F32, 3, sx3), *m = pv_input(g, "m", PV_F32, 2, sm);
    pv_tensor *x1 = pv_input(g, "x1", PV_F32, 1, s1), *t = NULL;
    switch (cases[c].kind) {
    case 0: t = pv_layer_norm(g, x, w, NULL, 1e-5); break;
    case 1: t = pv_layer_norm(g, x, NULL, w, 1e-5); break;
    case 2: t = pv_rms_norm(g, x, w, 1e-6); break;
    case 3: t = pv_softmax(g, x3, m, 1.0, 0); break;
    case 4: t = pv_log_softmax(g, x3, m, 1.0, 0); break;
    case 5: t = pv_softmax(g, x1, NULL, 1.0, 1); break;
    default: t = pv_layer_norm(g, x, NULL, NULL, -1.0); break;
    }
    expect_error(cases[c].what, g, t, cases[c].st, cases[c].needles);
    pv_graph_free(g);
  }
  pv_context_free(ctx);
  printf("ok   error messages\n");
}

int main(void) {
  /* layer norm */
  oc_input lnwb[3] = {IN(3, 3, 5, 8), IN(1, 8), IN(1, 8)};
  oc_check("layer_norm w b", 3, lnwb, b_ln_wb, NULL, NULL);
  oc_check("layer_norm w", 2, lnwb, b_ln_w, NULL, NULL);
  oc_check("layer_norm b", 2, lnwb, b_ln_b, NULL, NULL);
  oc_check("layer_norm plain", 1, lnwb, b_ln, NULL, NULL);
  oc_input lnodd[3] = {IN(2, 7, 37), IN(1, 37), IN(1, 37)};
  oc_check("layer_norm D 37 rows 7", 3, lnodd, b_ln_wb, NULL, NULL);
  oc_check("layer_norm in place", 3, lnodd, b_ln_inplace, NULL, NULL);
  oc_input ln1[3] = {IN(2, 5, 1), IN(1, 1), IN(1, 1)}; /* D = 1: y = b */
  oc_check("layer_norm D 1", 3, ln1, b_ln_wb, NULL, NULL);
  /* fd_tol 1e-5: opcheck reads the reference gradient of input k after the finite-difference runs of inputs < k,
   * whose last run leaves one element shifted by -fd_h, so curvature across inputs adds an O(fd_h) error here */
  oc_opts loose = {0, 1e-5, 0, 0, 0, 0};
  oc_check("layer_norm then rms_norm", 3, lnwb, b_ln_rms, NULL, &loose);
  /* rms norm */
  oc_input rmsw[2] = {IN(3, 3, 5, 8), IN(1, 8)};
  oc_check("rms_norm w", 2, rmsw, b_rms_w, NULL, NULL);
  oc_check("rms_norm plain", 1, rmsw, b_rms, NULL, NULL);
  oc_input rmsodd[2] = {IN(2, 7, 37), IN(1, 37)};
  oc_check("rms_norm D 37 rows 7", 2, rmsodd, b_rms_w, NULL, NULL);
  oc_check("rms_norm in place", 2, rmsodd, b_rms_inplace, NULL, NULL);
  test_norm_values();

  /* softmax / log_softmax */
  oc_input sx[1] = {IN(4, 2, 3, 4, 6)};
  oc_input sm4[2] = {IN(4, 2, 3, 4, 6), INC(4, 1, 1, 4, 6)};
  oc_input smk[2] = {IN(4, 2, 3, 4, 6), INC(1, 6)};
  oc_input sq[1] = {IN(4, 2, 2, 5, 5)};
  oc_input sqk[1] = {IN(3, 2, 3, 7)};
  oc_input sqgk[1] = {IN(3, 2, 6, 3)};    /* Tq > Tk: fully masked rows */
  oc_input sqkm[2] = {IN(3, 2, 3, 7), INC(2, 3, 7)};
  oc_input sinf[1] = {IN(3, 2, 4, 6)};
  oc_input sodd[1] = {IN(2, 5, 37)};
  for (int lg = 0; lg < 2; lg++) {
    const char *nm = lg ? "log_softmax" : "softmax";
    char b[96];
    sm_case c = {lg, 0, 0, 1, 1.0};
#define RUN(label, nin, ins, fn, ...)                                      \
  do {                                                                     \
    sm_case cc = c;                                                        \
    __VA_ARGS__;                                                           \
    snprintf(b, sizeof b, "%s %s", nm, label);                             \
    oc_check(b, nin, ins, fn, &cc, NULL);                                  \
  } while (0)
    RUN("plain", 1, sx, b_sm_plain_x, );
    RUN("scale 0.35", 1, sx, b_sm, cc.scale = 0.35);
    RUN("D 37", 1, sodd, b_sm, cc.scale = 1.3);
    RUN("mask [1,1,Tq,Tk]", 2, sm4, b_sm, cc.with_mask = 1; cc.scale = 0.5);
    RUN("mask [Tk]", 2, smk, b_sm, cc.with_mask = 1; cc.scale = 0.5);
    RUN("mask [Tk] x input", 2, smk, b_sm_plain_x, cc.with_mask = 1);
    RUN("causal Tq == Tk", 1, sq, b_sm, cc.causal = 1; cc.scale = 0.7);
    RUN("causal Tq < Tk", 1, sqk, b_sm, cc.causal = 1);
    RUN("causal Tq > Tk (fully masked rows)", 1, sqgk, b_sm, cc.causal = 1);
    RUN("causal + mask", 2, sqkm, b_sm, cc.causal = 1; cc.with_mask = 1; cc.scale = 0.5);
    RUN("-inf mask with a fully masked row", 1, sinf, b_sm_inf_mask, cc.scale = 0.8);
    RUN("-inf mask + causal", 1, sinf, b_sm_inf_mask, cc.causal = 1);
    if (lg) RUN("no exp, unmasked", 1, sx, b_sm, cc.exp_after = 0; cc.scale = 0.6);
#undef RUN
  }
  test_softmax_values();
  test_errors();
  return pv_t_finish();
}
