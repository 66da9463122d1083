/* SwiGLU, the gated MLP activation (Qwen2 / Llama: down(swiglu(gate(x), up(x)))).
 *  swiglu:      y = silu(a)·b = a·s(a)·b, s = sigmoid; a, b and y of one shape (no broadcasting).
 *               da = swiglu_grad(a, b, dy, 0) = dy·b·silu'(a), silu'(a) = s(a)·(1 + a·(1 - s(a)));
 *               db = swiglu_grad(a, b, dy, 1) = dy·silu(a).
 *  swiglu_grad: backward only (no backward rule); sources (a, b, dy), `which` picks da (0), db (1) or both (2):
 *               y [2, ...a] = [da, db], one pass computing s(a) once, read through two select views (when both
 *               gradients are needed and the db block starts on a PV_ALIGN-byte boundary; else 0 and 1). Instead of
 *               the silu, mul, mul and unary_grad passes of the unfused form; silu(a) is not kept for the backward.
 * CPU kernels: runtime/cpu/vmath (pv__vm_swiglu*), the same f32 expressions as unary silu / silu' and binary mul in
 * the same order, so the results are bitwise equal to the unfused ops. The reference is float64 libm.
 * Shapes: a, b, dy, y up to 8 dims, f32, all equal. */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int which; /* swiglu_grad: 0 da, 1 db */
} swiglu_p;

static pv_status swiglu_shape(pv_tensor *t) {
  int grad = t->nsrc == 3;
  const char *nm = grad ? "swiglu_grad" : "swiglu";
  if (grad) {
    int w = PV_CPARAMS(swiglu_p, t)->which;
    if (w != 0 && w != 1 && w != 2)
      return PV_FAIL(t, PV_ERR_INVALID, "swiglu_grad: which is %d, expected 0 (da), 1 (db) or 2 (both)", w);
  }
  for (int i = 0; i < t->nsrc; i++)
    if (!pv_need_f32(t, i)) return t->graph->st;
  static const char *src[3] = {"a", "b", "dy"};
  for (int i = 1; i < t->nsrc; i++)
    if (!pv__same_shape(t->src[0], t->src[i])) {
      char b1[128], b2[128];
      return PV_FAIL(t, PV_ERR_SHAPE, "%s: a %s and %s %s differ (swiglu does not broadcast)", nm,
                     PV_SHAPESTR(b1, t->src[0]), src[i], PV_SHAPESTR(b2, t->src[i]));
    }
  const pv_tensor *a = t->src[0];
  if (grad && PV_CPARAMS(swiglu_p, t)->which == 2) { /* [2, ...a] */
    int64_t sh[PV_MAX_DIMS];
    char b1[128];
    if (a->ndim >= PV_MAX_DIMS)
      return PV_FAIL(t, PV_ERR_SHAPE, "swiglu_grad: a %s has too many dimensions for both gradients",
                     PV_SHAPESTR(b1, a));
    sh[0] = 2;
    for (int d = 0; d < a->ndim; d++)
      sh[d + 1] = a->shape[d];
    pv__set_shape(t, PV_F32, a->ndim + 1, sh);
    return PV_OK;
  }
  pv__set_shape(t, PV_F32, a->ndim, a->shape);
  return PV_OK;
}

static void swiglu_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  const float *x = a->src[0], *b = a->src[1];
  float *y = a->dst;
  if (i1 > i0) pv__vm_swiglu(x + i0, b + i0, y + i0, i1 - i0);
}
static void swiglu_grad_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  const float *x = a->src[0], *b = a->src[1], *dy = a->src[2];
  float *y = a->dst;
  int which = PV_CPARAMS(swiglu_p, t)->which;
  if (which == 2) { /* t->numel counts both blocks */
    int64_t n = t->src[0]->numel;
    pv_split(n, a->ith, a->nth, &i0, &i1);
    if (i1 > i0) pv__vm_swiglu_grad2(x + i0, b + i0, dy + i0, y + i0, y + n + i0, i1 - i0);
    return;
  }
  if (i1 > i0) pv__vm_swiglu_grad(which, x + i0, b + i0, dy + i0, y + i0, i1 - i0);
}

static void swiglu_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  for (int64_t i = 0; i < t->numel; i++) {
    double x = s[0][i];
    y[i] = x / (1.0 + exp(-x)) * s[1][i];
  }
}
static void swiglu_grad_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int which = PV_CPARAMS(swiglu_p, t)->which;
  int64_t n = t->src[0]->numel;
  for (int64_t i = 0; i < n; i++) {
    double x = s[0][i], sg = 1.0 / (1.0 + exp(-x)), da = s[2][i] * s[1][i] * (sg * (1 + x * (1 - sg))),
           db = s[2][i] * x * sg;
    if (which == 2)
      y[i] = da, y[n + i] = db;
    else
      y[i] = which == 0 ? da : db;
  }
}

static pv_tensor *swiglu_grad(pv_graph *g, pv_tensor *a, pv_tensor *b, pv_tensor *dy, int which) {
  swiglu_p p = {which};
  pv_tensor *s[3] = {a, b, dy};
  return pv__node(g, PV_OP_SWIGLU_GRAD, 3, s, &p, sizeof p);
}
static pv_status swiglu_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  const pv_tensor *a = t->src[0];
  if (need[0] && need[1] && a->ndim < PV_MAX_DIMS && (a->numel * 4) % PV_ALIGN == 0) {
    pv_tensor *both = swiglu_grad(g, t->src[0], t->src[1], dy, 2);
    dsrc[0] = pv__select(g, both, 0);
    dsrc[1] = pv__select(g, both, 1);
    return g->st;
  }
  for (int k = 0; k < 2; k++)
    if (need[k]) dsrc[k] = swiglu_grad(g, t->src[0], t->src[1], dy, k);
  return g->st;
}

/* Vulkan: shaders/swiglu.comp (y = silu(a)·b) and shaders/swiglu_grad.comp (push 0: elements of a, 1: which) */
static int swiglu_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int grad = t->nsrc == 3;
  int bind[4] = {-1, 0, 1, 2};
  int64_t n = t->src[0]->numel; /* which 2: y holds 2 n */
  if (n > UINT32_MAX / 2) return 0;
  pv_vk_begin(d, grad ? "swiglu_grad" : "swiglu", t->nsrc + 1, bind);
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, grad ? (uint32_t)PV_CPARAMS(swiglu_p, t)->which : 0u);
  pv_vk_grid(d, n, PV_VK_WG);
  d->work = 20.0 * (double)t->numel;
  return 1;
}

const pv_op_def pv_op_swiglu = {.name = "swiglu",
                                .min_src = 2,
                                .max_src = 2,
                                .flags = PV_OPF_INPLACE,
                                .shape = swiglu_shape,
                                .backward = swiglu_backward,
                                .cpu = swiglu_cpu,
                                .ref = swiglu_ref,
                                .vk = swiglu_vk};
const pv_op_def pv_op_swiglu_grad = {.name = "swiglu_grad",
                                     .min_src = 3,
                                     .max_src = 3,
                                     .flags = PV_OPF_INPLACE,
                                     .shape = swiglu_shape,
                                     .cpu = swiglu_grad_cpu,
                                     .ref = swiglu_grad_ref,
                                     .vk = swiglu_vk};

pv_tensor *pv_swiglu(pv_graph *g, pv_tensor *a, pv_tensor *b) {
  swiglu_p p = {0};
  pv_tensor *s[2] = {a, b};
  return pv__node(g, PV_OP_SWIGLU, 2, s, &p, sizeof p);
}
