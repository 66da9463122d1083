/* Memory planner: liveness over the execution order, best-fit reuse of freed blocks, in-place
 * reuse for ops that allow it, views sharing their root's storage. Inputs and outputs are pinned. */
#include "internal.h"

typedef struct blk {
  int64_t off, size;
} blk;
typedef struct freelist {
  blk *b;
  int n, cap;
  int64_t end; /* arena high-water mark */
} freelist;

static int64_t fl_alloc(freelist *fl, int64_t size) {
  int best = -1;
  for (int i = 0; i < fl->n; i++)
    if (fl->b[i].size >= size && (best < 0 || fl->b[i].size < fl->b[best].size)) best = i;
  if (best >= 0) {
    int64_t off = fl->b[best].off;
    fl->b[best].off += size;
    fl->b[best].size -= size;
    if (fl->b[best].size == 0) {
      memmove(&fl->b[best], &fl->b[best + 1], sizeof(blk) * (size_t)(fl->n - best - 1));
      fl->n--;
    }
    return off;
  }
  /* grow: if the last free block touches the end, extend it */
  if (fl->n > 0 && fl->b[fl->n - 1].off + fl->b[fl->n - 1].size == fl->end) {
    int64_t off = fl->b[fl->n - 1].off;
    fl->end = off + size;
    fl->n--;
    return off;
  }
  int64_t off = fl->end;
  fl->end += size;
  return off;
}

static int fl_free(freelist *fl, int64_t off, int64_t size) {
  int i = 0;
  while (i < fl->n && fl->b[i].off < off)
    i++;
  if (fl->n == fl->cap) {
    int nc = fl->cap ? fl->cap * 2 : 64;
    blk *nb = realloc(fl->b, sizeof(blk) * (size_t)nc);
    if (!nb) return -1;
    fl->b = nb;
    fl->cap = nc;
  }
  memmove(&fl->b[i + 1], &fl->b[i], sizeof(blk) * (size_t)(fl->n - i));
  fl->b[i].off = off;
  fl->b[i].size = size;
  fl->n++;
  if (i + 1 < fl->n && fl->b[i].off + fl->b[i].size == fl->b[i + 1].off) { /* merge right */
    fl->b[i].size += fl->b[i + 1].size;
    memmove(&fl->b[i + 1], &fl->b[i + 2], sizeof(blk) * (size_t)(fl->n - i - 2));
    fl->n--;
  }
  if (i > 0 && fl->b[i - 1].off + fl->b[i - 1].size == fl->b[i].off) { /* merge left */
    fl->b[i - 1].size += fl->b[i].size;
    memmove(&fl->b[i], &fl->b[i + 1], sizeof(blk) * (size_t)(fl->n - i - 1));
    fl->n--;
  }
  return 0;
}

static int64_t node_bytes(const pv_tensor *t) {
  int64_t b = t->numel * (int64_t)pv_dtype_size(t->dtype);
  if (b == 0) b = 4;
  return (b + PV_ALIGN - 1) / PV_ALIGN * PV_ALIGN;
}

pv_status pv__plan_memory(pv_plan *p, int no_inplace) {
  pv_graph *g = p->g;
  int n = g->n;
  pv_status st = PV_OK;
  p->live = calloc((size_t)n + 1, 1);
  p->order = malloc(sizeof(int) * ((size_t)n + 1));
  p->slot = calloc((size_t)n + 1, sizeof *p->slot);
  int *last = malloc(sizeof(int) * ((size_t)n + 1));
  int *pos = malloc(sizeof(int) * ((size_t)n + 1));
  unsigned char *pinned = calloc((size_t)n + 1, 1);
  freelist fl = {0};
  if (!p->live || !p->order || !p->slot || !last || !pos || !pinned) {
    st = pv__err(p->ctx, PV_ERR_NOMEM, "plan: out of memory");
    goto done;
  }
  /* 1. liveness roots, then mark everything they depend on */
  int nroots = 0;
  for (int i = n - 1; i >= 0; i--) {
    pv_tensor *t = g->nodes[i];
    if ((t->flags & (PV_NF_OUTPUT | PV_NF_LOSS)) || (pv__opdef(t->op)->flags & PV_OPF_UPDATE)) {
      p->live[i] = 1;
      nroots++;
    }
    if (p->live[i])
      for (int k = 0; k < t->nsrc; k++)
        p->live[t->src[k]->id] = 1;
  }
  if (nroots == 0) {
    st = pv__err(p->ctx, PV_ERR_STATE, "plan: the graph has no outputs, loss or updates (use pv_mark_output)");
    goto done;
  }
  /* 2. order: creation order, updates last */
  p->norder = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      if (!p->live[i]) continue;
      int upd = (pv__opdef(g->nodes[i]->op)->flags & PV_OPF_UPDATE) != 0;
      if (upd == pass) p->order[p->norder++] = i;
    }
  for (int k = 0; k < p->norder; k++)
    pos[p->order[k]] = k;
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    if (pv__opdef(t->op)->flags & PV_OPF_UPDATE) continue;
    for (int j = 0; j < t->nsrc; j++)
      if (pv__opdef(t->src[j]->op)->flags & PV_OPF_UPDATE) {
        st = pv__err(p->ctx, PV_ERR_INVALID, "plan: node %d (%s) uses the result of update node %d (%s)", t->id,
                     pv__opdef(t->op)->name, t->src[j]->id, pv__opdef(t->src[j]->op)->name);
        goto done;
      }
  }
  /* 3. storage roots and last uses */
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    pv_tensor *t = g->nodes[id];
    const pv_op_def *d = pv__opdef(t->op);
    p->slot[id].root = (d->flags & PV_OPF_VIEW) ? p->slot[t->src[0]->id].root : id;
    p->slot[id].voff =
        (d->flags & PV_OPF_VIEW) ? p->slot[t->src[0]->id].voff + (d->view_offset ? d->view_offset(t) : 0) : 0;
    p->slot[id].bytes = node_bytes(t);
    last[id] = k;
    if (t->flags & (PV_NF_INPUT | PV_NF_OUTPUT | PV_NF_LOSS)) pinned[p->slot[id].root] = 1;
  }
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    for (int j = 0; j < t->nsrc; j++) {
      int r = p->slot[t->src[j]->id].root;
      if (last[r] < k) last[r] = k;
    }
    int r = p->slot[t->id].root;
    if (last[r] < k) last[r] = k;
  }
  /* 4. assign offsets */
  p->naive_bytes = 0;
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    pv_tensor *t = g->nodes[id];
    if (!(t->flags & PV_NF_VAR) && p->slot[id].root == id) p->naive_bytes += p->slot[id].bytes;
  }
  for (int k = 0; k < p->norder; k++) { /* inputs first: written before the run starts */
    int id = p->order[k];
    if (g->nodes[id]->flags & PV_NF_INPUT) p->slot[id].offset = fl_alloc(&fl, p->slot[id].bytes);
  }
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    pv_tensor *t = g->nodes[id];
    const pv_op_def *d = pv__opdef(t->op);
    if (t->flags & (PV_NF_VAR | PV_NF_INPUT)) continue;
    if (p->slot[id].root != id) {
      p->slot[id].offset = p->slot[p->slot[id].root].offset + p->slot[id].voff * (int64_t)pv_dtype_size(t->dtype);
    } else {
      int took = 0;
      if (!no_inplace && (d->flags & PV_OPF_INPLACE) && t->nsrc > 0) {
        int r = p->slot[t->src[0]->id].root;
        pv_tensor *rt = g->nodes[r];
        int shared = 0;
        for (int j = 1; j < t->nsrc; j++)
          if (p->slot[t->src[j]->id].root == r) shared = 1;
        if (!shared && !pinned[r] && !(rt->flags & (PV_NF_VAR | PV_NF_INPUT)) && last[r] == k &&
            p->slot[r].bytes == p->slot[id].bytes && t->dtype == rt->dtype) {
          p->slot[id].offset = p->slot[r].offset;
          last[r] = -1; /* storage handed over */
          took = 1;
        }
      }
      if (!took) p->slot[id].offset = fl_alloc(&fl, p->slot[id].bytes);
    }
    /* free sources (and self, if unused) whose storage dies here */
    for (int j = 0; j <= t->nsrc; j++) {
      pv_tensor *s = j < t->nsrc ? t->src[j] : t;
      int r = p->slot[s->id].root;
      pv_tensor *rt = g->nodes[r];
      if (last[r] == k && !pinned[r] && !(rt->flags & PV_NF_VAR)) {
        if (fl_free(&fl, p->slot[r].offset, p->slot[r].bytes)) {
          st = pv__err(p->ctx, PV_ERR_NOMEM, "plan: out of memory");
          goto done;
        }
        last[r] = -1;
      }
    }
  }
  p->arena_bytes = fl.end;
done:
  free(fl.b);
  free(last);
  free(pos);
  free(pinned);
  return st;
}
