/* SwiGLU, the gated MLP activation (Qwen2 / Llama: down(swiglu(gate(x), up(x)))).
 *  swiglu:      y = silu(a)·b = a·s(a)·b, s = sigmoid; a, b and y of one shape (no broadcasting).
 *               da = swiglu_grad(a, b, dy, 0) = dy·b·silu'(a), silu'(a) = s(a)·(1 + a·(1 - s(a)));
 *               db = swiglu_grad(a, b, dy, 1) = dy·silu(a).
 *  swiglu_grad: backward only (no backward rule); sources (a, b, dy), `which` picks da (0) or db (1). Each gradient
 *               is one pass over its sources (one op has one output), instead of the silu, mul, mul and
 *               unary_grad passes of the unfused form, and silu(a) is not kept for the backward.
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
    if (w != 0 && w != 1) return PV_FAIL(t, PV_ERR_INVALID, "swiglu_grad: which is %d, expected 0 (da) or 1 (db)", w);
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
  pv__set_shape(t, PV_F32, t->src[0]->ndim, t->src[0]->shape);
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
  if (i1 > i0) pv__vm_swiglu_grad(PV_CPARAMS(swiglu_p, t)->which, x + i0, b + i0, dy + i0, y + i0, i1 - i0);
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
  for (int64_t i = 0; i < t->numel; i++) {
    double x = s[0][i], sg = 1.0 / (1.0 + exp(-x));
    y[i] = which == 0 ? s[2][i] * s[1][i] * (sg * (1 + x * (1 - sg))) : s[2][i] * x * sg;
  }
}

static pv_tensor *swiglu_grad(pv_graph *g, pv_tensor *a, pv_tensor *b, pv_tensor *dy, int which) {
  swiglu_p p = {which};
  pv_tensor *s[3] = {a, b, dy};
  return pv__node(g, PV_OP_SWIGLU_GRAD, 3, s, &p, sizeof p);
}
static pv_status swiglu_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  for (int k = 0; k < 2; k++)
    if (need[k]) dsrc[k] = swiglu_grad(g, t->src[0], t->src[1], dy, k);
  return g->st;
}

/* Vulkan: shaders/swiglu.comp (y = silu(a)·b) and shaders/swiglu_grad.comp (push 1: which) */
static int swiglu_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int grad = t->nsrc == 3;
  int bind[4] = {-1, 0, 1, 2};
  pv_vk_begin(d, grad ? "swiglu_grad" : "swiglu", t->nsrc + 1, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, grad ? (uint32_t)PV_CPARAMS(swiglu_p, t)->which : 0u);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  d->work = 20.0 * (double)t->numel;
  return 1;
}

const pv_op_def pv_op_swiglu = {.name = "swiglu", .min_src = 2, .max_src = 2, .flags = PV_OPF_INPLACE,
                                .shape = swiglu_shape, .backward = swiglu_backward, .cpu = swiglu_cpu,
                                .ref = swiglu_ref, .vk = swiglu_vk};
const pv_op_def pv_op_swiglu_grad = {.name = "swiglu_grad", .min_src = 3, .max_src = 3, .flags = PV_OPF_INPLACE,
                                     .shape = swiglu_shape, .cpu = swiglu_grad_cpu, .ref = swiglu_grad_ref,
                                     .vk = swiglu_vk};

pv_tensor *pv_swiglu(pv_graph *g, pv_tensor *a, pv_tensor *b) {
  swiglu_p p = {0};
  pv_tensor *s[2] = {a, b};
  return pv__node(g, PV_OP_SWIGLU, 2, s, &p, sizeof p);
}
