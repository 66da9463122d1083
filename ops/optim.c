/* Updates: side effects on variables (PV_OPF_UPDATE: scheduled after every other node, always kept, not
 * differentiable). Each returns a [1] f32 token (0).
 *  adamw(param, grad, m, v, hyper) with hyper = (lr, beta1, beta2, eps, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t
 *        [, gscale]), per group lr_scale, wd; as torch.optim.AdamW (single tensor), scalars in float64, tensor
 *        math in f32. With the optional 7th entry the gradient is first scaled, g ← g·gscale in f32 (global-norm
 *        clipping's coefficient, folded in: the same numbers as a separate multiply, one pass less over g):
 *          lr' = lr·lr_scale;  p ← p·(1 - lr'·wd);  m ← lerp(m, g, 1 - beta1);  v ← v·beta2 + (1 - beta2)·g·g;
 *          p ← p + (-lr'/bc1)·m / (sqrt(v)/sqrt(bc2) + eps).
 *        lerp(m, g, w) = m + w·(g - m) when |w| < 0.5, else g - (g - m)·(1 - w) (as ATen).
 *  assign(dst, value[, factor]): dst ← value·factor, or dst ← dst + value·factor (accumulate); factor [1] or 1.
 * Shapes: param, m, v, dst: f32 var-nodes of one shape; grad, value: f32 of that shape; hyper: 6 or 7 f32. */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  double lr_scale, wd;
} adamw_p;
typedef struct {
  int accumulate;
} assign_p;

static pv_status token_shape(pv_tensor *t) {
  int64_t one = 1;
  pv__set_shape(t, PV_F32, 1, &one);
  return PV_OK;
}

/* src k must be an f32 var-node of shape ref's (ref NULL: any shape) */
static int need_var(pv_tensor *t, int k, const char *what, const pv_tensor *ref, const char *refwhat) {
  const char *nm = pv__opdef(t->op)->name;
  pv_tensor *s = t->src[k];
  char b1[128], b2[128];
  if (!(s->flags & PV_NF_VAR)) {
    pv__gerr(t->graph, PV_ERR_INVALID, "%s: %s '%s' (node %d, op %s) %s must be a variable (pv_use_var)", nm, what,
             pv_tensor_name(s), s->id, pv__opdef(s->op)->name, PV_SHAPESTR(b1, s));
    return 0;
  }
  if (s->dtype != PV_F32) {
    pv__gerr(t->graph, PV_ERR_DTYPE, "%s: %s variable '%s' %s has dtype %s, expected f32", nm, what, pv_tensor_name(s),
             PV_SHAPESTR(b1, s), pv_dtype_name(s->dtype));
    return 0;
  }
  if (ref && !pv__same_shape(s, ref)) {
    pv__gerr(t->graph, PV_ERR_SHAPE, "%s: %s '%s' %s does not match %s '%s' %s", nm, what, pv_tensor_name(s),
             PV_SHAPESTR(b1, s), refwhat, pv_tensor_name(ref), PV_SHAPESTR(b2, ref));
    return 0;
  }
  return 1;
}

/* src k must be f32 with ref's shape */
static int need_like(pv_tensor *t, int k, const char *what, const pv_tensor *ref, const char *refwhat) {
  const char *nm = pv__opdef(t->op)->name;
  pv_tensor *s = t->src[k];
  char b1[128], b2[128];
  if (s->dtype != PV_F32) {
    pv__gerr(t->graph, PV_ERR_DTYPE, "%s: %s '%s' %s has dtype %s, expected f32", nm, what, pv_tensor_name(s),
             PV_SHAPESTR(b1, s), pv_dtype_name(s->dtype));
    return 0;
  }
  if (!pv__same_shape(s, ref)) {
    pv__gerr(t->graph, PV_ERR_SHAPE, "%s: %s '%s' %s does not match %s '%s' %s", nm, what, pv_tensor_name(s),
             PV_SHAPESTR(b1, s), refwhat, pv_tensor_name(ref), PV_SHAPESTR(b2, ref));
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------ adamw */
static pv_status adamw_shape(pv_tensor *t) {
  static const char *what[4] = {"param", "grad", "m", "v"};
  pv_tensor *p = t->src[0], *h = t->src[4];
  if (!need_var(t, 0, "param", NULL, NULL) || !need_like(t, 1, "grad", p, "param") ||
      !need_var(t, 2, "m", p, "param") || !need_var(t, 3, "v", p, "param"))
    return t->graph->st;
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++)
      if (t->src[i] == t->src[j])
        return PV_FAIL(t, PV_ERR_INVALID, "adamw: %s and %s are the same variable '%s'", what[i], what[j],
                       pv_tensor_name(t->src[i]));
  char b[128];
  if (h->dtype != PV_F32 || (h->numel != 6 && h->numel != 7))
    return PV_FAIL(t, PV_ERR_SHAPE,
                   "adamw: hyper '%s' is %s %s, expected f32 [6] (lr, beta1, beta2, eps, bc1, bc2) or [7] (and a "
                   "gradient scale)",
                   pv_tensor_name(h), pv_dtype_name(h->dtype), PV_SHAPESTR(b, h));
  return token_shape(t);
}

/* the float64 scalars torch computes in Python */
typedef struct {
  double decay, w1, b2, c2, neg_step, bc2_sqrt, eps;
} adamw_s;
static adamw_s adamw_scalars(const adamw_p *p, double lr, double b1, double b2, double eps, double bc1, double bc2) {
  adamw_s s;
  double lr_eff = lr * p->lr_scale;
  s.decay = 1.0 - lr_eff * p->wd;
  s.w1 = 1.0 - b1;
  s.b2 = b2;
  s.c2 = 1.0 - b2;
  s.neg_step = -(lr_eff / bc1);
  s.bc2_sqrt = sqrt(bc2);
  s.eps = eps;
  return s;
}

static void adamw_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const float *h = a->src[4];
  adamw_s s = adamw_scalars(PV_CPARAMS(adamw_p, t), h[0], h[1], h[2], h[3], h[4], h[5]);
  int scaled = t->src[4]->numel == 7;
  pv_vm_adamw f = {.decay = (float)s.decay,
                   .w1 = (float)s.w1,
                   .b2 = (float)s.b2,
                   .c2 = (float)s.c2,
                   .neg_step = (float)s.neg_step,
                   .bc2_sqrt = (float)s.bc2_sqrt,
                   .eps = (float)s.eps,
                   .small = fabsf((float)s.w1) < 0.5f,
                   .scaled = scaled,
                   .gscale = scaled ? h[6] : 1.0f};
  float *p = a->srcw[0], *m = a->srcw[2], *v = a->srcw[3];
  const float *g = a->src[1];
  int64_t i0, i1;
  pv_split(t->src[0]->numel, a->ith, a->nth, &i0, &i1);
  /* per element, in f32: p·decay; m lerp; v·b2 + c2·g·g; p + neg_step·m / (sqrt(v)/bc2_sqrt + eps). All of an
   * element's loads come before its stores (grad may alias another operand); runtime/cpu/vmath, SIMD. */
  if (i1 > i0) pv__vm_adamw(p + i0, g + i0, m + i0, v + i0, i1 - i0, &f);
  if (a->ith == 0) *(float *)a->dst = 0;
}

static void adamw_ref(const pv_tensor *t, double *y, const double *const *src, double *const *w, int *err) {
  (void)err;
  const double *h = src[4];
  adamw_s s = adamw_scalars(PV_CPARAMS(adamw_p, t), h[0], h[1], h[2], h[3], h[4], h[5]);
  double *p = w[0], *m = w[2], *v = w[3];
  const double *g = src[1];
  double gs = t->src[4]->numel == 7 ? h[6] : 1.0;
  for (int64_t i = 0; i < t->src[0]->numel; i++) {
    double pi = p[i], gi = g[i] * gs, mi = m[i], vi = v[i];
    pi *= s.decay;
    mi = mi + s.w1 * (gi - mi);
    vi = vi * s.b2 + s.c2 * gi * gi;
    pi += s.neg_step * mi / (sqrt(vi) / s.bc2_sqrt + s.eps);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
  }
  y[0] = 0;
}

/* a double as a (hi, lo) pair of floats (the shaders' double-float scalars) */
static void push_df(pv_vk_dispatch *d, double x) {
  float hi = (float)x;
  pv_vk_pushf(d, hi);
  pv_vk_pushf(d, (float)(x - (double)hi));
}

/* Vulkan (shaders/adamw.comp): the var sources are bound read-write and updated in place; same f32 math as above. */
static int adamw_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  const adamw_p *p = PV_CPARAMS(adamw_p, t);
  int64_t n = t->src[0]->numel;
  if (max < 1 || n > UINT32_MAX) return 0;
  int bind[6] = {-1, 0, 1, 2, 3, 4};
  pv_vk_begin(d, "adamw", 6, bind);
  pv_vk_push(d, (uint32_t)n);
  push_df(d, p->lr_scale);
  push_df(d, p->wd);
  pv_vk_push(d, t->src[4]->numel == 7);   /* hyper[6]: a gradient scale */
  pv_vk_grid(d, n > 0 ? n : 1, PV_VK_WG); /* the token is written even for an empty param */
  d->work = 16.0 * (double)n;
  return 1;
}

const pv_op_def pv_op_adamw = {.name = "adamw",
                               .min_src = 5,
                               .max_src = 5,
                               .flags = PV_OPF_UPDATE,
                               .nodiff = 0x1fu,
                               .shape = adamw_shape,
                               .cpu = adamw_cpu,
                               .ref = adamw_ref,
                               .vk = adamw_vk};

pv_tensor *pv_adamw(pv_graph *g, pv_tensor *param, pv_tensor *grad, pv_tensor *m, pv_tensor *v, pv_tensor *hyper,
                    double lr_scale, double weight_decay) {
  adamw_p p = {lr_scale, weight_decay};
  pv_tensor *s[5] = {param, grad, m, v, hyper};
  return pv__node(g, PV_OP_ADAMW, 5, s, &p, sizeof p);
}

/* ------------------------------------------------------------ assign */
static pv_status assign_shape(pv_tensor *t) {
  if (!need_var(t, 0, "dst", NULL, NULL) || !need_like(t, 1, "value", t->src[0], "dst")) return t->graph->st;
  if (t->nsrc == 3) {
    pv_tensor *f = t->src[2];
    char b[128];
    if (f->dtype != PV_F32 || f->numel != 1)
      return PV_FAIL(t, PV_ERR_SHAPE, "assign: factor '%s' is %s %s, expected f32 [1]", pv_tensor_name(f),
                     pv_dtype_name(f->dtype), PV_SHAPESTR(b, f));
  }
  return token_shape(t);
}
static void assign_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int acc = PV_CPARAMS(assign_p, t)->accumulate;
  float *d = a->srcw[0];
  const float *x = a->src[1];
  int64_t i0, i1;
  pv_split(t->src[0]->numel, a->ith, a->nth, &i0, &i1);
  if (t->nsrc == 3) {
    const float f = *(const float *)a->src[2];
    if (acc)
      for (int64_t i = i0; i < i1; i++)
        d[i] = d[i] + x[i] * f;
    else
      for (int64_t i = i0; i < i1; i++)
        d[i] = x[i] * f;
  } else if (acc) {
    for (int64_t i = i0; i < i1; i++)
      d[i] = d[i] + x[i];
  } else if (d != x) {
    memmove(d + i0, x + i0, sizeof(float) * (size_t)(i1 - i0));
  }
  if (a->ith == 0) *(float *)a->dst = 0;
}
static void assign_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)err;
  int acc = PV_CPARAMS(assign_p, t)->accumulate;
  double f = t->nsrc == 3 ? s[2][0] : 1.0, *d = w[0];
  for (int64_t i = 0; i < t->src[0]->numel; i++)
    d[i] = acc ? d[i] + s[1][i] * f : s[1][i] * f;
  y[0] = 0;
}
/* Vulkan (shaders/assign.comp): dst (a var source) bound read-write and updated in place. */
static int assign_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  int64_t n = t->src[0]->numel;
  if (max < 1 || n > UINT32_MAX) return 0;
  int bind[4] = {-1, 0, 1, 2};
  pv_vk_begin(d, "assign", t->nsrc + 1, bind);
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, (PV_CPARAMS(assign_p, t)->accumulate ? 1u : 0u) | (t->nsrc == 3 ? 2u : 0u));
  pv_vk_grid(d, n > 0 ? n : 1, PV_VK_WG);
  d->work = (double)n;
  return 1;
}
const pv_op_def pv_op_assign = {.name = "assign",
                                .min_src = 2,
                                .max_src = 3,
                                .flags = PV_OPF_UPDATE,
                                .nodiff = 0x7u,
                                .shape = assign_shape,
                                .cpu = assign_cpu,
                                .ref = assign_ref,
                                .vk = assign_vk};

pv_tensor *pv_assign(pv_graph *g, pv_tensor *dst, pv_tensor *value, pv_tensor *factor, int accumulate) {
  assign_p p = {accumulate ? 1 : 0};
  pv_tensor *s[3] = {dst, value, factor};
  return pv__node(g, PV_OP_ASSIGN, factor ? 3 : 2, s, &p, sizeof p);
}
