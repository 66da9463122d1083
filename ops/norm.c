/* Normalisation over the last axis (D). x [..., D] f32, w [D] or absent, b [D] or absent -> y [..., D].
 *  layer_norm:  mu = mean(x), var = mean((x-mu)²) (biased, as torch), r = 1/sqrt(var+eps), xhat = (x-mu)·r,
 *               y = xhat·w + b.
 *               dx = layer_norm_grad(x, w, dy) = r·(g − mean(g) − xhat·mean(g·xhat)) with g = dy·w,
 *               dw = sum_to(dy·xhat, [D]), db = sum_to(dy, [D]); xhat = layer_norm(x, NULL, NULL, eps).
 *  rms_norm:    r = 1/sqrt(mean(x²)+eps), xhat = x·r, y = xhat·w (HF Qwen2 RMSNorm).
 *               dx = rms_norm_grad(x, w, dy) = r·(g − xhat·mean(g·xhat)) with g = dy·w,
 *               dw = sum_to(dy·xhat, [D]); xhat = rms_norm(x, NULL, eps).
 *  *_grad:      backward only (no backward rule); sources (x, [w], dy), recompute the row statistics.
 * Sources: x, then w if present, then b if present (params record which). The CPU kernels (runtime/cpu/vmath) sum
 * the row statistics in blocks (f32 within blocks of at most 128 elements, float64 across blocks; the variance as
 * Σ (x - mu)² around the f32 mean); the reference in float64. Kernels read a whole row before writing it, so the
 * output may reuse x's buffer (in place). */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  double eps;
  int has_w, has_b;
} norm_p;

static int is_grad_op(int op) { return op == PV_OP_LAYER_NORM_GRAD || op == PV_OP_RMS_NORM_GRAD; }
static int is_rms_op(int op) { return op == PV_OP_RMS_NORM || op == PV_OP_RMS_NORM_GRAD; }

/* ------------------------------------------------------------ shape rule (all four ops) */
static pv_status norm_shape(pv_tensor *t) {
  const norm_p *p = PV_CPARAMS(norm_p, t);
  const char *nm = pv__opdef(t->op)->name;
  int grad = is_grad_op(t->op);
  int want = 1 + (p->has_w ? 1 : 0) + (!grad && p->has_b ? 1 : 0) + (grad ? 1 : 0);
  if (t->nsrc != want) return PV_FAIL(t, PV_ERR_INVALID, "%s: %d inputs given, expected %d", nm, t->nsrc, want);
  for (int k = 0; k < t->nsrc; k++)
    if (!pv_need_f32(t, k)) return t->graph->st;
  if (!(p->eps >= 0) || !isfinite(p->eps))
    return PV_FAIL(t, PV_ERR_INVALID, "%s: eps must be finite and >= 0, got %g", nm, p->eps);
  pv_tensor *x = t->src[0];
  char b1[128], b2[128];
  if (x->ndim < 1) return PV_FAIL(t, PV_ERR_SHAPE, "%s: x %s needs at least one dimension", nm, PV_SHAPESTR(b1, x));
  int64_t D = x->shape[x->ndim - 1];
  int np = grad ? (p->has_w ? 1 : 0) : (p->has_w ? 1 : 0) + (p->has_b ? 1 : 0);
  for (int k = 1; k <= np; k++) {
    pv_tensor *v = t->src[k];
    const char *role = (k == 1 && p->has_w) ? "w" : "b";
    if (v->ndim != 1 || v->shape[0] != D)
      return PV_FAIL(t, PV_ERR_SHAPE, "%s: %s has shape %s, expected [%lld] for x %s", nm, role, PV_SHAPESTR(b1, v),
                     (long long)D, PV_SHAPESTR(b2, x));
  }
  if (grad && !pv__same_shape(x, t->src[t->nsrc - 1]))
    return PV_FAIL(t, PV_ERR_SHAPE, "%s: x %s and dy %s differ", nm, PV_SHAPESTR(b1, x),
                   PV_SHAPESTR(b2, t->src[t->nsrc - 1]));
  pv__set_shape(t, PV_F32, x->ndim, x->shape);
  return PV_OK;
}

/* ------------------------------------------------------------ CPU kernels (f32, double row statistics) */
/* mean and 1/sqrt(var+eps) (layer norm) or 0 and 1/sqrt(mean(x²)+eps) (rms) of one row */
static inline void row_stats_f(const float *x, int64_t D, int rms, double eps, float *mu, float *r) {
  float m = rms ? 0.0f : (float)(pv__vm_sum(x, D) / (double)D);
  double v = (rms ? pv__vm_sumsq(x, D) : pv__vm_sumsq_dev(x, m, D)) / (double)D;
  *mu = m;
  *r = (float)(1.0 / sqrt(v + eps));
}

static void norm_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = is_rms_op(t->op);
  int64_t D = t->shape[t->ndim - 1], rows = D ? t->numel / D : 0, r0, r1;
  const float *x = a->src[0];
  const float *w = p->has_w ? a->src[1] : NULL;
  const float *b = !rms && p->has_b ? a->src[p->has_w ? 2 : 1] : NULL;
  float *y = a->dst;
  pv_split(rows, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    float mu, rs;
    if (r + PV_PREFETCH_ROWS < r1) pv_prefetch(xr + PV_PREFETCH_ROWS * D, D);
    row_stats_f(xr, D, rms, p->eps, &mu, &rs);
    pv__vm_norm_apply(xr, mu, rs, w, b, yr, D); /* ((x - mu)·rs)·w + b */
  }
}

static void norm_grad_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = is_rms_op(t->op);
  int64_t D = t->shape[t->ndim - 1], rows = D ? t->numel / D : 0, r0, r1;
  const float *x = a->src[0];
  const float *w = p->has_w ? a->src[1] : NULL;
  const float *dy = a->src[p->has_w ? 2 : 1];
  float *dx = a->dst;
  pv_split(rows, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = x + r * D, *dyr = dy + r * D;
    float *dxr = dx + r * D;
    float mu, rs;
    if (r + PV_PREFETCH_ROWS < r1) {
      pv_prefetch(xr + PV_PREFETCH_ROWS * D, D);
      pv_prefetch(dyr + PV_PREFETCH_ROWS * D, D);
    }
    row_stats_f(xr, D, rms, p->eps, &mu, &rs);
    double sg, sgx; /* Σ g, Σ g·xhat */
    pv__vm_norm_grad_sums(xr, w, dyr, mu, rs, D, &sg, &sgx);
    float mg = rms ? 0.0f : (float)(sg / (double)D), mgx = (float)(sgx / (double)D);
    pv__vm_norm_grad_apply(xr, w, dyr, mu, rs, mg, mgx, dxr, D);
  }
}

/* ------------------------------------------------------------ reference kernels (float64) */
static void row_stats_d(const double *x, int64_t D, int rms, double eps, double *mu, double *r) {
  double m = 0, v = 0;
  if (!rms) {
    for (int64_t i = 0; i < D; i++)
      m += x[i];
    m /= (double)D;
  }
  for (int64_t i = 0; i < D; i++)
    v += (x[i] - m) * (x[i] - m);
  v /= (double)D;
  *mu = m;
  *r = 1.0 / sqrt(v + eps);
}

static void norm_ref(const pv_tensor *t, double *y, const double *const *s, double *const *sw, int *err) {
  (void)sw, (void)err;
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = is_rms_op(t->op);
  int64_t D = t->shape[t->ndim - 1], rows = D ? t->numel / D : 0;
  const double *w = p->has_w ? s[1] : NULL;
  const double *b = !rms && p->has_b ? s[p->has_w ? 2 : 1] : NULL;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = s[0] + r * D;
    double mu, rs;
    row_stats_d(xr, D, rms, p->eps, &mu, &rs);
    for (int64_t i = 0; i < D; i++)
      y[r * D + i] = (xr[i] - mu) * rs * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
  }
}

static void norm_grad_ref(const pv_tensor *t, double *dx, const double *const *s, double *const *sw, int *err) {
  (void)sw, (void)err;
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = is_rms_op(t->op);
  int64_t D = t->shape[t->ndim - 1], rows = D ? t->numel / D : 0;
  const double *w = p->has_w ? s[1] : NULL, *dy = s[p->has_w ? 2 : 1];
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = s[0] + r * D, *dyr = dy + r * D;
    double mu, rs, sg = 0, sgx = 0;
    row_stats_d(xr, D, rms, p->eps, &mu, &rs);
    for (int64_t i = 0; i < D; i++) {
      double gi = dyr[i] * (w ? w[i] : 1.0);
      sg += gi;
      sgx += gi * (xr[i] - mu) * rs;
    }
    double mg = rms ? 0.0 : sg / (double)D, mgx = sgx / (double)D;
    for (int64_t i = 0; i < D; i++) {
      double gi = dyr[i] * (w ? w[i] : 1.0);
      dx[r * D + i] = rs * (gi - mg - (xr[i] - mu) * rs * mgx);
    }
  }
}

/* ------------------------------------------------------------ backward rules */
static pv_tensor *norm_grad_node(pv_graph *g, int op, pv_tensor *x, pv_tensor *w, pv_tensor *dy, double eps) {
  norm_p p = {eps, w ? 1 : 0, 0};
  pv_tensor *s[3] = {x, w ? w : dy, dy};
  return pv__node(g, op, w ? 3 : 2, s, &p, sizeof p);
}

static pv_status norm_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = t->op == PV_OP_RMS_NORM;
  pv_tensor *x = t->src[0], *w = p->has_w ? t->src[1] : NULL;
  int kb = p->has_w ? 2 : 1;
  int64_t D = x->shape[x->ndim - 1];
  if (need[0]) dsrc[0] = norm_grad_node(g, rms ? PV_OP_RMS_NORM_GRAD : PV_OP_LAYER_NORM_GRAD, x, w, dy, p->eps);
  if (p->has_w && need[1]) {
    pv_tensor *xhat = rms ? pv_rms_norm(g, x, NULL, p->eps) : pv_layer_norm(g, x, NULL, NULL, p->eps);
    dsrc[1] = pv_sum_to(g, pv_mul(g, dy, xhat), 1, &D);
  }
  if (!rms && p->has_b && need[kb]) dsrc[kb] = pv_sum_to(g, dy, 1, &D);
  return g->st;
}

/* ------------------------------------------------------------ Vulkan (shaders/layer_norm*.comp, rms_norm*.comp):
 * one workgroup of PV_VK_WG per row, f32 row statistics (Kahan per invocation, then a workgroup tree). */
static int norm_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const norm_p *p = PV_CPARAMS(norm_p, t);
  int rms = is_rms_op(t->op), grad = is_grad_op(t->op);
  int64_t D = t->shape[t->ndim - 1], rows = D ? t->numel / D : 0;
  if (t->numel > UINT32_MAX) return 0;
  int has_b = !grad && !rms && p->has_b;
  /* bindings 0 y, 1 x, 2 w, 3 b (forward) or dy (grad); an absent w / b binds x */
  int bind[4] = {-1, 0, p->has_w ? 1 : 0, (grad || has_b) ? (p->has_w ? 2 : 1) : 0};
  const char *sh = grad ? (rms ? "rms_norm_grad" : "layer_norm_grad") : (rms ? "rms_norm" : "layer_norm");
  pv_vk_begin(d, sh, 4, bind);
  pv_vk_push(d, (uint32_t)rows);
  pv_vk_push(d, (uint32_t)D);
  pv_vk_pushf(d, (float)p->eps);
  pv_vk_push(d, (uint32_t)(p->has_w ? 1 : 0));
  pv_vk_push(d, (uint32_t)has_b);
  pv_vk_grid(d, rows * PV_VK_WG, PV_VK_WG);
  d->work = (double)t->numel * (grad ? 12.0 : 6.0);
  return 1;
}

const pv_op_def pv_op_layer_norm = {.name = "layer_norm",
                                    .min_src = 1,
                                    .max_src = 3,
                                    .flags = PV_OPF_INPLACE,
                                    .shape = norm_shape,
                                    .backward = norm_backward,
                                    .cpu = norm_cpu,
                                    .ref = norm_ref,
                                    .vk = norm_vk};
const pv_op_def pv_op_layer_norm_grad = {.name = "layer_norm_grad",
                                         .min_src = 2,
                                         .max_src = 3,
                                         .flags = PV_OPF_INPLACE,
                                         .shape = norm_shape,
                                         .cpu = norm_grad_cpu,
                                         .ref = norm_grad_ref,
                                         .vk = norm_vk};
const pv_op_def pv_op_rms_norm = {.name = "rms_norm",
                                  .min_src = 1,
                                  .max_src = 2,
                                  .flags = PV_OPF_INPLACE,
                                  .shape = norm_shape,
                                  .backward = norm_backward,
                                  .cpu = norm_cpu,
                                  .ref = norm_ref,
                                  .vk = norm_vk};
const pv_op_def pv_op_rms_norm_grad = {.name = "rms_norm_grad",
                                       .min_src = 2,
                                       .max_src = 3,
                                       .flags = PV_OPF_INPLACE,
                                       .shape = norm_shape,
                                       .cpu = norm_grad_cpu,
                                       .ref = norm_grad_ref,
                                       .vk = norm_vk};

/* ------------------------------------------------------------ builders */
pv_tensor *pv_layer_norm(pv_graph *g, pv_tensor *x, pv_tensor *w, pv_tensor *b, double eps) {
  norm_p p = {eps, w ? 1 : 0, b ? 1 : 0};
  pv_tensor *s[3];
  int n = 0;
  s[n++] = x;
  if (w) s[n++] = w;
  if (b) s[n++] = b;
  return pv__node(g, PV_OP_LAYER_NORM, n, s, &p, sizeof p);
}

pv_tensor *pv_rms_norm(pv_graph *g, pv_tensor *x, pv_tensor *w, double eps) {
  norm_p p = {eps, w ? 1 : 0, 0};
  pv_tensor *s[2] = {x, w};
  return pv__node(g, PV_OP_RMS_NORM, w ? 2 : 1, s, &p, sizeof p);
}
