/* Embedding lookup and its adjoint.
 *  embedding:   weight [V, D] f32, ids [...] (i32/i64, no gradient) -> y [..., D], y[n] = weight[ids[n]];
 *               ids outside [0, V) give a zero row and a run error. dweight = scatter_add(dy, ids, V).
 *  scatter_add: dy [..., D] f32, ids [...] -> y [V, D], y[v] = Σ_{n: ids[n] = v} dy[n] (in id order);
 *               d dy = embedding(dy_out, ids).
 *  The scatter_add CPU kernel partitions the V rows among threads; each thread scans all ids in order and
 *  adds only the rows it owns, so the result does not depend on the thread count. */
#include "common.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int64_t V;
} scatter_p;

pv_tensor *pv_scatter_add(pv_graph *g, pv_tensor *dy, pv_tensor *ids, int64_t V);

/* ------------------------------------------------------------ embedding */
static pv_status embedding_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0) || !pv_need_ids(t, 1)) return t->graph->st;
  pv_tensor *w = t->src[0], *ids = t->src[1];
  char b1[128], b2[128];
  if (w->ndim != 2) return PV_FAIL(t, PV_ERR_SHAPE, "embedding: weight %s must be [V, D]", PV_SHAPESTR(b1, w));
  if (ids->ndim + 1 > PV_MAX_DIMS)
    return PV_FAIL(t, PV_ERR_SHAPE, "embedding: ids %s have too many dimensions for weight %s", PV_SHAPESTR(b1, ids),
                   PV_SHAPESTR(b2, w));
  int64_t sh[PV_MAX_DIMS];
  for (int i = 0; i < ids->ndim; i++) sh[i] = ids->shape[i];
  sh[ids->ndim] = w->shape[1];
  pv__set_shape(t, PV_F32, ids->ndim + 1, sh);
  return PV_OK;
}

static void embedding_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *ids = t->src[1];
  int64_t V = t->src[0]->shape[0], D = t->src[0]->shape[1];
  const float *w = a->src[0];
  float *y = a->dst;
  int64_t n0, n1;
  int bad = 0;
  pv_split(ids->numel, a->ith, a->nth, &n0, &n1);
  for (int64_t n = n0; n < n1; n++) {
    int64_t id = pv_id_at(ids->dtype, a->src[1], n);
    if (id < 0 || id >= V) {
      memset(y + n * D, 0, sizeof(float) * (size_t)D);
      bad = 1;
    } else memcpy(y + n * D, w + id * D, sizeof(float) * (size_t)D);
  }
  if (bad) *a->error = 1;
}

/* a double holding an id; -1 if it is not an integer in [0, V) */
static int64_t ref_id(double v, int64_t V) {
  if (!(v >= 0) || v >= (double)V || v != floor(v)) return -1;
  return (int64_t)v;
}

static void embedding_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w;
  const pv_tensor *ids = t->src[1];
  int64_t V = t->src[0]->shape[0], D = t->src[0]->shape[1];
  for (int64_t n = 0; n < ids->numel; n++) {
    int64_t id = ref_id(s[1][n], V);
    if (id < 0) *err = 1;
    for (int64_t d = 0; d < D; d++) y[n * D + d] = id < 0 ? 0.0 : s[0][id * D + d];
  }
}

static pv_status embedding_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_scatter_add(g, dy, t->src[1], t->src[0]->shape[0]);
  return g->st;
}

/* Vulkan (shaders/embedding.comp): one invocation per output element, or per 4 when D % 4 == 0. */
static int embedding_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  const pv_tensor *ids = t->src[1];
  int64_t V = t->src[0]->shape[0], D = t->src[0]->shape[1];
  if (max < 1 || t->numel > UINT32_MAX || V > INT32_MAX) return 0;
  int vec = D % 4 == 0;
  int bind[3] = {-1, 0, 1};
  pv_vk_begin(d, "embedding", 3, bind);
  pv_vk_push(d, (uint32_t)ids->numel);
  pv_vk_push(d, (uint32_t)D);
  pv_vk_push(d, (uint32_t)V);
  pv_vk_push(d, (ids->dtype == PV_I64 ? 1u : 0u) | (vec ? 2u : 0u));
  pv_vk_grid(d, vec ? t->numel / 4 : t->numel, PV_VK_WG);
  d->work = (double)t->numel;
  return 1;
}

const pv_op_def pv_op_embedding = {.name = "embedding", .min_src = 2, .max_src = 2, .nodiff = 2u,
                                   .shape = embedding_shape, .backward = embedding_backward,
                                   .cpu = embedding_cpu, .ref = embedding_ref, .vk = embedding_vk};

pv_tensor *pv_embedding(pv_graph *g, pv_tensor *weight, pv_tensor *ids) {
  pv_tensor *s[2] = {weight, ids};
  return pv__node(g, PV_OP_EMBEDDING, 2, s, NULL, 0);
}

/* ------------------------------------------------------------ scatter_add */
static pv_status scatter_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0) || !pv_need_ids(t, 1)) return t->graph->st;
  const scatter_p *p = PV_CPARAMS(scatter_p, t);
  pv_tensor *dy = t->src[0], *ids = t->src[1];
  char b1[128], b2[128];
  int ok = dy->ndim == ids->ndim + 1;
  for (int i = 0; ok && i < ids->ndim; i++) ok = dy->shape[i] == ids->shape[i];
  if (!ok)
    return PV_FAIL(t, PV_ERR_SHAPE, "scatter_add: dy %s must be ids %s with one more (last) dimension",
                   PV_SHAPESTR(b1, dy), PV_SHAPESTR(b2, ids));
  if (p->V < 0) return PV_FAIL(t, PV_ERR_SHAPE, "scatter_add: negative row count %lld", (long long)p->V);
  int64_t sh[2] = {p->V, dy->shape[dy->ndim - 1]};
  pv__set_shape(t, PV_F32, 2, sh);
  return PV_OK;
}

static void scatter_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *ids = t->src[1];
  int64_t V = t->shape[0], D = t->shape[1];
  const float *dy = a->src[0];
  float *y = a->dst;
  int64_t v0, v1;
  int bad = 0;
  pv_split(V, a->ith, a->nth, &v0, &v1);
  if (v1 > v0) memset(y + v0 * D, 0, sizeof(float) * (size_t)((v1 - v0) * D));
  for (int64_t n = 0; n < ids->numel; n++) {
    int64_t id = pv_id_at(ids->dtype, a->src[1], n);
    if (id >= v0 && id < v1) {
      float *yr = y + id * D;
      const float *dr = dy + n * D;
      for (int64_t d = 0; d < D; d++) yr[d] += dr[d];
    } else if (a->ith == 0 && (id < 0 || id >= V)) bad = 1; /* one thread reports */
  }
  if (bad) *a->error = 1;
}

static void scatter_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w;
  const pv_tensor *ids = t->src[1];
  int64_t V = t->shape[0], D = t->shape[1];
  for (int64_t i = 0; i < V * D; i++) y[i] = 0;
  for (int64_t n = 0; n < ids->numel; n++) {
    int64_t id = ref_id(s[1][n], V);
    if (id < 0) {
      *err = 1;
      continue;
    }
    for (int64_t d = 0; d < D; d++) y[id * D + d] += s[0][n * D + d];
  }
}

static pv_status scatter_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_embedding(g, dy, t->src[1]);
  return g->st;
}

/* Vulkan: a stable counting sort of the id positions by row in the scratch buffer (uints: cnt[V], cur[V], off[V+1],
 * seg[n], sorted[n]), then one invocation per output element sums its row's dy entries in increasing position, the
 * CPU kernel's order, so the results are bitwise equal to the CPU's and deterministic. Dispatches: zero cnt and cur
 * (fill), count (atomic integer counts; reports ids out of range), scan (one workgroup), place (atomic slots in the
 * row's segment), rank (orders each segment: cost the sum of squared row counts), sum (shaders/scatter_add*.comp). */
static size_t scatter_vk_scratch(const pv_tensor *t) {
  return sizeof(uint32_t) * (size_t)(3 * t->shape[0] + 1 + 2 * t->src[1]->numel);
}

static int scatter_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  const pv_tensor *ids = t->src[1];
  int64_t V = t->shape[0], D = t->shape[1], n = ids->numel;
  if (max < 6 || 3 * V + 1 + 2 * n > UINT32_MAX || t->numel > UINT32_MAX || V > INT32_MAX) return 0;
  uint32_t fl = ids->dtype == PV_I64 ? 1u : 0u;
  int bs[1] = {-2}, bsi[2] = {-2, 1}, bsum[3] = {-1, 0, -2};
  pv_vk_begin(&d[0], "fill", 1, bs); /* cnt = cur = 0 */
  pv_vk_push(&d[0], (uint32_t)(2 * V));
  pv_vk_push(&d[0], 0u);
  pv_vk_grid(&d[0], 2 * V, PV_VK_WG);
  static const char *pass[3] = {"scatter_add_count", "scatter_add_place", "scatter_add_rank"};
  for (int k = 0; k < 3; k++) {
    pv_vk_dispatch *x = &d[k == 0 ? 1 : k + 2];
    pv_vk_begin(x, pass[k], 2, bsi);
    pv_vk_push(x, (uint32_t)n);
    pv_vk_push(x, (uint32_t)V);
    pv_vk_push(x, fl);
    pv_vk_grid(x, n, PV_VK_WG);
  }
  d[4].work = (double)n * 64.0; /* rank: depends on the id distribution */
  pv_vk_begin(&d[2], "scatter_add_scan", 1, bs);
  pv_vk_push(&d[2], (uint32_t)n);
  pv_vk_push(&d[2], (uint32_t)V);
  d[2].groups[0] = d[2].groups[1] = d[2].groups[2] = 1;
  d[2].work = (double)V;
  pv_vk_begin(&d[5], "scatter_add", 3, bsum);
  pv_vk_push(&d[5], (uint32_t)n);
  pv_vk_push(&d[5], (uint32_t)V);
  pv_vk_push(&d[5], (uint32_t)D);
  pv_vk_grid(&d[5], t->numel, PV_VK_WG);
  d[5].work = (double)t->numel + (double)n * (double)D;
  return 6;
}

const pv_op_def pv_op_scatter_add = {.name = "scatter_add", .min_src = 2, .max_src = 2, .nodiff = 2u,
                                     .shape = scatter_shape, .backward = scatter_backward, .cpu = scatter_cpu,
                                     .ref = scatter_ref, .vk = scatter_vk, .vk_scratch = scatter_vk_scratch};

/* Not yet declared in pivot.h: y [V, D] = Σ dy rows by id (the backward of pv_embedding). */
pv_tensor *pv_scatter_add(pv_graph *g, pv_tensor *dy, pv_tensor *ids, int64_t V) {
  scatter_p p = {V};
  pv_tensor *s[2] = {dy, ids};
  return pv__node(g, PV_OP_SCATTER_ADD, 2, s, &p, sizeof p);
}
