/* Op tests: elementwise, reductions, shape ops (forward vs reference, finite-difference gradients). */
#include "opcheck.h"
#include "testutil.h"
#include <stdio.h>
#include <string.h>

#define IN(nd, ...) {nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 1, 0}
#define INU(lo, hi, nd, ...) {nd, {__VA_ARGS__}, OC_UNIFORM, lo, hi, 1, 0}

static pv_tensor *b_add(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_add(g, x[0], x[1]); }
static pv_tensor *b_sub(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_sub(g, x[0], x[1]); }
static pv_tensor *b_mul(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_mul(g, x[0], x[1]); }
static pv_tensor *b_div(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_div(g, x[0], x[1]); }
static pv_tensor *b_scale(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_add_scalar(g, pv_scale(g, x[0], -1.75), 0.5); }
static pv_tensor *b_unary(pv_graph *g, pv_tensor **x, void *u) { return pv_unary(g, (pv_unary_kind)(intptr_t)u, x[0]); }
static pv_tensor *b_unary_grad(pv_graph *g, pv_tensor **x, void *u) { return pv_unary_grad(g, (pv_unary_kind)(intptr_t)u, x[0], x[1]); }
static pv_tensor *b_swiglu(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_swiglu(g, x[0], x[1]); }
pv_tensor *pv__select(pv_graph *g, pv_tensor *x, int64_t index); /* internal (runtime/internal.h): a view of x[index] */
static pv_tensor *b_select(pv_graph *g, pv_tensor **x, void *u) { /* the view read by two consumers */
  pv_tensor *s = pv__select(g, x[0], (int64_t)(intptr_t)u);
  return pv_mul(g, s, pv_add_scalar(g, s, 0.5));
}
static pv_tensor *b_swiglu_multi(pv_graph *g, pv_tensor **x, void *u) { /* a also used elsewhere, b twice */
  (void)u;
  return pv_add(g, pv_swiglu(g, x[0], pv_mul(g, x[1], x[1])), pv_mul(g, x[0], x[1]));
}
static pv_tensor *b_sum(pv_graph *g, pv_tensor **x, void *u) { int a = (int)(intptr_t)u; return pv_sum(g, x[0], a / 2 - 2, a & 1); }
static pv_tensor *b_mean(pv_graph *g, pv_tensor **x, void *u) { int a = (int)(intptr_t)u; return pv_mean(g, x[0], a / 2 - 2, a & 1); }
static pv_tensor *b_max(pv_graph *g, pv_tensor **x, void *u) { int a = (int)(intptr_t)u; return pv_max(g, x[0], a / 2 - 2, a & 1); }
static pv_tensor *b_sumsq(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_sumsq(g, x[0]); }
static pv_tensor *b_sum_to(pv_graph *g, pv_tensor **x, void *u) { (void)u; int64_t s[3] = {3, 1, 5}; return pv_sum_to(g, x[0], 3, s); }
static pv_tensor *b_expand(pv_graph *g, pv_tensor **x, void *u) { (void)u; int64_t s[4] = {2, 3, 4, 5}; return pv_expand(g, x[0], 4, s); }
static pv_tensor *b_reshape(pv_graph *g, pv_tensor **x, void *u) {
  (void)u;
  int64_t s[3] = {5, -1, 2};
  return pv_mul(g, pv_reshape(g, x[0], 3, s), pv_reshape(g, x[0], 3, s));
}
static pv_tensor *b_permute(pv_graph *g, pv_tensor **x, void *u) { (void)u; int p[4] = {2, 0, 3, 1}; return pv_permute(g, x[0], 4, p); }
static pv_tensor *b_transpose(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_transpose(g, x[0], -1, -2); }
static pv_tensor *b_slice(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_slice(g, x[0], 1, 2, 5); }
static pv_tensor *b_slice_neg(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_slice(g, x[0], -1, -3, -1); }
static pv_tensor *b_concat(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_concat(g, 3, x, 1); }
static pv_tensor *b_copy(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_copy(g, x[0]); }
static pv_tensor *b_cast(pv_graph *g, pv_tensor **x, void *u) { (void)u; return pv_cast(g, pv_cast(g, x[0], PV_BF16), PV_F32); }
static pv_tensor *b_multi(pv_graph *g, pv_tensor **x, void *u) { /* x used by several consumers */
  (void)u;
  return pv_add(g, pv_mul(g, x[0], x[0]), pv_unary(g, PV_TANH, x[0]));
}

/* the fused swiglu and its two gradients are bitwise equal to silu, mul and their backward on the CPU. R x C = 97 x
 * 271: odd chunks per thread, the gradients by two swiglu_grad passes; 96 x 272 (a multiple of 64 elements): both
 * gradients by one pass into [2, R, C], read through select views (checked: the graph has the select nodes) */
static void swiglu_bitwise(int threads, int R, int C) {
  enum { NE = 97 * 272 };
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t sh[2] = {R, C};
  pv_tensor *in[5];
  static const char *nm[5] = {"a1", "b1", "a2", "b2", "dy"};
  for (int i = 0; i < 5; i++) {
    in[i] = pv_input(g, nm[i], PV_F32, 2, sh);
    if (i < 4) pv_set_trainable(in[i], 1);
  }
  pv_tensor *y1 = pv_swiglu(g, in[0], in[1]), *y2 = pv_mul(g, pv_unary(g, PV_SILU, in[2]), in[3]);
  pv_set_output(y1, 1);
  pv_set_output(y2, 1);
  pv_tensor *loss = pv_add(g, pv_sum_all(g, pv_mul(g, y1, in[4])), pv_sum_all(g, pv_mul(g, y2, in[4])));
  pv_graph_backward(g, loss);
  pv_tensor *out[6] = {y1, y2, pv_grad(g, in[0]), pv_grad(g, in[2]), pv_grad(g, in[1]), pv_grad(g, in[3])};
  for (int i = 2; i < 6; i++)
    pv_set_output(out[i], 1);
  int fused = (R * C) % 64 == 0;
  CHECK(!strcmp(pv_tensor_op(out[2]), fused ? "select" : "swiglu_grad") &&
            !strcmp(pv_tensor_op(out[4]), fused ? "select" : "swiglu_grad"),
        "swiglu %dx%d: gradients from %s and %s, expected %s", R, C, pv_tensor_op(out[2]), pv_tensor_op(out[4]),
        fused ? "select views of one swiglu_grad" : "two swiglu_grad passes");
  pv_plan_options o = {"cpu", threads, -1, 0};
  pv_plan *p = NULL;
  CHECK(pv_plan_compile(g, &o, &p) == PV_OK, "swiglu bitwise: compile: %s", pv_last_error(ctx));
  static float a[NE], b[NE], dy[NE], r[6][NE];
  uint32_t seed = 12345;
  for (int i = 0; i < NE; i++) { /* |a| up to 100 (sigmoid's tails), some exact zeros */
    seed = seed * 1664525u + 1013904223u;
    a[i] = i % 97 == 0 ? 0.0f : ((float)(seed >> 8) / 16777216.0f - 0.5f) * (i % 3 ? 12.0f : 200.0f);
    seed = seed * 1664525u + 1013904223u;
    b[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 4.0f;
    seed = seed * 1664525u + 1013904223u;
    dy[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 2.0f;
  }
  if (p) {
    const float *data[5] = {a, b, a, b, dy};
    for (int i = 0; i < 5; i++)
      pv_plan_write(p, in[i], PV_F32, data[i], (int64_t)R * C);
    CHECK(pv_plan_run(p) == PV_OK, "swiglu bitwise: run: %s", pv_last_error(ctx));
    for (int i = 0; i < 6; i++)
      pv_plan_read(p, out[i], PV_F32, r[i], (int64_t)R * C);
    static const char *what[3] = {"y", "da", "db"};
    for (int k = 0; k < 3; k++)
      CHECK(memcmp(r[2 * k], r[2 * k + 1], sizeof(float) * (size_t)(R * C)) == 0,
            "swiglu %s (%dx%d, threads %d) differs from the unfused ops", what[k], R, C, threads);
  }
  pv_plan_free(p);
  pv_graph_free(g);
  pv_context_free(ctx);
}

/* select: an index out of range, or a block that does not start on a 256-byte boundary, is a clear error */
static void select_errors(void) {
  static const struct {
    int64_t sh[2], index;
    const char *want;
  } cs[3] = {{{3, 5}, 1, "256-byte"}, {{4, 64}, 4, "out of range"}, {{4, 64}, -1, "out of range"}};
  for (int k = 0; k < 3; k++) {
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *y = pv__select(g, pv_input(g, "x", PV_F32, 2, cs[k].sh), cs[k].index);
    const char *e = pv_graph_error(g);
    CHECK(y == NULL && e && strstr(e, "select") && strstr(e, cs[k].want), "select error %d: got %p, '%s'", k, (void *)y,
          e ? e : "(null)");
    pv_graph_free(g);
    pv_context_free(ctx);
  }
}

static void swiglu_errors(void) {
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  int64_t s1[2] = {3, 5}, s2[2] = {1, 5};
  pv_tensor *y = pv_swiglu(g, pv_input(g, "a", PV_F32, 2, s1), pv_input(g, "b", PV_F32, 2, s2));
  const char *e = pv_last_error(ctx);
  CHECK(y == NULL && e && strstr(e, "swiglu") && strstr(e, "[3, 5]") && strstr(e, "[1, 5]"),
        "swiglu shape mismatch: got %p, error '%s'", (void *)y, e ? e : "(null)");
  pv_graph_free(g);
  pv_context_free(ctx);
}

int main(void) {
  static const char *un[] = {"neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "logsigmoid", "silu",
                             "gelu_tanh", "gelu_erf", "relu", "square", "abs"};
  oc_input same2[2] = {IN(3, 3, 7, 5), IN(3, 3, 7, 5)};
  oc_input bc2[2] = {IN(3, 3, 7, 5), IN(1, 5)};
  oc_input bc3[2] = {IN(3, 3, 1, 5), IN(3, 1, 7, 1)};
  oc_input bc4[2] = {IN(2, 1, 5), IN(4, 2, 3, 4, 5)};
  oc_input pos2[2] = {IN(3, 3, 7, 5), INU(0.5, 2.0, 3, 3, 1, 5)};
  oc_check("add same", 2, same2, b_add, NULL, NULL);
  oc_check("add bias", 2, bc2, b_add, NULL, NULL);
  oc_check("add both broadcast", 2, bc3, b_add, NULL, NULL);
  oc_check("add rank-extend", 2, bc4, b_add, NULL, NULL);
  oc_check("sub broadcast", 2, bc3, b_sub, NULL, NULL);
  oc_check("mul broadcast", 2, bc3, b_mul, NULL, NULL);
  oc_check("mul bias", 2, bc2, b_mul, NULL, NULL);
  oc_check("div broadcast", 2, pos2, b_div, NULL, NULL);
  oc_input one[1] = {IN(2, 9, 13)};
  oc_check("affine", 1, one, b_scale, NULL, NULL);
  for (int k = 0; k < PV_UNARY_COUNT; k++) {
    char nm[64];
    snprintf(nm, sizeof nm, "unary %s", un[k]);
    oc_input in[1] = {IN(2, 9, 13)};
    if (k == PV_LOG || k == PV_SQRT || k == PV_RSQRT) in[0] = (oc_input)INU(0.5, 2.0, 2, 9, 13);
    oc_check(nm, 1, in, b_unary, (void *)(intptr_t)k, NULL);
    snprintf(nm, sizeof nm, "unary_grad %s", un[k]);
    oc_input in2[2] = {in[0], IN(2, 9, 13)};
    in2[0].trainable = in2[1].trainable = 0;
    oc_check(nm, 2, in2, b_unary_grad, (void *)(intptr_t)k, NULL);
  }
  { /* swiglu: odd sizes (SIMD tails), large |a| (sigmoid tails), a used twice */
    oc_input sw[2] = {IN(3, 3, 7, 5), IN(3, 3, 7, 5)};
    oc_check("swiglu", 2, sw, b_swiglu, NULL, NULL);
    oc_input swl[2] = {INU(-30, 30, 2, 11, 53), IN(2, 11, 53)};
    oc_check("swiglu large |a|", 2, swl, b_swiglu, NULL, NULL);
    oc_input swm[2] = {IN(2, 1, 33), IN(2, 1, 33)};
    oc_check("swiglu multi-consumer", 2, swm, b_swiglu_multi, NULL, NULL);
    /* both gradients at once (a multiple of 64 elements: select views into one [2, ...] result) */
    oc_input swf[2] = {INU(-12, 12, 3, 2, 3, 64), IN(3, 2, 3, 64)};
    oc_check("swiglu fused gradients", 2, swf, b_swiglu, NULL, NULL);
    oc_input swfm[2] = {IN(2, 4, 32), IN(2, 4, 32)};
    oc_check("swiglu fused gradients, multi-consumer", 2, swfm, b_swiglu_multi, NULL, NULL);
    swiglu_bitwise(1, 97, 271);
    swiglu_bitwise(3, 97, 271);
    swiglu_bitwise(1, 96, 272);
    swiglu_bitwise(5, 96, 272);
    swiglu_errors();
  }
  { /* select (a view at an offset: block i of [n, ...]), forward and gradient on every backend */
    oc_input sl[1] = {IN(3, 3, 4, 16)};
    oc_check("select block 1 of [3,4,16]", 1, sl, b_select, (void *)(intptr_t)1, NULL);
    oc_check("select block 2 of [3,4,16]", 1, sl, b_select, (void *)(intptr_t)2, NULL);
    select_errors();
  }
  for (int a = 0; a < 8; a++) { /* axis -2..1 over a 4-d tensor, keepdim 0/1 */
    char nm[64];
    oc_input in[1] = {IN(4, 2, 3, 5, 7)};
    snprintf(nm, sizeof nm, "sum axis %d keep %d", a / 2 - 2, a & 1);
    oc_check(nm, 1, in, b_sum, (void *)(intptr_t)a, NULL);
    snprintf(nm, sizeof nm, "mean axis %d keep %d", a / 2 - 2, a & 1);
    oc_check(nm, 1, in, b_mean, (void *)(intptr_t)a, NULL);
    snprintf(nm, sizeof nm, "max axis %d keep %d", a / 2 - 2, a & 1);
    oc_check(nm, 1, in, b_max, (void *)(intptr_t)a, NULL);
  }
  oc_input big[1] = {IN(2, 37, 41)};
  oc_check("sumsq", 1, big, b_sumsq, NULL, NULL);
  oc_input st[1] = {IN(4, 2, 3, 4, 5)};
  oc_check("sum_to", 1, st, b_sum_to, NULL, NULL);
  oc_input ex[1] = {IN(3, 3, 1, 5)};
  oc_check("expand", 1, ex, b_expand, NULL, NULL);
  oc_input rs[1] = {IN(3, 2, 5, 3)};
  oc_check("reshape (view) used twice", 1, rs, b_reshape, NULL, NULL);
  oc_input pm[1] = {IN(4, 2, 3, 5, 7)};
  oc_check("permute", 1, pm, b_permute, NULL, NULL);
  oc_check("transpose", 1, pm, b_transpose, NULL, NULL);
  oc_input sl[1] = {IN(3, 3, 7, 5)};
  oc_check("slice", 1, sl, b_slice, NULL, NULL);
  oc_check("slice negative", 1, sl, b_slice_neg, NULL, NULL);
  oc_input cc[3] = {IN(3, 2, 3, 5), IN(3, 2, 1, 5), IN(3, 2, 4, 5)};
  oc_check("concat", 3, cc, b_concat, NULL, NULL);
  oc_check("copy", 1, sl, b_copy, NULL, NULL);
  oc_input slc[1] = {IN(3, 3, 7, 5)};
  slc[0].trainable = 0; /* rounding to bf16 is a step function: forward only */
  oc_check("cast bf16 round trip", 1, slc, b_cast, NULL, NULL);
  oc_check("multi-consumer accumulation", 1, sl, b_multi, NULL, NULL);
  return pv_t_finish();
}
