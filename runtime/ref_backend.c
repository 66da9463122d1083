/* The "ref" backend: every tensor (ids included) stored as float64, naive single-threaded reference
 * kernels. Used by the op tests (finite differences in float64) and as a correctness oracle. */
#include "internal.h"

typedef struct ref_plan {
  double **buf; /* per node id (roots own; views point at their root's buffer) */
} ref_plan;

static double *rbuf(pv_plan *p, const pv_tensor *t) {
  return ((ref_plan *)p->bed)->buf[p->slot[t->id].root] + p->slot[t->id].voff;
}

static pv_status ref_init(pv_plan *p) {
  ref_plan *r = calloc(1, sizeof *r);
  if (!r) return pv__err(p->ctx, PV_ERR_NOMEM, "ref plan: out of memory");
  p->bed = r;
  r->buf = calloc((size_t)p->g->n, sizeof(double *));
  if (!r->buf) return pv__err(p->ctx, PV_ERR_NOMEM, "ref plan: out of memory");
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    pv_tensor *t = p->g->nodes[id];
    if (p->slot[id].root != id) continue;
    r->buf[id] = calloc((size_t)(t->numel ? t->numel : 1), sizeof(double));
    if (!r->buf[id]) return pv__err(p->ctx, PV_ERR_NOMEM, "ref plan: out of memory");
  }
  for (int k = 0; k < p->norder; k++) { /* ops without a reference kernel */
    pv_tensor *t = p->g->nodes[p->order[k]];
    const pv_op_def *d = pv__opdef(t->op);
    if (!d->ref && !(t->flags & (PV_NF_VAR | PV_NF_INPUT)) && !(d->flags & PV_OPF_VIEW))
      return pv__err(p->ctx, PV_ERR_UNSUPPORTED, "ref backend: op '%s' has no reference kernel", d->name);
  }
  return PV_OK;
}

static void ref_free(pv_plan *p) {
  ref_plan *r = p->bed;
  if (!r) return;
  if (r->buf)
    for (int i = 0; i < p->g->n; i++)
      free(r->buf[i]);
  free(r->buf);
  free(r);
  p->bed = NULL;
}

static pv_status ref_write(pv_plan *p, pv_tensor *t, pv_dtype sd, const void *data, int64_t count) {
  pv__convert(PV_F64, rbuf(p, t), sd, data, count);
  return PV_OK;
}

static pv_status ref_read(pv_plan *p, pv_tensor *t, pv_dtype dd, void *out, int64_t count) {
  pv__convert(dd, out, PV_F64, rbuf(p, t), count);
  return PV_OK;
}

static pv_status ref_run(pv_plan *p) {
  pv_graph *g = p->g;
  int error = 0;
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    if (t->flags & PV_NF_VAR) {
      pv_var *v = t->var;
      if (v->dev_version > v->host_version && p->ctx->vk_sync_var) {
        pv_status st = p->ctx->vk_sync_var(p->ctx, v);
        if (st) return st;
      }
      pv__convert(PV_F64, rbuf(p, t), v->dtype, v->data, v->numel);
    }
  }
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    const pv_op_def *d = pv__opdef(t->op);
    if (!d->ref || (d->flags & PV_OPF_VIEW)) continue;
    const double *src[PV_MAX_SRC] = {0};
    double *srcw[PV_MAX_SRC] = {0};
    for (int s = 0; s < t->nsrc; s++)
      src[s] = srcw[s] = rbuf(p, t->src[s]);
    d->ref(t, rbuf(p, t), src, srcw, &error);
    if (error)
      return pv__err(p->ctx, PV_ERR_INVALID, "run: op '%s' (node %d '%s'): invalid data (e.g. an id out of range)",
                     d->name, t->id, pv_tensor_name(t));
    if (d->flags & PV_OPF_UPDATE)
      for (int s = 0; s < t->nsrc; s++)
        if (t->src[s]->flags & PV_NF_VAR) {
          pv_var *v = t->src[s]->var;
          pv__convert(v->dtype, v->data, PV_F64, rbuf(p, t->src[s]), v->numel);
          v->host_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
        }
  }
  return PV_OK;
}

const pv_backend pv_backend_ref = {"ref", ref_init, ref_free, ref_write, ref_read, ref_run};
