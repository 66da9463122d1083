/* Reverse-mode autodiff as a graph-to-graph transform: appends gradient nodes to the graph. */
#include "internal.h"

pv_status pv_graph_backward(pv_graph *g, pv_tensor *loss) {
  if (!g) return PV_ERR_NULL;
  if (g->st) return pv__err(g->ctx, g->st, "backward: the graph has an error: %s", g->err);
  if (!loss) return pv__err(g->ctx, PV_ERR_NULL, "backward: loss is NULL");
  if (loss->graph != g) return pv__err(g->ctx, PV_ERR_INVALID, "backward: loss belongs to another graph");
  if (g->grads) return pv__err(g->ctx, PV_ERR_STATE, "backward: already built for this graph");
  if (loss->numel != 1 || loss->dtype != PV_F32) {
    char b[128];
    return pv__err(g->ctx, PV_ERR_SHAPE, "backward: loss must be one f32 element, got %s %s",
                   pv_dtype_name(loss->dtype), pv__shape_str(b, sizeof b, loss->ndim, loss->shape));
  }
  int n0 = g->n;
  unsigned char *needs = calloc((size_t)n0, 1);
  pv_tensor **grads = calloc((size_t)n0, sizeof *grads);
  if (!needs || !grads) {
    free(needs);
    free(grads);
    return pv__err(g->ctx, PV_ERR_NOMEM, "backward: out of memory");
  }
  int any_trainable = 0;
  for (int i = 0; i < n0; i++) {
    pv_tensor *t = g->nodes[i];
    if (t->flags & PV_NF_TRAINABLE) {
      needs[i] = 1;
      any_trainable = 1;
      continue;
    }
    const pv_op_def *d = pv__opdef(t->op);
    if (d->flags & PV_OPF_UPDATE) continue;
    for (int k = 0; k < t->nsrc; k++)
      if (!(d->nodiff & (1u << k)) && needs[t->src[k]->id]) needs[i] = 1;
  }
  pv_status st = PV_OK;
  if (!any_trainable) {
    st = pv__err(g->ctx, PV_ERR_STATE, "backward: no trainable variable in the graph (use pv_set_trainable)");
    goto done;
  }
  g->loss = loss;
  loss->flags |= PV_NF_LOSS | PV_NF_OUTPUT;
  if (needs[loss->id]) {
    grads[loss->id] = pv_fill(g, 1.0, loss->ndim, loss->shape);
    if (!grads[loss->id]) goto fail;
  }
  for (int i = loss->id; i >= 0; i--) {
    pv_tensor *t = g->nodes[i], *dy = grads[i];
    if (!dy || !needs[i] || t->nsrc == 0) continue;
    const pv_op_def *d = pv__opdef(t->op);
    int need[PV_MAX_SRC] = {0}, anyneed = 0;
    pv_tensor *dsrc[PV_MAX_SRC] = {0};
    for (int k = 0; k < t->nsrc; k++) {
      need[k] = !(d->nodiff & (1u << k)) && needs[t->src[k]->id];
      anyneed |= need[k];
    }
    if (!anyneed) continue;
    if (!d->backward) {
      st = pv__err(g->ctx, PV_ERR_UNSUPPORTED, "backward: op '%s' (node %d) is not differentiable", d->name, t->id);
      goto done;
    }
    if (d->backward(g, t, dy, need, dsrc) != PV_OK || g->st) goto fail;
    for (int k = 0; k < t->nsrc; k++) {
      if (!need[k]) continue;
      pv_tensor *s = t->src[k], *gk = dsrc[k];
      if (!gk) {
        pv__gerr(g, PV_ERR_INVALID, "backward of '%s' (node %d) gave no gradient for input %d", d->name, t->id, k);
        goto fail;
      }
      if (!pv__same_shape(gk, s)) {
        char b1[128], b2[128];
        pv__gerr(g, PV_ERR_SHAPE, "backward of '%s' (node %d): gradient %s for input %d of shape %s", d->name, t->id,
                 pv__shape_str(b1, sizeof b1, gk->ndim, gk->shape), k, pv__shape_str(b2, sizeof b2, s->ndim, s->shape));
        goto fail;
      }
      grads[s->id] = grads[s->id] ? pv_add(g, grads[s->id], gk) : gk;
      if (!grads[s->id]) goto fail;
    }
  }
  for (int i = 0; i < n0; i++)
    if ((g->nodes[i]->flags & PV_NF_TRAINABLE) && grads[i]) grads[i]->flags |= PV_NF_OUTPUT;
  g->grads = grads;
  g->ngrads = n0;
  grads = NULL;
  goto done;
fail:
  st = g->st ? g->st : PV_ERR_INVALID;
  pv__err(g->ctx, st, "backward: %s", g->err);
done:
  free(needs);
  free(grads);
  return st;
}

pv_tensor *pv_grad(pv_graph *g, pv_tensor *t) {
  if (!g || !t || !g->grads || t->graph != g || t->id >= g->ngrads) return NULL;
  return g->grads[t->id];
}
