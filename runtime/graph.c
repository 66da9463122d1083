/* Graph builder: node creation with shape inference, sticky errors, marks and queries. */
#include "internal.h"

pv_graph *pv_graph_new(pv_context *ctx) {
  if (!ctx) return NULL;
  pv_graph *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->ctx = ctx;
  return g;
}

void pv_graph_free(pv_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n; i++) {
    free(g->nodes[i]->name);
    free(g->nodes[i]);
  }
  free(g->nodes);
  free(g->grads);
  free(g);
}

pv_context *pv_graph_context(const pv_graph *g) { return g ? g->ctx : NULL; }
pv_status pv_graph_status(const pv_graph *g) { return g ? g->st : PV_ERR_NULL; }
const char *pv_graph_error(const pv_graph *g) { return g ? g->err : "graph is NULL"; }
void pv_graph_clear_error(pv_graph *g) {
  if (!g) return;
  g->st = PV_OK;
  g->err[0] = 0;
}
int pv_graph_node_count(const pv_graph *g) { return g ? g->n : 0; }

pv_tensor *pv__gerr(pv_graph *g, pv_status st, const char *fmt, ...) {
  if (!g) return NULL;
  if (g->st == PV_OK) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    g->st = st;
    snprintf(g->ctx->err, sizeof g->ctx->err, "%s", g->err);
  }
  return NULL;
}

void pv__set_shape(pv_tensor *t, pv_dtype dtype, int ndim, const int64_t *shape) {
  t->dtype = dtype;
  t->ndim = ndim;
  t->numel = 1;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->numel *= shape[i];
  }
}

int pv__same_shape(const pv_tensor *a, const pv_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

int pv__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int64_t da = i < n - na ? 1 : a[i - (n - na)];
    int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
    if (da != db && da != 1 && db != 1) return 0;
    out[i] = da == 1 ? db : da;
  }
  *nout = n;
  return 1;
}

void pv__bcast_strides(int ndim, const int64_t *out, int sn, const int64_t *s, int64_t *strides) {
  int64_t st = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    int k = i - (ndim - sn);
    if (k < 0 || s[k] == 1) strides[i] = 0;
    else strides[i] = st;
    if (k >= 0) st *= s[k];
    (void)out;
  }
}

static pv_tensor *push_node(pv_graph *g, pv_tensor *t) {
  if (g->n == g->cap) {
    int nc = g->cap ? g->cap * 2 : 256;
    pv_tensor **nn = realloc(g->nodes, sizeof *nn * (size_t)nc);
    if (!nn) {
      free(t);
      return pv__gerr(g, PV_ERR_NOMEM, "graph: out of memory adding a node");
    }
    g->nodes = nn;
    g->cap = nc;
  }
  t->id = g->n;
  g->nodes[g->n++] = t;
  return t;
}

pv_tensor *pv__node(pv_graph *g, int op, int nsrc, pv_tensor *const *src, const void *params, size_t psize) {
  if (!g) return NULL;
  if (g->st) return NULL;
  const pv_op_def *d = pv__opdef(op);
  if (nsrc < d->min_src || nsrc > d->max_src || nsrc > PV_MAX_SRC)
    return pv__gerr(g, PV_ERR_INVALID, "%s: %d inputs given, expects %d..%d", d->name, nsrc, d->min_src, d->max_src);
  for (int i = 0; i < nsrc; i++) {
    if (!src[i]) return pv__gerr(g, PV_ERR_NULL, "%s: input %d is NULL", d->name, i);
    if (src[i]->graph != g) return pv__gerr(g, PV_ERR_INVALID, "%s: input %d belongs to another graph", d->name, i);
  }
  if (psize > PV_PARAM_BYTES) return pv__gerr(g, PV_ERR_INVALID, "%s: params too large", d->name);
  pv_tensor *t = calloc(1, sizeof *t);
  if (!t) return pv__gerr(g, PV_ERR_NOMEM, "%s: out of memory", d->name);
  t->graph = g;
  t->op = op;
  t->nsrc = nsrc;
  for (int i = 0; i < nsrc; i++) t->src[i] = src[i];
  if (params && psize) memcpy(t->params, params, psize);
  if (d->shape(t) != PV_OK || g->st) {
    free(t);
    if (!g->st) pv__gerr(g, PV_ERR_INVALID, "%s: shape rule failed", d->name);
    return NULL;
  }
  if (t->ndim < 0 || t->ndim > PV_MAX_DIMS) {
    int nd = t->ndim;
    free(t);
    return pv__gerr(g, PV_ERR_SHAPE, "%s: result has %d dimensions (max %d)", d->name, nd, PV_MAX_DIMS);
  }
  return push_node(g, t);
}

/* ------------------------------------------------------------ leaves */
pv_tensor *pv_input(pv_graph *g, const char *name, pv_dtype dtype, int ndim, const int64_t *shape) {
  if (!g || g->st) return NULL;
  if (pv_dtype_size(dtype) == 0) return pv__gerr(g, PV_ERR_DTYPE, "input '%s': invalid dtype %d", name ? name : "", (int)dtype);
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim > 0 && !shape))
    return pv__gerr(g, PV_ERR_SHAPE, "input '%s': invalid ndim %d", name ? name : "", ndim);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0) return pv__gerr(g, PV_ERR_SHAPE, "input '%s': negative dimension", name ? name : "");
  struct {
    int dtype, ndim;
    int64_t shape[PV_MAX_DIMS];
  } p = {(int)dtype, ndim, {0}};
  for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
  pv_tensor *t = pv__node(g, PV_OP_INPUT, 0, NULL, &p, sizeof p);
  if (t) {
    t->flags |= PV_NF_INPUT;
    if (name) t->name = strdup(name);
  }
  return t;
}

pv_tensor *pv_use_var(pv_graph *g, pv_var *v) {
  if (!g || g->st) return NULL;
  if (!v) return pv__gerr(g, PV_ERR_NULL, "use_var: variable is NULL");
  if (v->ctx != g->ctx) return pv__gerr(g, PV_ERR_INVALID, "use_var '%s': variable of another context", v->name);
  for (int i = 0; i < g->n; i++) /* one node per variable */
    if (g->nodes[i]->var == v) return g->nodes[i];
  pv_var *pv = v;
  pv_tensor *t = pv__node(g, PV_OP_VAR, 0, NULL, &pv, sizeof pv);
  if (t) {
    t->flags |= PV_NF_VAR;
    t->var = v;
    t->name = strdup(v->name);
  }
  return t;
}

pv_tensor *pv_fill(pv_graph *g, double value, int ndim, const int64_t *shape) {
  if (!g || g->st) return NULL;
  if (ndim < 0 || ndim > PV_MAX_DIMS || (ndim > 0 && !shape)) return pv__gerr(g, PV_ERR_SHAPE, "fill: invalid ndim %d", ndim);
  struct {
    double value;
    int ndim;
    int64_t shape[PV_MAX_DIMS];
  } p = {value, ndim, {0}};
  for (int i = 0; i < ndim; i++) p.shape[i] = shape[i];
  pv_tensor *t = pv__node(g, PV_OP_FILL, 0, NULL, &p, sizeof p);
  if (t) t->flags |= PV_NF_CONST;
  return t;
}

pv_tensor *pv_arange(pv_graph *g, int64_t n, pv_dtype dtype) {
  if (!g || g->st) return NULL;
  struct {
    int64_t n;
    int dtype;
  } p = {n, (int)dtype};
  pv_tensor *t = pv__node(g, PV_OP_ARANGE, 0, NULL, &p, sizeof p);
  if (t) t->flags |= PV_NF_CONST;
  return t;
}

/* ------------------------------------------------------------ marks and queries */
pv_status pv_set_trainable(pv_tensor *t, int trainable) {
  if (!t) return PV_ERR_NULL;
  if (!(t->flags & (PV_NF_VAR | PV_NF_INPUT)))
    return pv__err(t->graph->ctx, PV_ERR_INVALID, "set_trainable: node %d (%s) is not a variable or an input", t->id,
                   pv__opdef(t->op)->name);
  if (!pv__is_float(t->dtype))
    return pv__err(t->graph->ctx, PV_ERR_DTYPE, "set_trainable: '%s' has dtype %s, expected a float", pv_tensor_name(t),
                   pv_dtype_name(t->dtype));
  if (trainable) t->flags |= PV_NF_TRAINABLE;
  else t->flags &= ~(unsigned)PV_NF_TRAINABLE;
  return PV_OK;
}

pv_status pv_mark_output(pv_tensor *t) {
  if (!t) return PV_ERR_NULL;
  t->flags |= PV_NF_OUTPUT;
  return PV_OK;
}

pv_status pv_set_output(pv_tensor *t, int on) {
  if (!t) return PV_ERR_NULL;
  if (on) t->flags |= PV_NF_OUTPUT;
  else t->flags &= ~(unsigned)PV_NF_OUTPUT;
  return PV_OK;
}

pv_status pv_set_name(pv_tensor *t, const char *name) {
  if (!t || !name) return PV_ERR_NULL;
  char *s = strdup(name);
  if (!s) return PV_ERR_NOMEM;
  free(t->name);
  t->name = s;
  return PV_OK;
}

pv_dtype pv_tensor_dtype(const pv_tensor *t) { return t ? t->dtype : PV_F32; }
int pv_tensor_ndim(const pv_tensor *t) { return t ? t->ndim : 0; }
int64_t pv_tensor_dim(const pv_tensor *t, int i) {
  if (!t) return 0;
  if (i < 0) i += t->ndim;
  return (i >= 0 && i < t->ndim) ? t->shape[i] : 0;
}
int64_t pv_tensor_numel(const pv_tensor *t) { return t ? t->numel : 0; }
const char *pv_tensor_name(const pv_tensor *t) { return t && t->name ? t->name : ""; }
const char *pv_tensor_op(const pv_tensor *t) { return t ? pv__opdef(t->op)->name : ""; }
int pv_tensor_id(const pv_tensor *t) { return t ? t->id : -1; }
pv_var *pv_tensor_var(const pv_tensor *t) { return t ? t->var : NULL; }
