/* Reductions and broadcasting.
 *  reduce:     y = sum | mean | max of x along one axis (keepdim or not).
 *              sum: dx = expand(dy); mean: dx = expand(dy)/n; max: dx = max_grad(x, dy) (to the first maximum).
 *  max_grad:   dx[.., k, ..] = dy[.., 0, ..] where k is the first argmax along the axis, else 0 (backward only).
 *  reduce_all: y[1] = Σ x or Σ x² ; dx = dy (broadcast) or 2·x·dy. Summed over 64 fixed chunks (each in
 *              blocks: f32 within blocks of at most 128 elements, float64 across; runtime/cpu/vmath.h), then in
 *              float64, so the result does not depend on the thread count.
 *  sum_to:     sums the broadcast dimensions of x away to reach a shape (right-aligned); dx = expand(dy).
 *  expand:     broadcasts x to a shape; dx = sum_to(dy, x.shape). */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

enum { R_SUM = 0, R_MEAN, R_MAX };
enum { RA_SUM = 0, RA_SUMSQ };
typedef struct {
  int kind, axis, keepdim;
} reduce_p;
typedef struct {
  int kind;
} reduce_all_p;
typedef struct {
  int ndim;
  int64_t shape[PV_MAX_DIMS];
} shape_p;

/* [outer, n, inner] view of x around axis */
static void oni(const pv_tensor *x, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
  *outer = 1, *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= x->shape[i];
  *n = x->shape[axis];
  for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

/* ------------------------------------------------------------ reduce along an axis */
static pv_status reduce_shape(pv_tensor *t) {
  static const char *nm[] = {"sum", "mean", "max"};
  reduce_p *p = PV_PARAMS(reduce_p, t);
  if (!pv_need_f32(t, 0)) return t->graph->st;
  pv_tensor *x = t->src[0];
  int ax = pv_axis(p->axis, x->ndim);
  char b[128];
  if (ax < 0) return PV_FAIL(t, PV_ERR_SHAPE, "%s: axis %d out of range for %s", nm[p->kind], p->axis, PV_SHAPESTR(b, x));
  if (p->kind == R_MAX && x->shape[ax] == 0) return PV_FAIL(t, PV_ERR_SHAPE, "max: empty axis in %s", PV_SHAPESTR(b, x));
  p->axis = ax;
  int64_t sh[PV_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (i == ax) {
      if (p->keepdim) sh[n++] = 1;
    } else sh[n++] = x->shape[i];
  }
  pv__set_shape(t, PV_F32, n, sh);
  return PV_OK;
}

static void reduce_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const reduce_p *p = PV_CPARAMS(reduce_p, t);
  int64_t outer, n, inner;
  oni(t->src[0], p->axis, &outer, &n, &inner);
  const float *x = a->src[0];
  float *y = a->dst;
  int64_t i0, i1;
  pv_split(outer * inner, a->ith, a->nth, &i0, &i1);
  for (int64_t j = i0; j < i1; j++) {
    int64_t o = j / inner, i = j % inner;
    const float *px = x + o * n * inner + i;
    if (p->kind == R_MAX) {
      float m = px[0];
      for (int64_t k = 1; k < n; k++)
        if (px[k * inner] > m) m = px[k * inner];
      y[j] = m;
    } else {
      double s = 0;
      for (int64_t k = 0; k < n; k++) s += px[k * inner];
      y[j] = (float)(p->kind == R_MEAN ? (n ? s / (double)n : 0.0) : s);
    }
  }
}

static void reduce_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const reduce_p *p = PV_CPARAMS(reduce_p, t);
  int64_t outer, n, inner;
  oni(t->src[0], p->axis, &outer, &n, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const double *px = s[0] + o * n * inner + i;
      double acc = p->kind == R_MAX ? px[0] : 0;
      for (int64_t k = 0; k < n; k++) {
        if (p->kind == R_MAX) acc = px[k * inner] > acc ? px[k * inner] : acc;
        else acc += px[k * inner];
      }
      y[o * inner + i] = p->kind == R_MEAN ? (n ? acc / (double)n : 0.0) : acc;
    }
}

static pv_tensor *keepdim_view(pv_graph *g, pv_tensor *dy, const pv_tensor *x, int axis) {
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++) sh[i] = i == axis ? 1 : x->shape[i];
  return pv_reshape(g, dy, x->ndim, sh);
}

static pv_tensor *max_grad(pv_graph *g, pv_tensor *x, pv_tensor *dyk, int axis);

static pv_status reduce_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const reduce_p *p = PV_CPARAMS(reduce_p, t);
  pv_tensor *x = t->src[0];
  pv_tensor *dyk = keepdim_view(g, dy, x, p->axis);
  if (p->kind == R_MAX) dsrc[0] = max_grad(g, x, dyk, p->axis);
  else {
    pv_tensor *e = pv_expand(g, dyk, x->ndim, x->shape);
    dsrc[0] = p->kind == R_MEAN ? pv_scale(g, e, 1.0 / (double)(x->shape[p->axis] ? x->shape[p->axis] : 1)) : e;
  }
  return g->st;
}

static int reduce_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const reduce_p *p = PV_CPARAMS(reduce_p, t);
  const pv_tensor *x = t->src[0];
  int64_t n = x->shape[p->axis];
  float scale = p->kind == R_MEAN ? (n ? (float)(1.0 / (double)n) : 0.0f) : 1.0f;
  return pv_vk_reduce(d, x->ndim, x->shape, 1u << p->axis, p->kind == R_MAX ? 1 : 0, scale);
}

const pv_op_def pv_op_reduce = {.name = "reduce", .min_src = 1, .max_src = 1, .shape = reduce_shape,
                                .backward = reduce_backward, .cpu = reduce_cpu, .ref = reduce_ref, .vk = reduce_vk};

static pv_tensor *reduce(pv_graph *g, int kind, pv_tensor *x, int axis, int keepdim) {
  reduce_p p = {kind, axis, keepdim ? 1 : 0};
  return pv__node(g, PV_OP_REDUCE, 1, &x, &p, sizeof p);
}
pv_tensor *pv_sum(pv_graph *g, pv_tensor *x, int axis, int keepdim) { return reduce(g, R_SUM, x, axis, keepdim); }
pv_tensor *pv_mean(pv_graph *g, pv_tensor *x, int axis, int keepdim) { return reduce(g, R_MEAN, x, axis, keepdim); }
pv_tensor *pv_max(pv_graph *g, pv_tensor *x, int axis, int keepdim) { return reduce(g, R_MAX, x, axis, keepdim); }

/* ------------------------------------------------------------ max_grad(x, dy_keepdim) */
static pv_status max_grad_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0) || !pv_need_f32(t, 1)) return t->graph->st;
  pv__set_shape(t, PV_F32, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}
static void max_grad_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int axis = PV_CPARAMS(reduce_p, t)->axis;
  int64_t outer, n, inner;
  oni(t->src[0], axis, &outer, &n, &inner);
  const float *x = a->src[0], *dy = a->src[1];
  float *y = a->dst;
  int64_t i0, i1;
  pv_split(outer * inner, a->ith, a->nth, &i0, &i1);
  for (int64_t j = i0; j < i1; j++) {
    int64_t o = j / inner, i = j % inner, best = 0;
    const float *px = x + o * n * inner + i;
    for (int64_t k = 1; k < n; k++)
      if (px[k * inner] > px[best * inner]) best = k;
    for (int64_t k = 0; k < n; k++) y[o * n * inner + k * inner + i] = k == best ? dy[j] : 0.0f;
  }
}
static void max_grad_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int axis = PV_CPARAMS(reduce_p, t)->axis;
  int64_t outer, n, inner;
  oni(t->src[0], axis, &outer, &n, &inner);
  for (int64_t j = 0; j < outer * inner; j++) {
    int64_t o = j / inner, i = j % inner, best = 0;
    const double *px = s[0] + o * n * inner + i;
    for (int64_t k = 1; k < n; k++)
      if (px[k * inner] > px[best * inner]) best = k;
    for (int64_t k = 0; k < n; k++) y[o * n * inner + k * inner + i] = k == best ? s[1][j] : 0.0;
  }
}
static int max_grad_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t outer, n, inner;
  oni(t->src[0], PV_CPARAMS(reduce_p, t)->axis, &outer, &n, &inner);
  int bind[3] = {-1, 0, 1};
  pv_vk_begin(d, "max_grad", 3, bind);
  pv_vk_push(d, (uint32_t)(outer * inner));
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, (uint32_t)inner);
  pv_vk_grid(d, outer * inner, PV_VK_WG);
  d->work = 2.0 * (double)t->numel;
  return 1;
}
const pv_op_def pv_op_max_grad = {.name = "max_grad", .min_src = 2, .max_src = 2, .nodiff = 1u, .shape = max_grad_shape,
                                  .cpu = max_grad_cpu, .ref = max_grad_ref, .vk = max_grad_vk};
static pv_tensor *max_grad(pv_graph *g, pv_tensor *x, pv_tensor *dyk, int axis) {
  reduce_p p = {R_MAX, axis, 1};
  pv_tensor *s[2] = {x, dyk};
  return pv__node(g, PV_OP_MAX_GRAD, 2, s, &p, sizeof p);
}

/* ------------------------------------------------------------ reduce_all */
#define RA_CHUNKS 64
static pv_status reduce_all_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0)) return t->graph->st;
  int64_t one = 1;
  pv__set_shape(t, PV_F32, 1, &one);
  return PV_OK;
}
typedef struct {
  const pv_tensor *t;
  const float *x;
  double *part;
} ra_job;
static void ra_chunks(void *arg, int ith, int nth) {
  ra_job *j = arg;
  int sq = PV_CPARAMS(reduce_all_p, j->t)->kind == RA_SUMSQ;
  int64_t n = j->t->src[0]->numel, c0, c1;
  pv_split(RA_CHUNKS, ith, nth, &c0, &c1);
  for (int64_t c = c0; c < c1; c++) {
    int64_t a, b;
    pv_split(n, (int)c, RA_CHUNKS, &a, &b);
    j->part[c] = b > a ? (sq ? pv__vm_sumsq(j->x + a, b - a) : pv__vm_sum(j->x + a, b - a)) : 0.0;
  }
}
static void reduce_all_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  ra_job j = {t, a->src[0], a->scratch};
  a->parallel(a->pool, ra_chunks, &j);
  double s = 0;
  for (int c = 0; c < RA_CHUNKS; c++) s += j.part[c];
  *(float *)a->dst = (float)s;
}
static size_t reduce_all_scratch(const pv_tensor *t, int nth) {
  (void)t, (void)nth;
  return RA_CHUNKS * sizeof(double);
}
static void reduce_all_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int sq = PV_CPARAMS(reduce_all_p, t)->kind == RA_SUMSQ;
  double acc = 0;
  for (int64_t i = 0; i < t->src[0]->numel; i++) acc += sq ? s[0][i] * s[0][i] : s[0][i];
  y[0] = acc;
}
static pv_status reduce_all_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  pv_tensor *x = t->src[0];
  if (PV_CPARAMS(reduce_all_p, t)->kind == RA_SUMSQ) dsrc[0] = pv_mul(g, pv_scale(g, x, 2.0), dy);
  else dsrc[0] = pv_expand(g, dy, x->ndim, x->shape);
  return g->st;
}
#define RA_VK_GROUPS 1024
/* two passes: RA_VK_GROUPS (at most) workgroups sum fixed chunks into scratch, then one workgroup sums those */
static int reduce_all_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  if (max < 2) return 0;
  int64_t n = t->src[0]->numel, g = (n + 4095) / 4096;
  if (g < 1) g = 1;
  if (g > RA_VK_GROUPS) g = RA_VK_GROUPS;
  int64_t chunk = (n + g - 1) / g;
  int bind[3] = {-1, 0, -2};
  for (int pass = 0; pass < 2; pass++) {
    pv_vk_begin(&d[pass], "reduce_all", 3, bind);
    pv_vk_push(&d[pass], (uint32_t)n);
    pv_vk_push(&d[pass], (uint32_t)chunk);
    pv_vk_push(&d[pass], PV_CPARAMS(reduce_all_p, t)->kind == RA_SUMSQ ? 1u : 0u);
    pv_vk_push(&d[pass], (uint32_t)pass);
    pv_vk_push(&d[pass], (uint32_t)g);
    pv_vk_grid(&d[pass], pass ? PV_VK_WG : g * PV_VK_WG, PV_VK_WG);
    d[pass].work = pass ? (double)g : 2.0 * (double)n;
  }
  return 2;
}
static size_t reduce_all_vk_scratch(const pv_tensor *t) {
  (void)t;
  return RA_VK_GROUPS * sizeof(float);
}
const pv_op_def pv_op_reduce_all = {.name = "reduce_all", .min_src = 1, .max_src = 1, .flags = PV_OPF_CPU_SERIAL,
                                    .shape = reduce_all_shape, .backward = reduce_all_backward,
                                    .cpu = reduce_all_cpu, .cpu_scratch = reduce_all_scratch, .ref = reduce_all_ref,
                                    .vk = reduce_all_vk, .vk_scratch = reduce_all_vk_scratch};
pv_tensor *pv_sumsq(pv_graph *g, pv_tensor *x) {
  reduce_all_p p = {RA_SUMSQ};
  return pv__node(g, PV_OP_REDUCE_ALL, 1, &x, &p, sizeof p);
}
pv_tensor *pv_sum_all(pv_graph *g, pv_tensor *x) {
  reduce_all_p p = {RA_SUM};
  return pv__node(g, PV_OP_REDUCE_ALL, 1, &x, &p, sizeof p);
}

/* ------------------------------------------------------------ sum_to and expand */
static int shape_from_params(pv_tensor *t, const char *nm, int *ndim, int64_t *sh) {
  const shape_p *p = PV_CPARAMS(shape_p, t);
  if (p->ndim < 0 || p->ndim > PV_MAX_DIMS) {
    pv__gerr(t->graph, PV_ERR_SHAPE, "%s: invalid ndim %d", nm, p->ndim);
    return 0;
  }
  *ndim = p->ndim;
  for (int i = 0; i < p->ndim; i++) sh[i] = p->shape[i];
  return 1;
}

/* small: shape that broadcasts to big (right-aligned) */
static int broadcasts_to(int ns, const int64_t *s, int nb, const int64_t *b) {
  if (ns > nb) {
    for (int i = 0; i < ns - nb; i++)
      if (s[i] != 1) return 0;
    s += ns - nb;
    ns = nb;
  }
  for (int i = 0; i < ns; i++) {
    int64_t d = s[i], e = b[i + nb - ns];
    if (d != e && d != 1) return 0;
  }
  return 1;
}

static pv_status sum_to_shape(pv_tensor *t) {
  int n;
  int64_t sh[PV_MAX_DIMS];
  if (!pv_need_f32(t, 0) || !shape_from_params(t, "sum_to", &n, sh)) return t->graph->st;
  pv_tensor *x = t->src[0];
  if (!broadcasts_to(n, sh, x->ndim, x->shape)) {
    char b1[128], b2[128];
    return PV_FAIL(t, PV_ERR_SHAPE, "sum_to: %s does not broadcast to %s", pv__shape_str(b1, sizeof b1, n, sh),
                   PV_SHAPESTR(b2, x));
  }
  pv__set_shape(t, PV_F32, n, sh);
  return PV_OK;
}

static pv_status expand_shape(pv_tensor *t) {
  int n;
  int64_t sh[PV_MAX_DIMS];
  if (!pv_need_f32(t, 0) || !shape_from_params(t, "expand", &n, sh)) return t->graph->st;
  pv_tensor *x = t->src[0];
  if (!broadcasts_to(x->ndim, x->shape, n, sh)) {
    char b1[128], b2[128];
    return PV_FAIL(t, PV_ERR_SHAPE, "expand: %s does not broadcast to %s", PV_SHAPESTR(b1, x),
                   pv__shape_str(b2, sizeof b2, n, sh));
  }
  pv__set_shape(t, PV_F32, n, sh);
  return PV_OK;
}

/* x as [outer, R, inner] where the summed dimensions (of size > 1) of x form one block R; 0 if they do not */
static int sum_to_block(const pv_tensor *t, const pv_tensor *x, int64_t *outer, int64_t *R, int64_t *inner) {
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(x->ndim, x->shape, t->ndim, t->shape, ss);
  int stage = 0; /* 0 leading kept dims, 1 summed dims, 2 trailing kept dims */
  *outer = *R = *inner = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (x->shape[d] == 1) continue;
    int summed = ss[d] == 0;
    if (summed && stage == 2) return 0;
    if (summed)
      stage = 1;
    else if (stage == 1)
      stage = 2;
    *(summed ? R : stage == 0 ? outer : inner) *= x->shape[d];
  }
  return 1;
}

/* sum_to: for output element j, sum the x elements mapping to it. big = x, small = t. Threads own ranges of output
 * elements; each is summed in x's order (in f32; over whole rows in float64 when the summed block is innermost), so
 * the result does not depend on the thread count. */
static void sum_to_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *x = t->src[0];
  const float *px = a->src[0];
  float *y = a->dst;
  int nd = x->ndim;
  int64_t nsmall = t->numel, nbig = x->numel, outer, R, inner, j0, j1;
  pv_split(nsmall, a->ith, a->nth, &j0, &j1);
  if (j0 >= j1) return;
  /* one summed block: bias gradients ([rows, C] -> [C]), grouped heads ([.., G, ..] -> [.., 1, ..]), ... */
  if (sum_to_block(t, x, &outer, &R, &inner)) {
    if (R == 1) { /* only size-1 dimensions differ */
      memcpy(y + j0, px + j0, sizeof(float) * (size_t)(j1 - j0));
      return;
    }
    for (int64_t j = j0; j < j1;) {
      int64_t o = j / inner, c = j % inner, len = inner - c;
      if (len > j1 - j) len = j1 - j;
      const float *xo = px + o * R * inner;
      if (inner == 1)
        y[j] = (float)pv__vm_sum(xo, R);
      else
        pv__vm_sum_rows(xo + c, R, inner, y + j, len);
      j += len;
    }
    return;
  }
  /* general: each thread owns a range of output elements and scans x (deterministic order) */
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(nd, x->shape, t->ndim, t->shape, ss);
  for (int64_t j = j0; j < j1; j++) y[j] = 0;
  int64_t idx[PV_MAX_DIMS] = {0}, js = 0;
  for (int64_t i = 0; i < nbig; i++) {
    if (js >= j0 && js < j1) y[js] += px[i];
    for (int d = nd - 1; d >= 0; d--) {
      idx[d]++;
      js += ss[d];
      if (idx[d] < x->shape[d]) break;
      js -= ss[d] * x->shape[d];
      idx[d] = 0;
    }
  }
}
static void sum_to_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const pv_tensor *x = t->src[0];
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(x->ndim, x->shape, t->ndim, t->shape, ss);
  for (int64_t j = 0; j < t->numel; j++) y[j] = 0;
  for (int64_t i = 0; i < x->numel; i++) {
    int64_t r = i, js = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
      js += (r % x->shape[d]) * ss[d];
      r /= x->shape[d];
    }
    y[js] += s[0][i];
  }
}
static void expand_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *x = t->src[0];
  const float *px = a->src[0];
  float *y = a->dst;
  int64_t ss[PV_MAX_DIMS], i0, i1;
  pv__bcast_strides(t->ndim, t->shape, x->ndim, x->shape, ss);
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  int64_t nx = x->numel;
  int suffix = x->ndim <= t->ndim;
  for (int i = 0; suffix && i < x->ndim; i++)
    if (x->shape[i] != t->shape[t->ndim - x->ndim + i]) suffix = 0;
  if (suffix && nx > 0) { /* whole copies of x, in row segments */
    for (int64_t i = i0; i < i1;) {
      int64_t c = i % nx, len = nx - c < i1 - i ? nx - c : i1 - i;
      memcpy(y + i, px + c, sizeof(float) * (size_t)len);
      i += len;
    }
    return;
  }
  /* general: walk the output in runs of the innermost dimension; a run is a copy (stride 1) or a fill (stride 0) */
  int nd = t->ndim;
  int64_t inner = t->shape[nd - 1], st = ss[nd - 1];
  int64_t i = i0;
  while (i < i1) {
    int64_t r = i / inner, js = 0, c0 = i % inner;
    for (int d = nd - 2; d >= 0; d--) {
      js += (r % t->shape[d]) * ss[d];
      r /= t->shape[d];
    }
    int64_t n = inner - c0;
    if (n > i1 - i) n = i1 - i;
    if (st == 0) {
      pv__vm_fill(y + i, px[js], n);
    } else {
      memcpy(y + i, px + js + c0, (size_t)n * sizeof(float));
    }
    i += n;
  }
}
static void expand_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const pv_tensor *x = t->src[0];
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(t->ndim, t->shape, x->ndim, x->shape, ss);
  for (int64_t i = 0; i < t->numel; i++) {
    int64_t r = i, js = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
      js += (r % t->shape[d]) * ss[d];
      r /= t->shape[d];
    }
    y[i] = s[0][js];
  }
}
static pv_status sum_to_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_expand(g, dy, t->src[0]->ndim, t->src[0]->shape);
  return g->st;
}
static pv_status expand_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_sum_to(g, dy, t->src[0]->ndim, t->src[0]->shape);
  return g->st;
}
static int sum_to_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const pv_tensor *x = t->src[0];
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(x->ndim, x->shape, t->ndim, t->shape, ss);
  unsigned red = 0;
  for (int i = 0; i < x->ndim; i++)
    if (ss[i] == 0 && x->shape[i] != 1) red |= 1u << i;
  return pv_vk_reduce(d, x->ndim, x->shape, red, 0, 1.0f);
}
static int expand_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t ss[PV_MAX_DIMS];
  pv__bcast_strides(t->ndim, t->shape, t->src[0]->ndim, t->src[0]->shape, ss);
  return pv_vk_gather(d, 0, t->ndim, t->shape, ss, 0, 4);
}
const pv_op_def pv_op_sum_to = {.name = "sum_to", .min_src = 1, .max_src = 1, .shape = sum_to_shape,
                                .backward = sum_to_backward, .cpu = sum_to_cpu, .ref = sum_to_ref, .vk = sum_to_vk};
const pv_op_def pv_op_expand = {.name = "expand", .min_src = 1, .max_src = 1, .shape = expand_shape,
                                .backward = expand_backward, .cpu = expand_cpu, .ref = expand_ref, .vk = expand_vk};

static int same(const pv_tensor *x, int ndim, const int64_t *shape) {
  if (x->ndim != ndim) return 0;
  for (int i = 0; i < ndim; i++)
    if (x->shape[i] != shape[i]) return 0;
  return 1;
}
pv_tensor *pv_sum_to(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape) {
  if (!g || g->st) return NULL;
  if (x && shape && same(x, ndim, shape)) return x;
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim && !shape)) return pv__gerr(g, PV_ERR_SHAPE, "sum_to: invalid ndim %d", ndim);
  shape_p p = {ndim, {0}};
  for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
  return pv__node(g, PV_OP_SUM_TO, 1, &x, &p, sizeof p);
}
pv_tensor *pv_expand(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape) {
  if (!g || g->st) return NULL;
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim && !shape)) return pv__gerr(g, PV_ERR_SHAPE, "expand: invalid ndim %d", ndim);
  shape_p p = {ndim, {0}};
  for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
  return pv__node(g, PV_OP_EXPAND, 1, &x, &p, sizeof p);
}
