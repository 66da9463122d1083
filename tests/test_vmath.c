/* runtime/cpu/vmath: the vector math functions against float64 libm (max ulp error over a sweep of all float bit
 * patterns, a dense grid and special values; NaN and infinity handling), then the array kernels (unary ops and their
 * gradients, binary, column sums, reductions, softmax rows, norms, rope, AdamW) against plain scalar loops, with odd
 * lengths for the tails. Every instruction-set variant this CPU has is forced in turn, and each must give bitwise the
 * results of the baseline variant. */
#include "cpu/vmath.h"
#include "pivot.h"
#include "testutil.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* bitwise equal, or both NaN (a NaN's sign and payload depend on operand order, which compilers may swap) */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }
static int same_n(const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!same(a[i], b[i])) return 0;
  return 1;
}

static double ref_fn(int fn, double x) {
  switch (fn) {
  case PV_VM_EXP: return exp(x);
  case PV_VM_TANH: return tanh(x);
  case PV_VM_ERF: return erf(x);
  case PV_VM_LOG: return log(x);
  case PV_VM_LOG1P: return log1p(x);
  default: return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
  }
}

/* error of y in units of the float ulp at r (subnormal ulp below FLT_MIN); 0 when y is r rounded to float;
 * HUGE_VAL for a wrong NaN / infinity */
static double ulp_err(float y, double r) {
  if (isnan(r)) return isnan(y) ? 0 : HUGE_VAL;
  if (isnan(y)) return HUGE_VAL;
  if (y == (float)r) return 0;
  if (isinf(y) || isinf(r)) return HUGE_VAL;
  double a = fabs(r);
  int e;
  frexp(a, &e); /* a in [2^(e-1), 2^e) */
  double ulp = a < FLT_MIN ? ldexp(1.0, -149) : ldexp(1.0, e - 1 - 23);
  return fabs((double)y - r) / ulp;
}

/* max error bounds in ulp, a little above the exhaustive maxima vmath.h quotes (1.00, 1.33, 2.55, 0.83, 2.47, 2.83) */
static const double bound[PV_VM_FN_COUNT] = {1.25, 1.75, 3.0, 1.0, 3.0, 3.0};
static const char *fn_name[PV_VM_FN_COUNT] = {"exp", "tanh", "erf", "log", "log1p", "sigmoid"};

static float *xs;
static int64_t nx;

static void build_inputs(void) {
  int64_t cap = 4000000;
  xs = malloc(sizeof(float) * (size_t)cap);
  nx = 0;
  for (uint64_t u = 0; u < (1ull << 32); u += 2053)
    xs[nx++] = bits_f((uint32_t)u); /* every sign, exponent */
  for (int i = -400000; i <= 400000; i++)
    xs[nx++] = (float)i * 5e-5f; /* [-20, 20] densely */
  for (int i = 0; i < 200000; i++)
    xs[nx++] = 80.0f + (float)i * 1.25e-4f; /* around exp's overflow */
  for (int i = 0; i < 200000; i++)
    xs[nx++] = -110.0f + (float)i * 1.25e-4f; /* exp's subnormal range */
  for (int i = 0; i < 100000; i++)
    xs[nx++] = -0.999f + (float)i * 2e-5f; /* log1p near -1 .. 1 */
  static const float sp[] = {0.0f,    -0.0f,    INFINITY, -INFINITY, NAN,         -NAN,       FLT_MIN,      -FLT_MIN,
                             1e-45f,  -1e-45f,  FLT_MAX,  -FLT_MAX,  88.72283f,   88.72284f,  88.7f,        89.0f,
                             -87.33f, -103.97f, -103.98f, -104.0f,   -150.0f,     0.625f,     -0.625f,      1.0f,
                             -1.0f,   3.92f,    4.0f,     -4.0f,     0.70710677f, 1.4142135f, 1e-30f,       -1e-30f,
                             0.5f,    2.0f,     9.0f,     -9.0f,     1e-8f,       -1e-8f,     -0.99999994f, 1e30f};
  for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
    xs[nx++] = sp[i];
}

/* the math functions: error bounds per level, special values, bitwise equality with the baseline */
static void test_math(int maxl) {
  float *y = malloc(sizeof(float) * (size_t)nx), *y0 = malloc(sizeof(float) * (size_t)nx);
  for (int fn = 0; fn < PV_VM_FN_COUNT; fn++) {
    for (int l = 0; l <= maxl; l++) {
      pv__vm_set_level(l);
      pv__vm_math(fn, xs, y, nx);
      double worst = 0;
      float wx = 0;
      for (int64_t i = 0; i < nx; i++) {
        double e = ulp_err(y[i], ref_fn(fn, xs[i]));
        if (e > worst) worst = e, wx = xs[i];
      }
      printf("  %-7s %-6s max %.3f ulp at x = %.9g\n", fn_name[fn], pv__vm_level_name(l), worst, wx);
      CHECK(worst <= bound[fn], "%s (%s): max error %.3f ulp at x = %.9g (bound %.1f)", fn_name[fn],
            pv__vm_level_name(l), worst, wx, bound[fn]);
      if (l == 0) {
        memcpy(y0, y, sizeof(float) * (size_t)nx);
      } else {
        int64_t d = 0;
        while (d < nx && same(y[d], y0[d]))
          d++;
        CHECK(d == nx, "%s: %s differs from sse at x = %a: %a vs %a", fn_name[fn], pv__vm_level_name(l),
              d < nx ? xs[d] : 0, d < nx ? y[d] : 0, d < nx ? y0[d] : 0);
      }
    }
  }
  /* the special values, spelled out */
  float in[8] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, -1.0f, 1e-45f, 200.0f}, out[8];
  for (int l = 0; l <= maxl; l++) {
    pv__vm_set_level(l);
    for (int fn = 0; fn < PV_VM_FN_COUNT; fn++) {
      pv__vm_math(fn, in, out, 8);
      CHECK(isnan(out[0]), "%s(NaN) = %g", fn_name[fn], out[0]);
    }
    pv__vm_math(PV_VM_EXP, in, out, 8);
    CHECK(out[1] == INFINITY && out[2] == 0 && out[3] == 1 && out[4] == 1 && out[7] == INFINITY, "exp specials");
    pv__vm_math(PV_VM_TANH, in, out, 8);
    CHECK(out[1] == 1 && out[2] == -1 && out[3] == 0 && signbit(out[4]) && out[6] == 1e-45f, "tanh specials");
    pv__vm_math(PV_VM_ERF, in, out, 8);
    CHECK(out[1] == 1 && out[2] == -1 && out[3] == 0 && signbit(out[4]) && out[7] == 1, "erf specials");
    pv__vm_math(PV_VM_LOG, in, out, 8);
    CHECK(out[1] == INFINITY && isnan(out[2]) && out[3] == -INFINITY && out[4] == -INFINITY && isnan(out[5]),
          "log specials");
    pv__vm_math(PV_VM_LOG1P, in, out, 8);
    CHECK(out[1] == INFINITY && isnan(out[2]) && out[3] == 0 && out[5] == -INFINITY && out[6] == 1e-45f,
          "log1p specials");
    pv__vm_math(PV_VM_SIGMOID, in, out, 8);
    CHECK(out[1] == 1 && out[2] == 0 && out[3] == 0.5f && out[7] == 1, "sigmoid specials");
  }
  free(y);
  free(y0);
}

/* ------------------------------------------------------------ unary op kernels vs float64 formulas */
#define SQRT_2_PI 0.7978845608028654
static double uf(int k, double x) {
  switch (k) {
  case PV_NEG: return -x;
  case PV_EXP: return exp(x);
  case PV_LOG: return log(x);
  case PV_SQRT: return sqrt(x);
  case PV_RSQRT: return 1.0 / sqrt(x);
  case PV_TANH: return tanh(x);
  case PV_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case PV_LOGSIGMOID: return (x < 0 ? x : 0) - log1p(exp(-fabs(x)));
  case PV_SILU: return x / (1.0 + exp(-x));
  case PV_GELU_TANH: return 0.5 * x * (1.0 + tanh(SQRT_2_PI * (x + 0.044715 * x * x * x)));
  case PV_GELU_ERF: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case PV_RELU: return x > 0 ? x : 0;
  case PV_SQUARE: return x * x;
  default: return fabs(x);
  }
}
static double ug(int k, double x) {
  switch (k) {
  case PV_NEG: return -1;
  case PV_EXP: return exp(x);
  case PV_LOG: return 1.0 / x;
  case PV_SQRT: return 0.5 / sqrt(x);
  case PV_RSQRT: return -0.5 / (x * sqrt(x));
  case PV_TANH: return 1 - tanh(x) * tanh(x);
  case PV_SIGMOID: return exp(-x) / ((1 + exp(-x)) * (1 + exp(-x)));
  case PV_LOGSIGMOID: return 1.0 / (1.0 + exp(x));
  case PV_SILU: {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1 + x * (1 - s));
  }
  case PV_GELU_TANH: {
    double u = SQRT_2_PI * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * SQRT_2_PI * (1 + 3 * 0.044715 * x * x);
  }
  case PV_GELU_ERF: return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
  case PV_RELU: return x > 0 ? 1 : 0;
  case PV_SQUARE: return 2 * x;
  default: return x > 0 ? 1 : x < 0 ? -1 : 0;
  }
}

static void test_unary(int maxl) {
  enum { NU = 4003 };
  static float x[NU], dy[NU], y[NU + 1], g[NU + 1], y0[NU], g0[NU];
  for (int k = 0; k < PV_UNARY_COUNT; k++) {
    int pos = k == PV_LOG || k == PV_SQRT || k == PV_RSQRT;
    for (int i = 0; i < NU; i++) {
      x[i] = pos ? 1e-3f + (float)i * 5e-3f : -25.0f + (float)i * 12.5e-3f;
      dy[i] = 0.5f + (float)(i % 7) * 0.25f;
    }
    for (int l = 0; l <= maxl; l++) {
      pv__vm_set_level(l);
      y[NU] = g[NU] = 12345.0f; /* guards: the kernels write n elements, no more */
      pv__vm_unary(k, x, y, NU);
      pv__vm_unary_grad(k, x, dy, g, NU);
      CHECK(y[NU] == 12345.0f && g[NU] == 12345.0f, "unary %d wrote past n", k);
      double wf = 0, wg = 0;
      for (int i = 0; i < NU; i++) {
        /* relative error with an absolute floor of 2^-23 |x| (the rounding of x itself moves f by about that) */
        double rf = uf(k, x[i]), rg = dy[i] * ug(k, x[i]), fl = ldexp(fabs(x[i]) + 1e-30, -23);
        double ef = fabs(y[i] - rf) / (fabs(rf) * ldexp(1, -23) + fl),
               eg = fabs(g[i] - rg) / (fabs(rg) * ldexp(1, -23) + fl);
        if (ef > wf) wf = ef;
        if (eg > wg) wg = eg;
      }
      CHECK(wf <= 8 && wg <= 24, "unary kind %d (%s): error %.2f / grad %.2f (units of 2^-23)", k, pv__vm_level_name(l),
            wf, wg);
      if (l == 0) {
        memcpy(y0, y, sizeof y0);
        memcpy(g0, g, sizeof g0);
      } else {
        CHECK(same_n(y, y0, NU) && same_n(g, g0, NU), "unary kind %d: %s differs from sse", k, pv__vm_level_name(l));
      }
      /* NaN propagates through every kind but relu (0, as the scalar x > 0 ? x : 0) */
      float nx1[3] = {NAN, 1.0f, NAN}, ny[3], nd[3] = {1, 1, 1};
      pv__vm_unary(k, nx1, ny, 3);
      CHECK(k == PV_RELU ? ny[0] == 0 : isnan(ny[0]) && isnan(ny[2]), "unary kind %d: NaN gave %g", k, ny[0]);
      pv__vm_unary_grad(k, nx1, nd, ny, 3);
      CHECK(k == PV_RELU || k == PV_ABS || k == PV_NEG ? !isnan(ny[0]) : isnan(ny[0]),
            "unary_grad kind %d: NaN gave %g", k, ny[0]);
    }
  }
}

/* ------------------------------------------------------------ array kernels vs scalar loops */
static float frand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void test_arrays(int maxl) {
  enum { M = 300 };
  static float a[M], b[M], y[M + 1], w[M], pp[M], mm[M], vv[M], p2[M], m2[M], v2[M];
  static float sm0[2][M][M + 1], sg0[2][M][M + 1]; /* softmax rows and their gradients at level 0, by lg and n */
  uint32_t s = 7;
  for (int i = 0; i < M; i++)
    a[i] = frand(&s) * 3, b[i] = frand(&s) + 2.5f, w[i] = frand(&s);
  for (int l = 0; l <= maxl; l++) {
    pv__vm_set_level(l);
    const char *ln = pv__vm_level_name(l);
    /* binary: every stride combination, lengths 0..40 and M */
    int bad = 0;
    for (int op = 0; op < 4; op++)
      for (int st = 0; st < 4; st++)
        for (int n = 0; n <= 41; n++) {
          int nn = n == 41 ? M : n, sa = st & 1, sb = st >> 1;
          y[nn] = 777.0f;
          pv__vm_binary(op, a, sa, b, sb, y, nn);
          for (int i = 0; i < nn; i++) {
            float u = a[i * sa], v = b[i * sb];
            float r = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v;
            if (memcmp(&r, &y[i], sizeof r)) bad++;
          }
          if (y[nn] != 777.0f) bad++;
        }
    CHECK(!bad, "binary (%s): %d mismatches", ln, bad);
    /* column sums: bitwise the row-order loop */
    bad = 0;
    for (int n = 0; n <= 70; n++) {
      int rows = 4, ld = 75;
      y[n] = 777.0f;
      pv__vm_sum_rows(a, rows, ld, y, n);
      for (int j = 0; j < n; j++) {
        float r = 0;
        for (int q = 0; q < rows; q++)
          r += a[q * ld + j];
        if (memcmp(&r, &y[j], sizeof r)) bad++;
      }
      if (y[n] != 777.0f) bad++;
    }
    CHECK(!bad, "sum_rows (%s): %d mismatches", ln, bad);
    /* reductions */
    for (int n = 0; n <= M; n += 13) {
      double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
      for (int i = 0; i < n; i++) {
        s1 += a[i];
        s2 += (double)a[i] * a[i];
        s3 += ((double)a[i] - 0.25) * ((double)a[i] - 0.25);
        s4 += (double)a[i] * b[i];
      }
      double t = 1e-6 * (n + 1) * 10;
      CHECK(fabs(pv__vm_sum(a, n) - s1) <= t && fabs(pv__vm_sumsq(a, n) - s2) <= t &&
                fabs(pv__vm_sumsq_dev(a, 0.25f, n) - s3) <= t && fabs(pv__vm_dot(a, b, n) - s4) <= t,
            "reductions (%s) n=%d", ln, n);
    }
    /* softmax rows: max, exp sums, grad */
    for (int n = 1; n <= M; n += 37) {
      float z[M], m = pv__vm_scale_add_max(z, a, 0.5f, b, n), mr = -INFINITY;
      bad = 0;
      for (int j = 0; j < n; j++) {
        if (z[j] != 0.5f * a[j] + b[j]) bad++;
        if (z[j] > mr) mr = z[j];
      }
      CHECK(m == mr && !bad, "scale_add_max (%s) n=%d", ln, n);
      double se = pv__vm_exp_sum(y, z, m, n), sr = 0;
      bad = 0;
      for (int j = 0; j < n; j++) {
        double e = exp((double)z[j] - m);
        sr += e;
        if (fabs(y[j] - e) > 2e-7 * e) bad++;
      }
      CHECK(fabs(se - sr) <= 1e-6 * sr && !bad, "exp_sum (%s) n=%d: %g vs %g", ln, n, se, sr);
      for (int lg = 0; lg < 2; lg++) {
        float yy[M], dx[M + 1];
        int nt = n + (n % 3 ? n % 41 : 0); /* entries n..nt-1 excluded (a causal row's tail) */
        if (nt > M) nt = M;
        for (int j = 0; j < M; j++)
          yy[j] = j >= n ? 1.0f : lg ? (j % 5 == 3 ? -INFINITY : z[j] - m - 3) : (j % 5 == 3 ? 0 : y[j] / 10);
        for (int j = 0; j <= M; j++)
          dx[j] = 777.0f;
        bad = 0;
        pv__vm_softmax_grad_row(lg, yy, a, dx, 0.5f, n, nt);
        for (int j = n; j < nt; j++)
          if (dx[j] != 0.0f) bad++;
        double sd = 0;
        for (int j = 0; j < n; j++)
          if (yy[j] != (lg ? -INFINITY : 0)) sd += lg ? a[j] : (double)a[j] * yy[j];
        for (int j = 0; j < n; j++) {
          double r = yy[j] == (lg ? -INFINITY : 0) ? 0
                     : lg                          ? 0.5 * (a[j] - exp(yy[j]) * sd)
                                                   : 0.5 * yy[j] * (a[j] - sd);
          if (fabs(dx[j] - r) > 1e-5 * (1 + fabs(r))) bad++;
        }
        CHECK(!bad && dx[nt] == 777.0f, "softmax_grad_row (%s) log %d n=%d nt=%d", ln, lg, n, nt);
        if (n <= 128) {
          float d2[M + 1];
          pv__vm_softmax_grad_row(lg, yy, a, d2, 0.5f, n, 129 + n % 7);
          CHECK(!memcmp(dx, d2, sizeof(float) * (size_t)n), "softmax_grad_row (%s) log %d n=%d: short = long path", ln,
                lg, n);
        }
        { /* two rows at once: each the bits of the one-row call */
          int n2 = n / 3 + 1;
          float da[M + 1], db[M + 1], dc[M + 1];
          for (int j = 0; j <= M; j++)
            da[j] = db[j] = dc[j] = 777.0f;
          const float *yy2[2] = {yy, yy + 1}, *dd2[2] = {a, b};
          float *dx2[2] = {da, db};
          int64_t nn2[2] = {n, n2};
          pv__vm_softmax_grad_row2(lg, yy2, dd2, dx2, nn2, nt, 0.5f);
          pv__vm_softmax_grad_row(lg, yy + 1, b, dc, 0.5f, n2, nt);
          CHECK(!memcmp(da, dx, sizeof da) && !memcmp(db, dc, sizeof db),
                "softmax_grad_row2 (%s) log %d n=%d,%d nt=%d: the bits of softmax_grad_row", ln, lg, n, n2, nt);
        }
        if (l == 0) memcpy(sg0[lg][n - 1], dx, sizeof dx);
        CHECK(!memcmp(sg0[lg][n - 1], dx, sizeof dx), "softmax_grad_row (%s) log %d n=%d: bitwise level 0", ln, lg, n);
      }
    }
    /* whole softmax rows (in place), and a fully masked row */
    for (int n = 1; n <= M; n += 11)
      for (int lg = 0; lg < 2; lg++) {
        float r[M + 1], mask[M];
        int nt = n + (n % 3 ? n % 41 : 0); /* entries n..nt-1 excluded (a causal row's tail) */
        if (nt > M) nt = M;
        for (int j = 0; j <= M; j++)
          r[j] = j < n ? a[j] : 777.0f, mask[j < M ? j : 0] = j % 4 == 1 ? -INFINITY : 0.0f;
        int ok = pv__vm_softmax_row(r, r, 0.5f, mask, n, nt, lg);
        double mx = -INFINITY, se = 0;
        for (int j = 0; j < n; j++)
          if (j % 4 != 1 && 0.5 * a[j] > mx) mx = 0.5 * a[j];
        for (int j = 0; j < n; j++)
          se += j % 4 == 1 ? 0 : exp(0.5 * a[j] - mx);
        bad = 0;
        for (int j = 0; j < n; j++) {
          double e = j % 4 == 1 ? (lg ? -INFINITY : 0) : lg ? 0.5 * a[j] - mx - log(se) : exp(0.5 * a[j] - mx) / se;
          if (isinf(e) ? r[j] != e : fabs(r[j] - e) > 1e-6 * (1 + fabs(e))) bad++;
        }
        for (int j = n; j < nt; j++)
          if (r[j] != (lg ? -INFINITY : 0.0f)) bad++;
        CHECK(ok && !bad && r[nt] == 777.0f, "softmax_row (%s) log %d n=%d nt=%d", ln, lg, n, nt);
        if (n <= 128) { /* the in-register path (nt <= 128) gives the bits of the long-row path (nt > 128) */
          float r2[M + 1];
          memcpy(r2, a, sizeof(float) * (size_t)n);
          pv__vm_softmax_row(r2, r2, 0.5f, mask, n, 129 + n % 7, lg);
          CHECK(!memcmp(r, r2, sizeof(float) * (size_t)n), "softmax_row (%s) log %d n=%d: short = long path", ln, lg,
                n);
        }
        { /* two rows at once: each the bits of the one-row call (second row: other n, no mask) */
          int n2 = n / 2 + 1;
          float ra[M + 1], rb[M + 1], rc[M + 1];
          for (int j = 0; j <= M; j++)
            ra[j] = j < n ? a[j] : 777.0f, rb[j] = rc[j] = j < n2 ? b[j] : 777.0f;
          float *yy2[2] = {ra, rb};
          const float *xx2[2] = {ra, rb}, *mm2[2] = {mask, NULL};
          int64_t nn2[2] = {n, n2};
          int ok2 = pv__vm_softmax_row2(yy2, xx2, mm2, nn2, nt, 0.5f, lg);
          int okc = pv__vm_softmax_row(rc, rc, 0.5f, NULL, n2, nt, lg);
          CHECK(ok2 == (1 | okc << 1) && !memcmp(ra, r, sizeof ra) && !memcmp(rb, rc, sizeof rb),
                "softmax_row2 (%s) log %d n=%d,%d nt=%d: the bits of softmax_row", ln, lg, n, n2, nt);
        }
        if (l == 0) memcpy(sm0[lg][n - 1], r, sizeof r);
        CHECK(!memcmp(sm0[lg][n - 1], r, sizeof r), "softmax_row (%s) log %d n=%d: bitwise level 0", ln, lg, n);
        for (int j = 0; j < n; j++)
          mask[j] = -INFINITY;
        CHECK(!pv__vm_softmax_row(r, a, 1.0f, mask, n, nt, lg), "softmax_row (%s): fully masked row", ln);
      }
    /* norm rows */
    for (int n = 1; n <= M; n += 29) {
      float mu = 0.125f, rs = 1.5f, dx[M + 1];
      bad = 0;
      dx[n] = 777.0f;
      pv__vm_norm_apply(a, mu, rs, w, b, dx, n);
      for (int j = 0; j < n; j++) {
        float r = (a[j] - mu) * rs * w[j] + b[j];
        if (memcmp(&r, &dx[j], sizeof r)) bad++;
      }
      double sg, sgx, rg = 0, rgx = 0;
      pv__vm_norm_grad_sums(a, w, b, mu, rs, n, &sg, &sgx);
      for (int j = 0; j < n; j++) {
        double gg = (double)b[j] * w[j];
        rg += gg;
        rgx += gg * ((a[j] - mu) * rs);
      }
      CHECK(fabs(sg - rg) <= 1e-5 * n && fabs(sgx - rgx) <= 1e-5 * n, "norm_grad_sums (%s) n=%d", ln, n);
      pv__vm_norm_grad_apply(a, NULL, b, mu, rs, 0.25f, -0.5f, dx, n);
      for (int j = 0; j < n; j++) {
        float r = rs * (b[j] - 0.25f - (a[j] - mu) * rs * -0.5f);
        if (memcmp(&r, &dx[j], sizeof r)) bad++;
      }
      CHECK(!bad && dx[n] == 777.0f, "norm apply (%s) n=%d", ln, n);
    }
    /* rope pairs, in place */
    for (int n = 1; n <= 70; n += 3) {
      float xx[150], r[150];
      for (int j = 0; j < 2 * n; j++)
        xx[j] = a[j];
      for (int j = 0; j < n; j++) {
        r[j] = a[j] * w[j] - a[j + n] * b[j];
        r[j + n] = a[j + n] * w[j] + a[j] * b[j];
      }
      pv__vm_rope_pairs(xx, xx, w, b, n, n, 1, 2 * n);
      CHECK(!memcmp(xx, r, sizeof(float) * 2 * (size_t)n), "rope_pairs (%s) n=%d", ln, n);
    }
    /* AdamW: bitwise the scalar update, both lerp branches */
    for (int sm = 0; sm < 4; sm++) { /* bit 0: lerp branch; bit 1: gradient scale */
      pv_vm_adamw h = {0.999f, sm & 1 ? 0.1f : 0.75f, 0.999f, 0.001f, -1e-3f, 0.3f, 1e-8f, sm & 1, sm >> 1, 0.7f};
      for (int i = 0; i < M; i++)
        pp[i] = p2[i] = a[i], mm[i] = m2[i] = w[i] * 0.1f, vv[i] = v2[i] = b[i] * 0.01f;
      pv__vm_adamw(pp, b, mm, vv, M - 3, &h);
      for (int i = 0; i < M - 3; i++) {
        float pi = p2[i], gi = h.scaled ? b[i] * h.gscale : b[i], mi = m2[i], vi = v2[i];
        pi = pi * h.decay;
        mi = h.small ? mi + h.w1 * (gi - mi) : gi - (gi - mi) * (1.0f - h.w1);
        vi = vi * h.b2;
        vi = vi + h.c2 * gi * gi;
        float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
        p2[i] = pi + h.neg_step * mi / denom, m2[i] = mi, v2[i] = vi;
      }
      CHECK(!memcmp(pp, p2, sizeof pp) && !memcmp(mm, m2, sizeof mm) && !memcmp(vv, v2, sizeof vv),
            "adamw (%s) small %d", ln, sm);
    }
  }
}

int main(void) {
  int maxl = pv__vm_max_level();
  printf("vmath: this CPU runs %s (testing every level up to it)\n", pv__vm_level_name(maxl));
  build_inputs();
  test_math(maxl);
  test_unary(maxl);
  test_arrays(maxl);
  pv__vm_set_level(-1);
  free(xs);
  return pv_t_finish();
}
