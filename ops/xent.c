/* Token log-probabilities (the cross-entropy building block) and label masks.
 *  token_logprob:      logits [..., V] f32, labels [...] (i32/i64; N = numel rows) -> y [...] f32,
 *                      y[n] = x[n, l] - logsumexp(x[n, :]) with l = labels[n]; y[n] = 0 where l == ignore_index.
 *                      Labels outside [0, V) (and not ignore_index) are a run error. The row logsumexp is
 *                      computed stably (running max over chunks) with float64 accumulation (of f32 partial sums
 *                      of 32 terms); the CPU kernels use a vectorised polynomial exp (~1.4 ulp).
 *                      d logits[n, j] = dy[n] · (1[j == l] - softmax(x[n])[j]), 0 for ignored rows; labels: none.
 *  token_logprob_grad: (logits, labels, dy) -> dlogits [..., V] (backward only). Recomputes the softmax per row,
 *                      so it needs no [N, V] buffer but its output (which may reuse the logits' storage).
 *  label_mask:         labels [...] -> f32 [...], 1 where labels != ignore_index else 0 (not differentiable).
 * Labels may have the leading shape of the logits, or be flat [N], or any shape of N elements when the logits
 * are [N, V]. */
#include "common.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int64_t ignore;
} xent_p;

#define XENT_CHUNK 2048 /* floats per chunk of a row: max, then exp-sum while it is in L1 */

/* rows and vocabulary of logits [..., V] */
static void rows_vocab(const pv_tensor *x, int64_t *n, int64_t *v) {
  *v = x->shape[x->ndim - 1];
  *n = 1;
  for (int i = 0; i < x->ndim - 1; i++) *n *= x->shape[i];
}

/* validates logits (src 0) and labels (src 1); returns 0 after recording an error */
static int check_logits_labels(pv_tensor *t, const char *nm) {
  if (!pv_need_f32(t, 0) || !pv_need_ids(t, 1)) return 0;
  pv_tensor *x = t->src[0], *l = t->src[1];
  char b1[128], b2[128];
  if (x->ndim < 1) {
    pv__gerr(t->graph, PV_ERR_SHAPE, "%s: logits %s must have at least one dimension [..., V]", nm, PV_SHAPESTR(b1, x));
    return 0;
  }
  int64_t n, v;
  rows_vocab(x, &n, &v);
  if (v == 0) {
    pv__gerr(t->graph, PV_ERR_SHAPE, "%s: logits %s have an empty vocabulary dimension", nm, PV_SHAPESTR(b1, x));
    return 0;
  }
  int ok = l->numel == n;
  if (ok && !(l->ndim == 1 || x->ndim == 2)) { /* otherwise labels must be the leading shape of the logits */
    ok = l->ndim == x->ndim - 1;
    for (int i = 0; ok && i < l->ndim; i++) ok = l->shape[i] == x->shape[i];
  }
  if (!ok) {
    pv__gerr(t->graph, PV_ERR_SHAPE,
             "%s: labels %s do not match logits %s (expected the leading shape, or %lld labels)", nm, PV_SHAPESTR(b1, l),
             PV_SHAPESTR(b2, x), (long long)n);
    return 0;
  }
  return 1;
}

/* exp(x) for the shifted logits x <= 0: Cephes' expf polynomial (~2 ulp), 0 below -87.3, NaN propagates. The CPU
 * kernels use it (scalar and 4-wide) so that the exp-heavy row passes vectorise; the reference uses libm exp. */
#define EXP_LO -87.3f
#define EXP_MAGIC 12582912.0f /* 1.5 * 2^23: (v + MAGIC) - MAGIC rounds v to an integer */
#define EXP_POLY(y, r)                                                                                              \
  do {                                                                                                              \
    y = 1.9875691500e-4f * r + 1.3981999507e-3f;                                                                    \
    y = y * r + 8.3334519073e-3f;                                                                                   \
    y = y * r + 4.1665795894e-2f;                                                                                   \
    y = y * r + 1.6666665459e-1f;                                                                                   \
    y = y * r + 5.0000001201e-1f;                                                                                   \
    y = y * r * r + r + 1.0f;                                                                                       \
  } while (0)
static inline float exp_neg(float x) {
  if (!(x >= EXP_LO)) return x != x ? x : 0.0f;
  float n = (x * 1.44269504088896341f + EXP_MAGIC) - EXP_MAGIC; /* in [-126, 0] */
  float r = x - n * 0.693359375f, y;
  r = r - n * -2.12194440e-4f;
  EXP_POLY(y, r);
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float sc;
  memcpy(&sc, &bits, sizeof sc);
  return y * sc;
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9)
#define XENT_SIMD 1
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
static inline v4f load4(const float *p) {
  v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline v4f exp_neg4(v4f x) {
  v4f n = (x * 1.44269504088896341f + EXP_MAGIC) - EXP_MAGIC;
  v4f r = x - n * 0.693359375f, y;
  r = r - n * -2.12194440e-4f;
  EXP_POLY(y, r);
  v4i bits = (__builtin_convertvector(n, v4i) + 127) << 23;
  v4f res = y * (v4f)bits;
  return (v4f)((v4i)res & ~(x < EXP_LO)); /* lanes below the range (and -inf) give 0; NaN lanes stay NaN */
}
static inline v4f max4(v4f a, v4f b) {
  v4i gt = b > a;
  return (v4f)(((v4i)b & gt) | ((v4i)a & ~gt));
}
#else
#define XENT_SIMD 0
#endif

/* max of x[j0, j1) (j1 > j0; NaNs are skipped) */
static float chunk_max(const float *x, int64_t j0, int64_t j1) {
  float m = x[j0];
  int64_t j = j0;
#if XENT_SIMD
  if (j1 - j0 >= 8) {
    v4f a = load4(x + j), b = load4(x + j + 4);
    for (j += 8; j + 8 <= j1; j += 8) {
      a = max4(a, load4(x + j));
      b = max4(b, load4(x + j + 4));
    }
    a = max4(a, b);
    for (int k = 0; k < 4; k++) m = a[k] > m ? a[k] : m;
  }
#endif
  for (; j < j1; j++) m = x[j] > m ? x[j] : m;
  return m;
}

/* Σ exp(x[j] - m) over [j0, j1): blocks of 32 summed in f32, blocks accumulated in f64 */
static double chunk_sum_exp(const float *x, int64_t j0, int64_t j1, float m) {
  double s = 0;
  int64_t j = j0;
#if XENT_SIMD
  double d[4] = {0, 0, 0, 0};
  for (; j + 32 <= j1; j += 32) {
    v4f a = exp_neg4(load4(x + j) - m), b = exp_neg4(load4(x + j + 4) - m);
    for (int k = 8; k < 32; k += 8) {
      a += exp_neg4(load4(x + j + k) - m);
      b += exp_neg4(load4(x + j + k + 4) - m);
    }
    a += b;
    for (int k = 0; k < 4; k++) d[k] += a[k];
  }
  s = (d[0] + d[1]) + (d[2] + d[3]);
#endif
  for (; j < j1; j++) s += exp_neg(x[j] - m);
  return s;
}

/* y[j] = sc * exp(x[j] - m) over [0, v); y may alias x */
static void scaled_exp(float *y, const float *x, int64_t v, float m, float sc) {
  int64_t j = 0;
#if XENT_SIMD
  for (; j + 4 <= v; j += 4) {
    v4f e = exp_neg4(load4(x + j) - m) * sc;
    memcpy(y + j, &e, sizeof e);
  }
#endif
  for (; j < v; j++) y[j] = sc * exp_neg(x[j] - m);
}

/* Row max m and s = Σ exp(x - m) (float64 accumulation), one pass over the row in L1-sized chunks. */
static void row_lse(const float *x, int64_t v, float *pm, double *ps) {
  float m = -INFINITY;
  double s = 0;
  for (int64_t c0 = 0; c0 < v; c0 += XENT_CHUNK) {
    int64_t c1 = c0 + XENT_CHUNK < v ? c0 + XENT_CHUNK : v;
    float cm = chunk_max(x, c0, c1);
    if (cm > m) {
      if (s > 0) s *= exp((double)m - (double)cm);
      m = cm;
    }
    if (m == -INFINITY) continue; /* everything so far is -inf: contributes 0 */
    s += chunk_sum_exp(x, c0, c1, m);
  }
  *pm = m;
  *ps = s;
}

/* ------------------------------------------------------------ token_logprob */
static pv_status tlp_shape(pv_tensor *t) {
  if (!check_logits_labels(t, "token_logprob")) return t->graph->st;
  pv_tensor *l = t->src[1];
  pv__set_shape(t, PV_F32, l->ndim, l->shape);
  return PV_OK;
}

static void tlp_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *X = t->src[0], *L = t->src[1];
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, n, v, r0, r1;
  rows_vocab(X, &n, &v);
  const float *x = a->src[0];
  float *y = a->dst;
  pv_split(n, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    int64_t lab = pv_id_at(L->dtype, a->src[1], r);
    if (lab == ignore) {
      y[r] = 0;
      continue;
    }
    if (lab < 0 || lab >= v) {
      *a->error = 1;
      y[r] = 0;
      continue;
    }
    const float *row = x + r * v;
    float m;
    double s;
    row_lse(row, v, &m, &s);
    y[r] = (float)(((double)row[lab] - (double)m) - log(s));
  }
}

static void tlp_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w;
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, n, v;
  rows_vocab(t->src[0], &n, &v);
  for (int64_t r = 0; r < n; r++) {
    int64_t lab = (int64_t)s[1][r];
    y[r] = 0;
    if (lab == ignore) continue;
    if (lab < 0 || lab >= v) {
      *err = 1;
      continue;
    }
    const double *row = s[0] + r * v;
    double m = row[0], acc = 0;
    for (int64_t j = 1; j < v; j++) m = row[j] > m ? row[j] : m;
    for (int64_t j = 0; j < v; j++) acc += exp(row[j] - m);
    y[r] = row[lab] - m - log(acc);
  }
}

static pv_tensor *tlp_grad(pv_graph *g, pv_tensor *logits, pv_tensor *labels, pv_tensor *dy, int64_t ignore);

static pv_status tlp_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  if (need[0]) dsrc[0] = tlp_grad(g, t->src[0], t->src[1], dy, PV_CPARAMS(xent_p, t)->ignore);
  return g->st;
}

/* Vulkan (shaders/token_logprob*.comp, token_logprob_grad*.comp): one workgroup of PV_VK_WG per row, an online
 * max / Kahan exp-sum per invocation over the strided row, combined by a workgroup tree; f32 throughout. */
static int tlp_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const pv_tensor *X = t->src[0];
  int grad = t->op == PV_OP_TOKEN_LOGPROB_GRAD;
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, n, v;
  rows_vocab(X, &n, &v);
  if (X->numel > UINT32_MAX || 2 * n > UINT32_MAX) return 0;
  int bind[4] = {-1, 0, 1, 2};
  pv_vk_begin(d, grad ? "token_logprob_grad" : "token_logprob", grad ? 4 : 3, bind);
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, (uint32_t)v);
  pv_vk_push(d, t->src[1]->dtype == PV_I64 ? 1u : 0u);
  pv_vk_push(d, (uint32_t)((uint64_t)ignore & 0xffffffffu));
  pv_vk_push(d, (uint32_t)((uint64_t)ignore >> 32));
  pv_vk_grid(d, n * PV_VK_WG, PV_VK_WG);
  d->work = (double)X->numel * (grad ? 8.0 : 4.0);
  return 1;
}

const pv_op_def pv_op_token_logprob = {.name = "token_logprob", .min_src = 2, .max_src = 2, .nodiff = 2u,
                                       .shape = tlp_shape, .backward = tlp_backward, .cpu = tlp_cpu,
                                       .ref = tlp_ref, .vk = tlp_vk};

pv_tensor *pv_token_logprob(pv_graph *g, pv_tensor *logits, pv_tensor *labels, int64_t ignore_index) {
  xent_p p = {ignore_index};
  pv_tensor *s[2] = {logits, labels};
  return pv__node(g, PV_OP_TOKEN_LOGPROB, 2, s, &p, sizeof p);
}

/* ------------------------------------------------------------ token_logprob_grad(logits, labels, dy) */
static pv_status tlpg_shape(pv_tensor *t) {
  if (!check_logits_labels(t, "token_logprob_grad") || !pv_need_f32(t, 2)) return t->graph->st;
  pv_tensor *x = t->src[0], *dy = t->src[2];
  if (dy->numel != t->src[1]->numel) {
    char b1[128], b2[128];
    return PV_FAIL(t, PV_ERR_SHAPE, "token_logprob_grad: dy %s does not match labels %s", PV_SHAPESTR(b1, dy),
                   PV_SHAPESTR(b2, t->src[1]));
  }
  pv__set_shape(t, PV_F32, x->ndim, x->shape);
  return PV_OK;
}

/* Safe in place (dst == logits): each element is read before it is written. */
static void tlpg_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *X = t->src[0], *L = t->src[1];
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, n, v, r0, r1;
  rows_vocab(X, &n, &v);
  const float *x = a->src[0], *dy = a->src[2];
  float *o = a->dst;
  pv_split(n, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    int64_t lab = pv_id_at(L->dtype, a->src[1], r);
    const float *row = x + r * v;
    float *orow = o + r * v;
    if (lab == ignore || lab < 0 || lab >= v) {
      if (lab != ignore) *a->error = 1;
      memset(orow, 0, sizeof(float) * (size_t)v);
      continue;
    }
    float m;
    double s;
    row_lse(row, v, &m, &s);
    double d = dy[r], pl = exp((double)row[lab] - (double)m) / s;
    scaled_exp(orow, row, v, m, (float)(-d / s));
    orow[lab] = (float)(d * (1.0 - pl));
  }
}

static void tlpg_ref(const pv_tensor *t, double *o, const double *const *s, double *const *w, int *err) {
  (void)w;
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, n, v;
  rows_vocab(t->src[0], &n, &v);
  for (int64_t r = 0; r < n; r++) {
    int64_t lab = (int64_t)s[1][r];
    const double *row = s[0] + r * v;
    double *orow = o + r * v;
    for (int64_t j = 0; j < v; j++) orow[j] = 0;
    if (lab == ignore) continue;
    if (lab < 0 || lab >= v) {
      *err = 1;
      continue;
    }
    double m = row[0], acc = 0;
    for (int64_t j = 1; j < v; j++) m = row[j] > m ? row[j] : m;
    for (int64_t j = 0; j < v; j++) acc += exp(row[j] - m);
    double lse = m + log(acc), d = s[2][r];
    for (int64_t j = 0; j < v; j++) orow[j] = d * ((j == lab ? 1.0 : 0.0) - exp(row[j] - lse));
  }
}

const pv_op_def pv_op_token_logprob_grad = {.name = "token_logprob_grad", .min_src = 3, .max_src = 3,
                                            .flags = PV_OPF_INPLACE, .nodiff = 2u, .shape = tlpg_shape,
                                            .cpu = tlpg_cpu, .ref = tlpg_ref, .vk = tlp_vk};

static pv_tensor *tlp_grad(pv_graph *g, pv_tensor *logits, pv_tensor *labels, pv_tensor *dy, int64_t ignore) {
  xent_p p = {ignore};
  pv_tensor *s[3] = {logits, labels, dy};
  return pv__node(g, PV_OP_TOKEN_LOGPROB_GRAD, 3, s, &p, sizeof p);
}

/* ------------------------------------------------------------ label_mask */
static pv_status mask_shape(pv_tensor *t) {
  if (!pv_need_ids(t, 0)) return t->graph->st;
  pv__set_shape(t, PV_F32, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}
static void mask_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore, i0, i1;
  pv_dtype dt = t->src[0]->dtype;
  float *y = a->dst;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  for (int64_t i = i0; i < i1; i++) y[i] = pv_id_at(dt, a->src[0], i) == ignore ? 0.0f : 1.0f;
}
static void mask_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore;
  for (int64_t i = 0; i < t->numel; i++) y[i] = (int64_t)s[0][i] == ignore ? 0.0 : 1.0;
}
static int mask_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t ignore = PV_CPARAMS(xent_p, t)->ignore;
  if (2 * t->numel > UINT32_MAX) return 0;
  int bind[2] = {-1, 0};
  pv_vk_begin(d, "label_mask", 2, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, t->src[0]->dtype == PV_I64 ? 1u : 0u);
  pv_vk_push(d, (uint32_t)((uint64_t)ignore & 0xffffffffu));
  pv_vk_push(d, (uint32_t)((uint64_t)ignore >> 32));
  pv_vk_grid(d, t->numel, PV_VK_WG);
  return 1;
}
const pv_op_def pv_op_label_mask = {.name = "label_mask", .min_src = 1, .max_src = 1, .nodiff = 1u,
                                    .shape = mask_shape, .cpu = mask_cpu, .ref = mask_ref, .vk = mask_vk};

pv_tensor *pv_label_mask(pv_graph *g, pv_tensor *labels, int64_t ignore_index) {
  xent_p p = {ignore_index};
  return pv__node(g, PV_OP_LABEL_MASK, 1, &labels, &p, sizeof p);
}
