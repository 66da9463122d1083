/* Shape ops (any dtype; f32 for gradients).
 *  reshape:  same elements, new shape (a view, no copy); dx = reshape(dy, x.shape).
 *  permute:  y[i_perm[0], ..] = x[i_0, ..], y.shape[k] = x.shape[perm[k]]; dx = permute(dy, perm⁻¹).
 *  slice:    y = x[.., start:end, ..] along axis; dx = unslice(dy) (zeros elsewhere).
 *  unslice:  y = zeros(full) with y[.., start:end, ..] = x; dx = slice(dy).
 *  concat:   y = [x0, x1, ..] along axis; dxk = slice(dy, offset_k, offset_k + len_k).
 *  copy:     y = x; dx = dy.      cast: y = dtype(x); dx = cast(dy, x.dtype).
 *  select:   y = x[i] for x [n, ...] (a view of block i, no copy; internal, for ops that compute several results
 *            in one pass into [n, ...]: swiglu_grad); dx = unslice(reshape(dy, [1, ...]), axis 0, i, n). */
#include "common.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int ndim;
  int64_t shape[PV_MAX_DIMS];
} reshape_p;
typedef struct {
  int ndim;
  int perm[PV_MAX_DIMS];
} permute_p;
typedef struct {
  int axis;
  int64_t start, end, full; /* full: unslice's output length along axis */
} slice_p;
typedef struct {
  int axis;
} concat_p;
typedef struct {
  int dtype;
} cast_p;
typedef struct {
  int64_t index;
} select_p;

static size_t esize(const pv_tensor *t) { return pv_dtype_size(t->dtype); }

/* ------------------------------------------------------------ reshape (view) */
static pv_status reshape_shape(pv_tensor *t) {
  reshape_p *p = PV_PARAMS(reshape_p, t);
  pv_tensor *x = t->src[0];
  char b1[128], b2[128];
  if (p->ndim < 0 || p->ndim > PV_MAX_DIMS) return PV_FAIL(t, PV_ERR_SHAPE, "reshape: invalid ndim %d", p->ndim);
  int neg = -1;
  int64_t prod = 1;
  for (int i = 0; i < p->ndim; i++) {
    if (p->shape[i] == -1) {
      if (neg >= 0)
        return PV_FAIL(t, PV_ERR_SHAPE, "reshape: more than one -1 in %s",
                       pv__shape_str(b1, sizeof b1, p->ndim, p->shape));
      neg = i;
    } else if (p->shape[i] < 0)
      return PV_FAIL(t, PV_ERR_SHAPE, "reshape: negative dimension in %s",
                     pv__shape_str(b1, sizeof b1, p->ndim, p->shape));
    else
      prod *= p->shape[i];
  }
  if (neg >= 0) {
    if (prod == 0 || x->numel % prod)
      return PV_FAIL(t, PV_ERR_SHAPE, "reshape: cannot reshape %s into %s", PV_SHAPESTR(b1, x),
                     pv__shape_str(b2, sizeof b2, p->ndim, p->shape));
    p->shape[neg] = x->numel / prod;
    prod *= p->shape[neg];
  }
  if (prod != x->numel)
    return PV_FAIL(t, PV_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) into %s", PV_SHAPESTR(b1, x),
                   (long long)x->numel, pv__shape_str(b2, sizeof b2, p->ndim, p->shape));
  pv__set_shape(t, x->dtype, p->ndim, p->shape);
  return PV_OK;
}
static pv_status reshape_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_reshape(g, dy, t->src[0]->ndim, t->src[0]->shape);
  return g->st;
}
const pv_op_def pv_op_reshape = {.name = "reshape",
                                 .min_src = 1,
                                 .max_src = 1,
                                 .flags = PV_OPF_VIEW,
                                 .shape = reshape_shape,
                                 .backward = reshape_backward};
pv_tensor *pv_reshape(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape) {
  if (!g || g->st) return NULL;
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim && !shape))
    return pv__gerr(g, PV_ERR_SHAPE, "reshape: invalid ndim %d", ndim);
  reshape_p p = {ndim, {0}};
  for (int i = 0; i < ndim; i++)
    p.shape[i] = shape[i];
  if (x && x->graph == g && x->ndim == ndim) { /* identity: no node */
    int same = 1;
    for (int i = 0; i < ndim; i++)
      same &= x->shape[i] == shape[i];
    if (same) return x;
  }
  return pv__node(g, PV_OP_RESHAPE, 1, &x, &p, sizeof p);
}

/* ------------------------------------------------------------ permute */
static pv_status permute_shape(pv_tensor *t) {
  const permute_p *p = PV_CPARAMS(permute_p, t);
  pv_tensor *x = t->src[0];
  char b[128];
  if (p->ndim != x->ndim) return PV_FAIL(t, PV_ERR_SHAPE, "permute: %d axes given for %s", p->ndim, PV_SHAPESTR(b, x));
  int seen[PV_MAX_DIMS] = {0};
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < p->ndim; i++) {
    int a = p->perm[i];
    if (a < 0 || a >= x->ndim || seen[a])
      return PV_FAIL(t, PV_ERR_SHAPE, "permute: invalid permutation for %s", PV_SHAPESTR(b, x));
    seen[a] = 1;
    sh[i] = x->shape[a];
  }
  pv__set_shape(t, x->dtype, p->ndim, sh);
  return PV_OK;
}
/* source element strides in output order */
static void perm_strides(const pv_tensor *t, int64_t *ss) {
  const permute_p *p = PV_CPARAMS(permute_p, t);
  const pv_tensor *x = t->src[0];
  int64_t xs[PV_MAX_DIMS], s = 1;
  for (int i = x->ndim - 1; i >= 0; i--)
    xs[i] = s, s *= x->shape[i];
  for (int i = 0; i < p->ndim; i++)
    ss[i] = xs[p->perm[i]];
}
static void permute_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t ss[PV_MAX_DIMS], idx[PV_MAX_DIMS], i0, i1;
  perm_strides(t, ss);
  int nd = t->ndim;
  size_t es = esize(t);
  const char *x = a->src[0];
  char *y = a->dst;
  if (nd == 0) {
    if (a->ith == 0) memcpy(y, x, es);
    return;
  }
  /* rows of the last output dim */
  int64_t inner = t->shape[nd - 1], rows = inner ? t->numel / inner : 0;
  pv_split(rows, a->ith, a->nth, &i0, &i1);
  for (int64_t r = i0; r < i1; r++) {
    int64_t q = r, off = 0;
    for (int d = nd - 2; d >= 0; d--) {
      idx[d] = q % t->shape[d];
      q /= t->shape[d];
      off += idx[d] * ss[d];
    }
    int64_t st = ss[nd - 1];
    if (es == 4) {
      const float *xs = (const float *)x + off;
      float *yr = (float *)y + r * inner;
      if (st == 1)
        memcpy(yr, xs, (size_t)inner * 4);
      else
        for (int64_t k = 0; k < inner; k++)
          yr[k] = xs[k * st];
    } else {
      for (int64_t k = 0; k < inner; k++)
        memcpy(y + (size_t)(r * inner + k) * es, x + (size_t)(off + k * st) * es, es);
    }
  }
}
static void permute_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int64_t ss[PV_MAX_DIMS];
  perm_strides(t, ss);
  for (int64_t i = 0; i < t->numel; i++) {
    int64_t q = i, off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
      off += (q % t->shape[d]) * ss[d];
      q /= t->shape[d];
    }
    y[i] = s[0][off];
  }
}
static pv_status permute_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const permute_p *p = PV_CPARAMS(permute_p, t);
  int inv[PV_MAX_DIMS];
  for (int i = 0; i < p->ndim; i++)
    inv[p->perm[i]] = i;
  dsrc[0] = pv_permute(g, dy, p->ndim, inv);
  return g->st;
}
static int permute_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t ss[PV_MAX_DIMS];
  perm_strides(t, ss);
  return pv_vk_gather(d, 0, t->ndim, t->shape, ss, 0, (int)esize(t));
}
const pv_op_def pv_op_permute = {.name = "permute",
                                 .min_src = 1,
                                 .max_src = 1,
                                 .shape = permute_shape,
                                 .backward = permute_backward,
                                 .cpu = permute_cpu,
                                 .ref = permute_ref,
                                 .vk = permute_vk};
pv_tensor *pv_permute(pv_graph *g, pv_tensor *x, int ndim, const int *perm) {
  if (!g || g->st) return NULL;
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim && !perm))
    return pv__gerr(g, PV_ERR_SHAPE, "permute: invalid ndim %d", ndim);
  permute_p p = {ndim, {0}};
  for (int i = 0; i < ndim; i++)
    p.perm[i] = perm[i];
  return pv__node(g, PV_OP_PERMUTE, 1, &x, &p, sizeof p);
}
pv_tensor *pv_transpose(pv_graph *g, pv_tensor *x, int a0, int a1) {
  if (!g || g->st) return NULL;
  if (!x) return pv__gerr(g, PV_ERR_NULL, "transpose: input is NULL");
  int n = x->ndim, p[PV_MAX_DIMS];
  int b0 = pv_axis(a0, n), b1 = pv_axis(a1, n);
  char b[128];
  if (b0 < 0 || b1 < 0)
    return pv__gerr(g, PV_ERR_SHAPE, "transpose: axes (%d, %d) out of range for %s", a0, a1, PV_SHAPESTR(b, x));
  for (int i = 0; i < n; i++)
    p[i] = i;
  p[b0] = b1;
  p[b1] = b0;
  return pv_permute(g, x, n, p);
}

/* ------------------------------------------------------------ select (view at an offset) */
static pv_status select_shape(pv_tensor *t) {
  const select_p *p = PV_CPARAMS(select_p, t);
  pv_tensor *x = t->src[0];
  char b[128];
  if (x->ndim < 1 || p->index < 0 || p->index >= x->shape[0])
    return PV_FAIL(t, PV_ERR_SHAPE, "select: index %lld out of range for %s", (long long)p->index, PV_SHAPESTR(b, x));
  int64_t blk = x->numel / x->shape[0];
  if ((p->index * blk * (int64_t)esize(x)) % PV_ALIGN)
    return PV_FAIL(t, PV_ERR_SHAPE, "select: block %lld of %s does not start on a %d-byte boundary",
                   (long long)p->index, PV_SHAPESTR(b, x), PV_ALIGN);
  pv__set_shape(t, x->dtype, x->ndim - 1, x->shape + 1);
  return PV_OK;
}
static int64_t select_offset(const pv_tensor *t) { return PV_CPARAMS(select_p, t)->index * t->numel; }
static pv_tensor *unslice(pv_graph *g, pv_tensor *x, int axis, int64_t start, int64_t end, int64_t full);
static pv_status select_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const pv_tensor *x = t->src[0];
  int64_t i = PV_CPARAMS(select_p, t)->index, sh[PV_MAX_DIMS];
  sh[0] = 1;
  for (int d = 1; d < x->ndim; d++)
    sh[d] = x->shape[d];
  dsrc[0] = unslice(g, pv_reshape(g, dy, x->ndim, sh), 0, i, i + 1, x->shape[0]);
  return g->st;
}
const pv_op_def pv_op_select = {.name = "select",
                                .min_src = 1,
                                .max_src = 1,
                                .flags = PV_OPF_VIEW,
                                .shape = select_shape,
                                .backward = select_backward,
                                .view_offset = select_offset};
pv_tensor *pv__select(pv_graph *g, pv_tensor *x, int64_t index) {
  select_p p = {index};
  return pv__node(g, PV_OP_SELECT, 1, &x, &p, sizeof p);
}

/* ------------------------------------------------------------ slice / unslice */
static void oni(const pv_tensor *x, int axis, int64_t *outer, int64_t *inner) {
  *outer = 1, *inner = 1;
  for (int i = 0; i < axis; i++)
    *outer *= x->shape[i];
  for (int i = axis + 1; i < x->ndim; i++)
    *inner *= x->shape[i];
}
static pv_status slice_shape(pv_tensor *t) {
  slice_p *p = PV_PARAMS(slice_p, t);
  pv_tensor *x = t->src[0];
  char b[128];
  int ax = pv_axis(p->axis, x->ndim);
  if (ax < 0) return PV_FAIL(t, PV_ERR_SHAPE, "slice: axis %d out of range for %s", p->axis, PV_SHAPESTR(b, x));
  int64_t n = x->shape[ax];
  if (p->start < 0) p->start += n;
  if (p->end < 0) p->end += n;
  if (p->start < 0 || p->end > n || p->start > p->end)
    return PV_FAIL(t, PV_ERR_SHAPE, "slice: range [%lld, %lld) out of bounds for axis %d of %s", (long long)p->start,
                   (long long)p->end, ax, PV_SHAPESTR(b, x));
  p->axis = ax;
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++)
    sh[i] = i == ax ? p->end - p->start : x->shape[i];
  pv__set_shape(t, x->dtype, x->ndim, sh);
  return PV_OK;
}
static pv_status unslice_shape(pv_tensor *t) {
  slice_p *p = PV_PARAMS(slice_p, t);
  pv_tensor *x = t->src[0];
  char b[128];
  int ax = pv_axis(p->axis, x->ndim);
  if (ax < 0 || p->start < 0 || p->end - p->start != x->shape[ax] || p->end > p->full)
    return PV_FAIL(t, PV_ERR_SHAPE, "unslice: range [%lld, %lld) of %lld does not fit %s", (long long)p->start,
                   (long long)p->end, (long long)p->full, PV_SHAPESTR(b, x));
  p->axis = ax;
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++)
    sh[i] = i == ax ? p->full : x->shape[i];
  pv__set_shape(t, x->dtype, x->ndim, sh);
  return PV_OK;
}
static void slice_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const slice_p *p = PV_CPARAMS(slice_p, t);
  const pv_tensor *x = t->src[0];
  int64_t outer, inner, o0, o1;
  oni(x, p->axis, &outer, &inner);
  size_t es = esize(t);
  int64_t n = x->shape[p->axis], len = p->end - p->start;
  pv_split(outer, a->ith, a->nth, &o0, &o1);
  for (int64_t o = o0; o < o1; o++)
    memcpy((char *)a->dst + (size_t)(o * len * inner) * es,
           (const char *)a->src[0] + (size_t)((o * n + p->start) * inner) * es, (size_t)(len * inner) * es);
}
static void unslice_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const slice_p *p = PV_CPARAMS(slice_p, t);
  int64_t outer, inner, o0, o1;
  oni(t, p->axis, &outer, &inner);
  size_t es = esize(t);
  int64_t n = p->full, len = p->end - p->start;
  pv_split(outer, a->ith, a->nth, &o0, &o1);
  for (int64_t o = o0; o < o1; o++) {
    char *row = (char *)a->dst + (size_t)(o * n * inner) * es;
    memset(row, 0, (size_t)(n * inner) * es);
    memcpy(row + (size_t)(p->start * inner) * es, (const char *)a->src[0] + (size_t)(o * len * inner) * es,
           (size_t)(len * inner) * es);
  }
}
static void slice_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  int64_t outer, inner;
  oni(t->src[0], p->axis, &outer, &inner);
  int64_t n = t->src[0]->shape[p->axis], len = p->end - p->start;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < len; k++)
      for (int64_t i = 0; i < inner; i++)
        y[(o * len + k) * inner + i] = s[0][(o * n + p->start + k) * inner + i];
}
static void unslice_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  int64_t outer, inner;
  oni(t, p->axis, &outer, &inner);
  int64_t n = p->full, len = p->end - p->start;
  for (int64_t i = 0; i < t->numel; i++)
    y[i] = 0;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < len; k++)
      for (int64_t i = 0; i < inner; i++)
        y[(o * n + p->start + k) * inner + i] = s[0][(o * len + k) * inner + i];
}
static pv_tensor *unslice(pv_graph *g, pv_tensor *x, int axis, int64_t start, int64_t end, int64_t full) {
  slice_p p = {axis, start, end, full};
  return pv__node(g, PV_OP_UNSLICE, 1, &x, &p, sizeof p);
}
static pv_status slice_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  dsrc[0] = unslice(g, dy, p->axis, p->start, p->end, t->src[0]->shape[p->axis]);
  return g->st;
}
static pv_status unslice_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  dsrc[0] = pv_slice(g, dy, p->axis, p->start, p->end);
  return g->st;
}
static int slice_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  int64_t xs[PV_MAX_DIMS];
  pv_vk_contig(t->src[0]->ndim, t->src[0]->shape, xs);
  return pv_vk_gather(d, 0, t->ndim, t->shape, xs, p->start * xs[p->axis], (int)esize(t));
}
static int unslice_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const slice_p *p = PV_CPARAMS(slice_p, t);
  int64_t end[3] = {p->start, p->end, p->full};
  int src[3] = {-1, 0, -1};
  return pv_vk_segments(d, t, p->axis, 3, end, src);
}
const pv_op_def pv_op_slice = {.name = "slice",
                               .min_src = 1,
                               .max_src = 1,
                               .shape = slice_shape,
                               .backward = slice_backward,
                               .cpu = slice_cpu,
                               .ref = slice_ref,
                               .vk = slice_vk};
const pv_op_def pv_op_unslice = {.name = "unslice",
                                 .min_src = 1,
                                 .max_src = 1,
                                 .shape = unslice_shape,
                                 .backward = unslice_backward,
                                 .cpu = unslice_cpu,
                                 .ref = unslice_ref,
                                 .vk = unslice_vk};
pv_tensor *pv_slice(pv_graph *g, pv_tensor *x, int axis, int64_t start, int64_t end) {
  slice_p p = {axis, start, end, 0};
  return pv__node(g, PV_OP_SLICE, 1, &x, &p, sizeof p);
}

/* ------------------------------------------------------------ concat */
static pv_status concat_shape(pv_tensor *t) {
  concat_p *p = PV_PARAMS(concat_p, t);
  pv_tensor *x0 = t->src[0];
  char b1[128], b2[128];
  int ax = pv_axis(p->axis, x0->ndim);
  if (ax < 0) return PV_FAIL(t, PV_ERR_SHAPE, "concat: axis %d out of range for %s", p->axis, PV_SHAPESTR(b1, x0));
  p->axis = ax;
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < x0->ndim; i++)
    sh[i] = x0->shape[i];
  for (int k = 1; k < t->nsrc; k++) {
    pv_tensor *x = t->src[k];
    int ok = x->ndim == x0->ndim && x->dtype == x0->dtype;
    for (int i = 0; ok && i < x->ndim; i++)
      if (i != ax && x->shape[i] != x0->shape[i]) ok = 0;
    if (!ok)
      return PV_FAIL(t, PV_ERR_SHAPE, "concat: input %d %s %s does not match input 0 %s %s along axis %d", k,
                     pv_dtype_name(x->dtype), PV_SHAPESTR(b1, x), pv_dtype_name(x0->dtype), PV_SHAPESTR(b2, x0), ax);
    sh[ax] += x->shape[ax];
  }
  pv__set_shape(t, x0->dtype, x0->ndim, sh);
  return PV_OK;
}
static void concat_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int ax = PV_CPARAMS(concat_p, t)->axis;
  int64_t outer, inner, o0, o1;
  oni(t, ax, &outer, &inner);
  size_t es = esize(t);
  int64_t n = t->shape[ax];
  pv_split(outer, a->ith, a->nth, &o0, &o1);
  for (int64_t o = o0; o < o1; o++) {
    int64_t off = 0;
    for (int k = 0; k < t->nsrc; k++) {
      int64_t len = t->src[k]->shape[ax];
      memcpy((char *)a->dst + (size_t)((o * n + off) * inner) * es,
             (const char *)a->src[k] + (size_t)(o * len * inner) * es, (size_t)(len * inner) * es);
      off += len;
    }
  }
}
static void concat_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int ax = PV_CPARAMS(concat_p, t)->axis;
  int64_t outer, inner;
  oni(t, ax, &outer, &inner);
  int64_t n = t->shape[ax];
  for (int64_t o = 0; o < outer; o++) {
    int64_t off = 0;
    for (int k = 0; k < t->nsrc; k++) {
      int64_t len = t->src[k]->shape[ax];
      for (int64_t j = 0; j < len * inner; j++)
        y[(o * n + off) * inner + j] = s[k][o * len * inner + j];
      off += len;
    }
  }
}
static pv_status concat_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  int ax = PV_CPARAMS(concat_p, t)->axis;
  int64_t off = 0;
  for (int k = 0; k < t->nsrc; k++) {
    int64_t len = t->src[k]->shape[ax];
    if (need[k]) dsrc[k] = pv_slice(g, dy, ax, off, off + len);
    off += len;
  }
  return g->st;
}
static int concat_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int ax = PV_CPARAMS(concat_p, t)->axis, src[PV_MAX_SRC];
  int64_t end[PV_MAX_SRC], off = 0;
  for (int k = 0; k < t->nsrc; k++) {
    off += t->src[k]->shape[ax];
    end[k] = off;
    src[k] = k;
  }
  return pv_vk_segments(d, t, ax, t->nsrc, end, src);
}
const pv_op_def pv_op_concat = {.name = "concat",
                                .min_src = 1,
                                .max_src = PV_MAX_SRC,
                                .shape = concat_shape,
                                .backward = concat_backward,
                                .cpu = concat_cpu,
                                .ref = concat_ref,
                                .vk = concat_vk};
pv_tensor *pv_concat(pv_graph *g, int n, pv_tensor *const *xs, int axis) {
  if (!g || g->st) return NULL;
  if (n < 1 || !xs) return pv__gerr(g, PV_ERR_INVALID, "concat: needs at least one input");
  if (n > PV_MAX_SRC) { /* concatenate in groups */
    pv_tensor *head = pv_concat(g, PV_MAX_SRC, xs, axis);
    pv_tensor *rest[PV_MAX_SRC];
    rest[0] = head;
    int m = n - PV_MAX_SRC;
    if (m + 1 <= PV_MAX_SRC) {
      for (int i = 0; i < m; i++)
        rest[i + 1] = xs[PV_MAX_SRC + i];
      return pv_concat(g, m + 1, rest, axis);
    }
    pv_tensor *tail = pv_concat(g, m, xs + PV_MAX_SRC, axis);
    pv_tensor *two[2] = {head, tail};
    return pv_concat(g, 2, two, axis);
  }
  concat_p p = {axis};
  return pv__node(g, PV_OP_CONCAT, n, xs, &p, sizeof p);
}

/* ------------------------------------------------------------ copy, cast */
static pv_status copy_shape(pv_tensor *t) {
  pv__set_shape(t, t->src[0]->dtype, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}
static void copy_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  size_t es = esize(t);
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  if (i1 > i0)
    memcpy((char *)a->dst + (size_t)i0 * es, (const char *)a->src[0] + (size_t)i0 * es, (size_t)(i1 - i0) * es);
}
static void copy_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  memcpy(y, s[0], sizeof(double) * (size_t)t->numel);
}
static pv_status copy_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need, (void)t;
  dsrc[0] = dy;
  return g->st;
}
static int copy_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t one = 1;
  return pv_vk_gather(d, 0, 1, &t->numel, &one, 0, (int)esize(t));
}
const pv_op_def pv_op_copy = {.name = "copy",
                              .min_src = 1,
                              .max_src = 1,
                              .shape = copy_shape,
                              .backward = copy_backward,
                              .cpu = copy_cpu,
                              .ref = copy_ref,
                              .vk = copy_vk};
pv_tensor *pv_copy(pv_graph *g, pv_tensor *x) { return pv__node(g, PV_OP_COPY, 1, &x, NULL, 0); }

static pv_status cast_shape(pv_tensor *t) {
  pv_dtype d = (pv_dtype)PV_CPARAMS(cast_p, t)->dtype;
  if (pv_dtype_size(d) == 0 || d == PV_F64)
    return PV_FAIL(t, PV_ERR_DTYPE, "cast: unsupported target dtype %d", (int)d);
  pv__set_shape(t, d, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}
static void cast_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  size_t es = esize(t), xs = esize(t->src[0]);
  pv__convert(t->dtype, (char *)a->dst + (size_t)i0 * es, t->src[0]->dtype, (const char *)a->src[0] + (size_t)i0 * xs,
              i1 - i0);
}
static void cast_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  for (int64_t i = 0; i < t->numel; i++) {
    double v = s[0][i];
    if (pv__is_int(t->dtype))
      v = (double)(int64_t)v;
    else if (t->dtype == PV_BF16)
      v = pv__bf16_to_f32(pv__f32_to_bf16((float)v));
    else if (t->dtype == PV_F16)
      v = pv__f16_to_f32(pv__f32_to_f16((float)v));
    y[i] = v;
  }
}
static pv_status cast_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  if (!pv__is_float(t->src[0]->dtype) || !pv__is_float(t->dtype))
    return (pv__gerr(g, PV_ERR_UNSUPPORTED, "cast: no gradient through %s -> %s", pv_dtype_name(t->src[0]->dtype),
                     pv_dtype_name(t->dtype)),
            g->st);
  dsrc[0] = t->src[0]->dtype == PV_F32 ? dy : pv_cast(g, dy, t->src[0]->dtype);
  return g->st;
}
static int cast_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  pv_dtype sd = t->src[0]->dtype;
  if (sd == PV_F64) return 0;
  int bind[2] = {-1, 0};
  pv_vk_begin(d, "cast", 2, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, (uint32_t)sd);
  pv_vk_push(d, (uint32_t)t->dtype);
  pv_vk_grid(d, esize(t) == 2 ? (t->numel + 1) / 2 : t->numel, PV_VK_WG);
  return 1;
}
const pv_op_def pv_op_cast = {.name = "cast",
                              .min_src = 1,
                              .max_src = 1,
                              .shape = cast_shape,
                              .backward = cast_backward,
                              .cpu = cast_cpu,
                              .ref = cast_ref,
                              .vk = cast_vk};
pv_tensor *pv_cast(pv_graph *g, pv_tensor *x, pv_dtype dtype) {
  if (x && x->dtype == dtype) return x;
  cast_p p = {(int)dtype};
  return pv__node(g, PV_OP_CAST, 1, &x, &p, sizeof p);
}
