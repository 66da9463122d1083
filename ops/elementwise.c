/* Elementwise ops.
 *  binary:  y = a (+ - * /) b, NumPy broadcasting; y has the broadcast shape.
 *           d a = sum_to(dy ⊙ ∂y/∂a, a.shape), ∂(a+b)=(1,1), ∂(a-b)=(1,-1), ∂(ab)=(b,a), ∂(a/b)=(1/b, -a/b²).
 *  affine:  y = s·x + c (pv_scale, pv_add_scalar); dx = s·dy.
 *  unary:   y = f(x) for f in pv_unary_kind; dx = unary_grad(x, dy) = dy · f'(x).
 *  unary_grad: y = dy · f'(x) (backward only, not differentiated again).
 *  f:  neg, exp, log, sqrt, rsqrt, tanh, sigmoid = 1/(1+e^-x), logsigmoid = min(x,0) - log1p(e^-|x|),
 *      silu = x·sigmoid(x), gelu_tanh = 0.5x(1 + tanh(u)) with u = sqrt(2/pi)(x + 0.044715x³),
 *      gelu_erf = 0.5x(1 + erf(x/sqrt 2)), relu, square, abs.
 * CPU kernels: runtime/cpu/vmath (SIMD; exp, tanh, erf, log, sigmoid to a few ulp; gelu_tanh as x·sigmoid(2u),
 * sigmoid through e^-|x|, which equal the forms above and stay accurate in the tails). The reference is float64 libm.
 * Shapes: x, a, b, y up to 8 dims, f32. */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

enum { B_ADD = 0, B_SUB, B_MUL, B_DIV };
typedef struct {
  int kind;
} binary_p;
typedef struct {
  double s, c;
} affine_p;
typedef struct {
  int kind;
} unary_p;

/* ------------------------------------------------------------ binary */
static pv_status binary_shape(pv_tensor *t) {
  static const char *nm[] = {"add", "sub", "mul", "div"};
  if (!pv_need_f32(t, 0) || !pv_need_f32(t, 1)) return t->graph->st;
  pv_tensor *a = t->src[0], *b = t->src[1];
  int64_t sh[PV_MAX_DIMS];
  int n;
  if (!pv__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, &n, sh)) {
    char b1[128], b2[128];
    return PV_FAIL(t, PV_ERR_SHAPE, "%s: shapes %s and %s do not broadcast", nm[PV_CPARAMS(binary_p, t)->kind],
                   PV_SHAPESTR(b1, a), PV_SHAPESTR(b2, b));
  }
  pv__set_shape(t, PV_F32, n, sh);
  return PV_OK;
}

static inline float bop(int k, float x, float y) {
  switch (k) {
  case B_ADD: return x + y;
  case B_SUB: return x - y;
  case B_MUL: return x * y;
  default: return x / y;
  }
}

/* suffix broadcast: src of numel n (n divides out numel) matching the trailing dims of out */
static int is_suffix(const pv_tensor *t, const pv_tensor *s) {
  if (s->ndim > t->ndim) return 0;
  int off = t->ndim - s->ndim, lead1 = 1;
  for (int i = 0; i < s->ndim; i++) {
    if (lead1 && s->shape[i] == 1) continue;
    lead1 = 0;
    if (s->shape[i] != t->shape[i + off]) return 0;
  }
  return 1;
}

static void binary_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const pv_tensor *A = t->src[0], *B = t->src[1];
  const float *x = a->src[0], *y = a->src[1];
  float *o = a->dst;
  int k = PV_CPARAMS(binary_p, t)->kind;
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  if (i0 >= i1) return;
  int64_t na = A->numel, nb = B->numel, n = t->numel;
  if (is_suffix(t, A) && is_suffix(t, B)) {
    if (na == n && (nb == n || nb == 1)) { /* same shape, or tensor (op) scalar */
      pv__vm_binary(k, x + i0, 1, nb == n ? y + i0 : y, nb == n, o + i0, i1 - i0);
      return;
    }
    if (nb == n && na == 1) { /* scalar (op) tensor */
      pv__vm_binary(k, x, 0, y + i0, 1, o + i0, i1 - i0);
      return;
    }
    if (na == n || nb == n) { /* rows of the smaller one (a bias): whole row segments */
      int64_t ns = na == n ? nb : na;
      for (int64_t i = i0; i < i1;) {
        int64_t j0 = i % ns, len = ns - j0;
        if (len > i1 - i) len = i1 - i;
        if (na == n)
          pv__vm_binary(k, x + i, 1, y + j0, 1, o + i, len);
        else
          pv__vm_binary(k, x + j0, 1, y + i, 1, o + i, len);
        i += len;
      }
      return;
    }
    for (int64_t i = i0; i < i1; i++) o[i] = bop(k, x[i % na], y[i % nb]);
    return;
  }
  int nd = t->ndim;
  int64_t sa[PV_MAX_DIMS], sb[PV_MAX_DIMS], inner = nd ? t->shape[nd - 1] : 1;
  pv__bcast_strides(nd, t->shape, A->ndim, A->shape, sa);
  pv__bcast_strides(nd, t->shape, B->ndim, B->shape, sb);
  if (inner < 8) { /* general broadcast, short rows: element by element */
    int64_t idx[PV_MAX_DIMS], r = i0, ia = 0, ib = 0;
    for (int d = nd - 1; d >= 0; d--) {
      idx[d] = r % t->shape[d];
      r /= t->shape[d];
    }
    for (int d = 0; d < nd; d++)
      ia += idx[d] * sa[d], ib += idx[d] * sb[d];
    for (int64_t i = i0; i < i1; i++) {
      o[i] = bop(k, x[ia], y[ib]);
      for (int d = nd - 1; d >= 0; d--) { /* increment the multi-index */
        idx[d]++;
        ia += sa[d];
        ib += sb[d];
        if (idx[d] < t->shape[d]) break;
        ia -= sa[d] * t->shape[d];
        ib -= sb[d] * t->shape[d];
        idx[d] = 0;
      }
    }
    return;
  }
  /* general broadcast: runs along the innermost dimension, where each source has stride 0 or 1 */
  for (int64_t i = i0; i < i1;) {
    int64_t r = i / inner, c0 = i % inner, ia = 0, ib = 0;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t id = r % t->shape[d];
      r /= t->shape[d];
      ia += id * sa[d];
      ib += id * sb[d];
    }
    int64_t len = inner - c0;
    if (len > i1 - i) len = i1 - i;
    int ua = sa[nd - 1] != 0, ub = sb[nd - 1] != 0;
    pv__vm_binary(k, x + ia + c0 * ua, ua, y + ib + c0 * ub, ub, o + i, len);
    i += len;
  }
}

static void binary_ref(const pv_tensor *t, double *o, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const pv_tensor *A = t->src[0], *B = t->src[1];
  int64_t sa[PV_MAX_DIMS], sb[PV_MAX_DIMS];
  pv__bcast_strides(t->ndim, t->shape, A->ndim, A->shape, sa);
  pv__bcast_strides(t->ndim, t->shape, B->ndim, B->shape, sb);
  int k = PV_CPARAMS(binary_p, t)->kind;
  for (int64_t i = 0; i < t->numel; i++) {
    int64_t r = i, ia = 0, ib = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
      int64_t id = r % t->shape[d];
      r /= t->shape[d];
      ia += id * sa[d];
      ib += id * sb[d];
    }
    double x = s[0][ia], y = s[1][ib];
    o[i] = k == B_ADD ? x + y : k == B_SUB ? x - y : k == B_MUL ? x * y : x / y;
  }
}

static pv_status binary_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  pv_tensor *a = t->src[0], *b = t->src[1];
  int k = PV_CPARAMS(binary_p, t)->kind;
  if (need[0]) {
    pv_tensor *da = k == B_MUL ? pv_mul(g, dy, b) : k == B_DIV ? pv_div(g, dy, b) : dy;
    dsrc[0] = pv_sum_to(g, da, a->ndim, a->shape);
  }
  if (need[1]) {
    pv_tensor *db;
    if (k == B_ADD) db = dy;
    else if (k == B_SUB) db = pv_scale(g, dy, -1.0);
    else if (k == B_MUL) db = pv_mul(g, dy, a);
    else db = pv_scale(g, pv_div(g, pv_mul(g, dy, t), b), -1.0); /* -dy * (a/b) / b */
    dsrc[1] = pv_sum_to(g, db, b->ndim, b->shape);
  }
  return g->st;
}

static int binary_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int64_t sh[PV_MAX_DIMS], st[2][PV_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++) sh[i] = t->shape[i];
  pv__bcast_strides(t->ndim, t->shape, t->src[0]->ndim, t->src[0]->shape, st[0]);
  pv__bcast_strides(t->ndim, t->shape, t->src[1]->ndim, t->src[1]->shape, st[1]);
  int nd = pv_vk_coalesce(t->ndim, sh, 2, st);
  int bind[3] = {-1, 0, 1};
  pv_vk_begin(d, "binary", 3, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, (uint32_t)PV_CPARAMS(binary_p, t)->kind);
  pv_vk_push_dims(d, nd, sh, 2, st);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  return 1;
}

const pv_op_def pv_op_binary = {.name = "binary", .min_src = 2, .max_src = 2, .flags = PV_OPF_INPLACE,
                                .shape = binary_shape, .backward = binary_backward, .cpu = binary_cpu,
                                .ref = binary_ref, .vk = binary_vk};

static pv_tensor *binary(pv_graph *g, int kind, pv_tensor *a, pv_tensor *b) {
  binary_p p = {kind};
  pv_tensor *s[2] = {a, b};
  return pv__node(g, PV_OP_BINARY, 2, s, &p, sizeof p);
}
pv_tensor *pv_add(pv_graph *g, pv_tensor *a, pv_tensor *b) { return binary(g, B_ADD, a, b); }
pv_tensor *pv_sub(pv_graph *g, pv_tensor *a, pv_tensor *b) { return binary(g, B_SUB, a, b); }
pv_tensor *pv_mul(pv_graph *g, pv_tensor *a, pv_tensor *b) { return binary(g, B_MUL, a, b); }
pv_tensor *pv_div(pv_graph *g, pv_tensor *a, pv_tensor *b) { return binary(g, B_DIV, a, b); }

/* ------------------------------------------------------------ affine */
static pv_status affine_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0)) return t->graph->st;
  pv__set_shape(t, PV_F32, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}
static void affine_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const affine_p *p = PV_CPARAMS(affine_p, t);
  float s = (float)p->s, c = (float)p->c;
  const float *x = a->src[0];
  float *y = a->dst;
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  for (int64_t i = i0; i < i1; i++) y[i] = s * x[i] + c;
}
static void affine_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const affine_p *p = PV_CPARAMS(affine_p, t);
  for (int64_t i = 0; i < t->numel; i++) y[i] = p->s * s[0][i] + p->c;
}
static pv_status affine_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_scale(g, dy, PV_CPARAMS(affine_p, t)->s);
  return g->st;
}
static int affine_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const affine_p *p = PV_CPARAMS(affine_p, t);
  int bind[2] = {-1, 0};
  pv_vk_begin(d, "affine", 2, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_pushf(d, (float)p->s);
  pv_vk_pushf(d, (float)p->c);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  return 1;
}
const pv_op_def pv_op_affine = {.name = "affine", .min_src = 1, .max_src = 1, .flags = PV_OPF_INPLACE,
                                .shape = affine_shape, .backward = affine_backward, .cpu = affine_cpu,
                                .ref = affine_ref, .vk = affine_vk};
static pv_tensor *affine(pv_graph *g, pv_tensor *x, double s, double c) {
  affine_p p = {s, c};
  return pv__node(g, PV_OP_AFFINE, 1, &x, &p, sizeof p);
}
pv_tensor *pv_scale(pv_graph *g, pv_tensor *x, double s) { return affine(g, x, s, 0.0); }
pv_tensor *pv_add_scalar(pv_graph *g, pv_tensor *x, double c) { return affine(g, x, 1.0, c); }

/* ------------------------------------------------------------ unary */
static const char *unary_names[PV_UNARY_COUNT] = {"neg",  "exp",        "log",       "sqrt", "rsqrt",
                                                  "tanh", "sigmoid",    "logsigmoid", "silu", "gelu_tanh",
                                                  "gelu_erf", "relu",   "square",    "abs"};

static pv_status unary_shape(pv_tensor *t) {
  int k = PV_CPARAMS(unary_p, t)->kind;
  if (k < 0 || k >= PV_UNARY_COUNT) return PV_FAIL(t, PV_ERR_INVALID, "unary: unknown kind %d", k);
  for (int i = 0; i < t->nsrc; i++)
    if (!pv_need_f32(t, i)) return t->graph->st;
  if (t->nsrc == 2 && !pv__same_shape(t->src[0], t->src[1])) {
    char b1[128], b2[128];
    return PV_FAIL(t, PV_ERR_SHAPE, "unary_grad(%s): x %s and dy %s differ", unary_names[k], PV_SHAPESTR(b1, t->src[0]),
                   PV_SHAPESTR(b2, t->src[1]));
  }
  pv__set_shape(t, PV_F32, t->src[0]->ndim, t->src[0]->shape);
  return PV_OK;
}

#define SQRT_2_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327

static inline double uf_d(int k, double x) {
  switch (k) {
  case PV_NEG: return -x;
  case PV_EXP: return exp(x);
  case PV_LOG: return log(x);
  case PV_SQRT: return sqrt(x);
  case PV_RSQRT: return 1.0 / sqrt(x);
  case PV_TANH: return tanh(x);
  case PV_SIGMOID: return 1.0 / (1.0 + exp(-x));
  case PV_LOGSIGMOID: return (x < 0 ? x : 0) - log1p(exp(-fabs(x)));
  case PV_SILU: return x / (1.0 + exp(-x));
  case PV_GELU_TANH: return 0.5 * x * (1.0 + tanh(SQRT_2_PI * (x + 0.044715 * x * x * x)));
  case PV_GELU_ERF: return 0.5 * x * (1.0 + erf(x * INV_SQRT_2));
  case PV_RELU: return x > 0 ? x : 0;
  case PV_SQUARE: return x * x;
  default: return fabs(x);
  }
}
static inline double ug_d(int k, double x) { /* f'(x) */
  switch (k) {
  case PV_NEG: return -1;
  case PV_EXP: return exp(x);
  case PV_LOG: return 1.0 / x;
  case PV_SQRT: return 0.5 / sqrt(x);
  case PV_RSQRT: return -0.5 / (x * sqrt(x));
  case PV_TANH: {
    double th = tanh(x);
    return 1 - th * th;
  }
  case PV_SIGMOID: {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1 - s);
  }
  case PV_LOGSIGMOID: return 1.0 / (1.0 + exp(x));
  case PV_SILU: {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1 + x * (1 - s));
  }
  case PV_GELU_TANH: {
    double u = SQRT_2_PI * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * SQRT_2_PI * (1 + 3 * 0.044715 * x * x);
  }
  case PV_GELU_ERF: return 0.5 * (1 + erf(x * INV_SQRT_2)) + x * exp(-0.5 * x * x) * INV_SQRT_2PI;
  case PV_RELU: return x > 0 ? 1 : 0;
  case PV_SQUARE: return 2 * x;
  default: return x > 0 ? 1 : x < 0 ? -1 : 0;
  }
}
static void unary_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const float *x = a->src[0];
  float *y = a->dst;
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  if (i1 > i0) pv__vm_unary(PV_CPARAMS(unary_p, t)->kind, x + i0, y + i0, i1 - i0);
}
static void unary_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int k = PV_CPARAMS(unary_p, t)->kind;
  for (int64_t i = 0; i < t->numel; i++) y[i] = uf_d(k, s[0][i]);
}
static pv_status unary_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_unary_grad(g, (pv_unary_kind)PV_CPARAMS(unary_p, t)->kind, t->src[0], dy);
  return g->st;
}
static void unary_grad_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const float *x = a->src[0], *dy = a->src[1];
  float *y = a->dst;
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  if (i1 > i0) pv__vm_unary_grad(PV_CPARAMS(unary_p, t)->kind, x + i0, dy + i0, y + i0, i1 - i0);
}
static void unary_grad_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  int k = PV_CPARAMS(unary_p, t)->kind;
  for (int64_t i = 0; i < t->numel; i++) y[i] = s[1][i] * ug_d(k, s[0][i]);
}
static int unary_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int bind[3] = {-1, 0, 1};
  pv_vk_begin(d, t->nsrc == 2 ? "unary_grad" : "unary", t->nsrc + 1, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, (uint32_t)PV_CPARAMS(unary_p, t)->kind);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  d->work = 20.0 * (double)t->numel;
  return 1;
}
const pv_op_def pv_op_unary = {.name = "unary", .min_src = 1, .max_src = 1, .flags = PV_OPF_INPLACE,
                               .shape = unary_shape, .backward = unary_backward, .cpu = unary_cpu,
                               .ref = unary_ref, .vk = unary_vk};
const pv_op_def pv_op_unary_grad = {.name = "unary_grad", .min_src = 2, .max_src = 2, .flags = PV_OPF_INPLACE,
                                    .shape = unary_shape, .cpu = unary_grad_cpu, .ref = unary_grad_ref,
                                    .vk = unary_vk};

pv_tensor *pv_unary(pv_graph *g, pv_unary_kind kind, pv_tensor *x) {
  unary_p p = {(int)kind};
  return pv__node(g, PV_OP_UNARY, 1, &x, &p, sizeof p);
}
pv_tensor *pv_unary_grad(pv_graph *g, pv_unary_kind kind, pv_tensor *x, pv_tensor *dy) {
  unary_p p = {(int)kind};
  pv_tensor *s[2] = {x, dy};
  return pv__node(g, PV_OP_UNARY_GRAD, 2, s, &p, sizeof p);
}
