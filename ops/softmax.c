/* Softmax and log-softmax over the last axis (Tk). x [..., Tk] f32, mask broadcast to x (or absent) -> y, x's shape.
 *  z = scale·x + mask; causal (x [.., Tq, Tk]): z[i, j] = -inf where j > i + (Tk - Tq).
 *  softmax:     y = exp(z - max z) / Σ exp(z - max z).
 *  log_softmax: y = z - max z - log Σ exp(z - max z).
 *  Excluded entries (causal, or z = -inf) give y = 0 (softmax) or -inf (log_softmax); a fully masked row (every
 *  z = -inf) gives y = 0 (softmax) and -inf (log_softmax), never NaN.
 *  Backward: dx = softmax_grad(y, dy) = scale·dz, with
 *     softmax:     dz = y ⊙ (dy − Σ dy⊙y),
 *     log_softmax: dz = dy − exp(y) Σ dy,
 *  and dx = 0 at excluded entries (y = 0 in softmax, y = -inf in log_softmax, or causal) and in fully masked
 *  rows. The mask is not differentiated (nodiff bit 1). softmax_grad is backward-only.
 * CPU kernels (runtime/cpu/vmath): vector exp (< 1 ulp); the row sums Σ exp and Σ dy⊙y in blocks (f32 within
 * blocks of at most 128 elements, float64 across blocks). Rows of Tk <= 128 (attention) run in registers in one
 * pass with no branch on the causal limit (same bits as the long-row passes).
 * Sources: softmax (x, [mask]); softmax_grad (y, dy) with the same params. */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  double scale;
  int log, causal, has_mask;
} softmax_p;

static pv_status softmax_shape(pv_tensor *t) {
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int grad = t->op == PV_OP_SOFTMAX_GRAD;
  const char *nm = grad ? (p->log ? "log_softmax_grad" : "softmax_grad") : (p->log ? "log_softmax" : "softmax");
  for (int k = 0; k < t->nsrc; k++)
    if (!pv_need_f32(t, k)) return t->graph->st;
  if (!isfinite(p->scale)) return PV_FAIL(t, PV_ERR_INVALID, "%s: scale must be finite, got %g", nm, p->scale);
  pv_tensor *x = t->src[0];
  char b1[128], b2[128];
  if (x->ndim < 1) return PV_FAIL(t, PV_ERR_SHAPE, "%s: x %s needs at least one dimension", nm, PV_SHAPESTR(b1, x));
  if (p->causal && x->ndim < 2)
    return PV_FAIL(t, PV_ERR_SHAPE, "%s: causal needs x [.., Tq, Tk], got %s", nm, PV_SHAPESTR(b1, x));
  if (grad) {
    if (t->nsrc != 2) return PV_FAIL(t, PV_ERR_INVALID, "%s: %d inputs given, expected 2", nm, t->nsrc);
    if (!pv__same_shape(x, t->src[1]))
      return PV_FAIL(t, PV_ERR_SHAPE, "%s: y %s and dy %s differ", nm, PV_SHAPESTR(b1, x), PV_SHAPESTR(b2, t->src[1]));
  } else {
    if (t->nsrc != 1 + (p->has_mask ? 1 : 0))
      return PV_FAIL(t, PV_ERR_INVALID, "%s: %d inputs given, expected %d", nm, t->nsrc, 1 + (p->has_mask ? 1 : 0));
    if (p->has_mask) {
      pv_tensor *m = t->src[1];
      int64_t sh[PV_MAX_DIMS];
      int n;
      int ok = pv__broadcast_shape(x->ndim, x->shape, m->ndim, m->shape, &n, sh) && n == x->ndim;
      for (int i = 0; ok && i < n; i++)
        ok = sh[i] == x->shape[i];
      if (!ok)
        return PV_FAIL(t, PV_ERR_SHAPE, "%s: mask %s does not broadcast to x %s", nm, PV_SHAPESTR(b1, m),
                       PV_SHAPESTR(b2, x));
    }
  }
  pv__set_shape(t, PV_F32, x->ndim, x->shape);
  return PV_OK;
}

/* Row geometry: row r of x [.., Tk] is query row i = r % Tq; with causal, entries j >= lim are excluded. */
static inline int64_t causal_lim(const pv_tensor *t, int64_t r) {
  int64_t Tk = t->shape[t->ndim - 1], Tq = t->shape[t->ndim - 2];
  int64_t lim = r % Tq + (Tk - Tq) + 1;
  return lim < 0 ? 0 : lim > Tk ? Tk : lim;
}

/* element offset of the mask for the start of row r, and its stride along the last axis */
typedef struct {
  int64_t st[PV_MAX_DIMS];
} mask_geo;
static inline int64_t mask_row_off(const pv_tensor *t, const mask_geo *mg, int64_t r, int64_t *last) {
  int64_t off = 0;
  for (int d = t->ndim - 2; d >= 0; d--) {
    off += (r % t->shape[d]) * mg->st[d];
    r /= t->shape[d];
  }
  *last = mg->st[t->ndim - 1];
  return off;
}

/* ------------------------------------------------------------ CPU kernels */
static void softmax_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int64_t Tk = t->shape[t->ndim - 1], rows = Tk ? t->numel / Tk : 0, r0, r1;
  const float *x = a->src[0], *mask = p->has_mask ? a->src[1] : NULL;
  float *y = a->dst, sc = (float)p->scale;
  mask_geo mg;
  if (mask) pv__bcast_strides(t->ndim, t->shape, t->src[1]->ndim, t->src[1]->shape, mg.st);
  pv_split(rows, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r += 2) { /* two rows at a time (interleaved in the kernel); an odd last one alone */
    float *yr[2];
    const float *src[2], *mr[2];
    int64_t lim[2];
    float s1 = sc;
    int nr = r + 1 < r1 ? 2 : 1;
    for (int k = 0; k < nr; k++) {
      const float *xr = x + (r + k) * Tk;
      int64_t ms = 0;
      yr[k] = y + (r + k) * Tk;
      lim[k] = p->causal ? causal_lim(t, r + k) : Tk;
      mr[k] = mask ? mask + mask_row_off(t, &mg, r + k, &ms) : NULL;
      /* z = sc·x + mask into y (x may share y's buffer: each x[j] is read before y[j] is written), then the row */
      src[k] = xr;
      if (mr[k] && ms != 1) { /* a mask broadcast along the row: z first (ms is the same for every row) */
        for (int64_t j = 0; j < lim[k]; j++)
          yr[k][j] = sc * xr[j] + mr[k][j * ms];
        src[k] = yr[k], s1 = 1.0f, mr[k] = NULL;
      }
    }
    int ok = nr == 2 ? pv__vm_softmax_row2(yr, src, mr, lim, Tk, s1, p->log)
                     : pv__vm_softmax_row(yr[0], src[0], s1, mr[0], lim[0], Tk, p->log);
    for (int k = 0; k < nr; k++)
      if (!(ok >> k & 1)) pv__vm_fill(yr[k], p->log ? -INFINITY : 0.0f, Tk); /* fully masked row */
  }
}

static void softmax_grad_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int64_t Tk = t->shape[t->ndim - 1], rows = Tk ? t->numel / Tk : 0, r0, r1;
  const float *y = a->src[0], *dy = a->src[1];
  float *dx = a->dst, sc = (float)p->scale;
  pv_split(rows, a->ith, a->nth, &r0, &r1);
  int64_t r = r0;
  for (; r + 1 < r1; r += 2) {                        /* two rows at a time (interleaved in the kernel) */
    for (int64_t q = r + 2; q < r + 4 && q < r1; q++) /* the next pair (y is cold: saved from the forward) */
      pv_prefetch(y + q * Tk, Tk), pv_prefetch(dy + q * Tk, Tk);
    const float *yr[2] = {y + r * Tk, y + (r + 1) * Tk}, *dyr[2] = {dy + r * Tk, dy + (r + 1) * Tk};
    float *dxr[2] = {dx + r * Tk, dx + (r + 1) * Tk};
    int64_t lim[2] = {p->causal ? causal_lim(t, r) : Tk, p->causal ? causal_lim(t, r + 1) : Tk};
    pv__vm_softmax_grad_row2(p->log, yr, dyr, dxr, lim, Tk, sc);
  }
  if (r < r1)
    pv__vm_softmax_grad_row(p->log, y + r * Tk, dy + r * Tk, dx + r * Tk, sc, p->causal ? causal_lim(t, r) : Tk, Tk);
}

/* ------------------------------------------------------------ reference kernels (float64) */
static void softmax_ref(const pv_tensor *t, double *y, const double *const *s, double *const *sw, int *err) {
  (void)sw, (void)err;
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int64_t Tk = t->shape[t->ndim - 1], rows = Tk ? t->numel / Tk : 0;
  mask_geo mg;
  if (p->has_mask) pv__bcast_strides(t->ndim, t->shape, t->src[1]->ndim, t->src[1]->shape, mg.st);
  for (int64_t r = 0; r < rows; r++) {
    int64_t lim = p->causal ? causal_lim(t, r) : Tk, ms = 0, mo = p->has_mask ? mask_row_off(t, &mg, r, &ms) : 0;
    double *yr = y + r * Tk, m = -INFINITY;
    for (int64_t j = 0; j < Tk; j++) {
      yr[j] = j < lim ? p->scale * s[0][r * Tk + j] + (p->has_mask ? s[1][mo + j * ms] : 0.0) : -INFINITY;
      if (yr[j] > m) m = yr[j];
    }
    double sum = 0;
    for (int64_t j = 0; j < Tk; j++)
      sum += m == -INFINITY ? 0.0 : exp(yr[j] - m);
    for (int64_t j = 0; j < Tk; j++) {
      if (m == -INFINITY || yr[j] == -INFINITY)
        yr[j] = p->log ? -INFINITY : 0.0;
      else
        yr[j] = p->log ? yr[j] - m - log(sum) : exp(yr[j] - m) / sum;
    }
  }
}

static void softmax_grad_ref(const pv_tensor *t, double *dx, const double *const *s, double *const *sw, int *err) {
  (void)sw, (void)err;
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int64_t Tk = t->shape[t->ndim - 1], rows = Tk ? t->numel / Tk : 0;
  for (int64_t r = 0; r < rows; r++) {
    const double *yr = s[0] + r * Tk, *dyr = s[1] + r * Tk;
    int64_t lim = p->causal ? causal_lim(t, r) : Tk;
    double zero = p->log ? -INFINITY : 0.0, sum = 0; /* the value of an excluded entry */
    for (int64_t j = 0; j < lim; j++)
      if (yr[j] != zero) sum += p->log ? dyr[j] : dyr[j] * yr[j];
    for (int64_t j = 0; j < Tk; j++) {
      if (j >= lim || yr[j] == zero)
        dx[r * Tk + j] = 0.0;
      else
        dx[r * Tk + j] = p->scale * (p->log ? dyr[j] - exp(yr[j]) * sum : yr[j] * (dyr[j] - sum));
    }
  }
}

/* ------------------------------------------------------------ backward, registry, builders */
static pv_status softmax_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  softmax_p p = *PV_CPARAMS(softmax_p, t);
  p.has_mask = 0;
  pv_tensor *s[2] = {t, dy};
  dsrc[0] = pv__node(g, PV_OP_SOFTMAX_GRAD, 2, s, &p, sizeof p);
  return g->st;
}

/* ------------------------------------------------------------ Vulkan (shaders/softmax*.comp, softmax_grad*.comp):
 * one workgroup of PV_VK_WG per row; the mask is walked with its broadcast strides over the (coalesced) leading
 * dims. */
static int softmax_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const softmax_p *p = PV_CPARAMS(softmax_p, t);
  int grad = t->op == PV_OP_SOFTMAX_GRAD, hm = !grad && p->has_mask;
  int64_t Tk = t->shape[t->ndim - 1], rows = Tk ? t->numel / Tk : 0;
  if (t->numel > UINT32_MAX || (hm && t->src[1]->numel > UINT32_MAX)) return 0;
  int64_t sh[PV_MAX_DIMS] = {0}, st[1][PV_MAX_DIMS] = {{0}}, ms = 0;
  int nd = 0;
  if (hm) {
    pv__bcast_strides(t->ndim, t->shape, t->src[1]->ndim, t->src[1]->shape, st[0]);
    ms = st[0][t->ndim - 1];
    for (int i = 0; i < t->ndim - 1; i++)
      sh[i] = t->shape[i];
    nd = pv_vk_coalesce(t->ndim - 1, sh, 1, st);
  }
  int bind[3] = {-1, 0, grad || hm ? 1 : 0};
  pv_vk_begin(d, grad ? "softmax_grad" : "softmax", 3, bind);
  pv_vk_push(d, (uint32_t)rows);
  pv_vk_push(d, (uint32_t)Tk);
  pv_vk_push(d, (uint32_t)(p->causal ? t->shape[t->ndim - 2] : 1));
  pv_vk_pushf(d, (float)p->scale);
  pv_vk_push(d, (uint32_t)((p->log ? 1 : 0) | (p->causal ? 2 : 0) | (hm ? 4 : 0)));
  pv_vk_push(d, (uint32_t)ms);
  pv_vk_push_dims(d, nd, sh, 1, st);
  pv_vk_grid(d, rows * PV_VK_WG, PV_VK_WG);
  d->work = (double)t->numel * 8.0;
  return 1;
}

const pv_op_def pv_op_softmax = {.name = "softmax",
                                 .min_src = 1,
                                 .max_src = 2,
                                 .flags = PV_OPF_INPLACE,
                                 .nodiff = 2u,
                                 .shape = softmax_shape,
                                 .backward = softmax_backward,
                                 .cpu = softmax_cpu,
                                 .ref = softmax_ref,
                                 .vk = softmax_vk};
const pv_op_def pv_op_softmax_grad = {.name = "softmax_grad",
                                      .min_src = 2,
                                      .max_src = 2,
                                      .flags = PV_OPF_INPLACE,
                                      .shape = softmax_shape,
                                      .cpu = softmax_grad_cpu,
                                      .ref = softmax_grad_ref,
                                      .vk = softmax_vk};

static pv_tensor *softmax(pv_graph *g, int log, pv_tensor *x, pv_tensor *mask, double scale, int causal) {
  softmax_p p = {scale, log, causal ? 1 : 0, mask ? 1 : 0};
  pv_tensor *s[2] = {x, mask};
  return pv__node(g, PV_OP_SOFTMAX, mask ? 2 : 1, s, &p, sizeof p);
}
pv_tensor *pv_softmax(pv_graph *g, pv_tensor *x, pv_tensor *mask, double scale, int causal) {
  return softmax(g, 0, x, mask, scale, causal);
}
pv_tensor *pv_log_softmax(pv_graph *g, pv_tensor *x, pv_tensor *mask, double scale, int causal) {
  return softmax(g, 1, x, mask, scale, causal);
}
