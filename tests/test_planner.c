/* Planner tests: live tensors never overlap, repeated runs are identical, peak < naive, in-place reuse. */
#include "internal.h"
#include "testutil.h"
#include <math.h>

/* a chain of elementwise/reduce/shape ops with branches and reuse */
static pv_tensor *build(pv_graph *g, pv_tensor **xin) {
  int64_t sh[2] = {64, 48};
  pv_tensor *x = pv_input(g, "x", PV_F32, 2, sh);
  *xin = x;
  pv_tensor *h = x;
  for (int i = 0; i < 12; i++) {
    pv_tensor *a = pv_unary(g, PV_TANH, h);
    pv_tensor *b = pv_scale(g, h, 0.5);
    pv_tensor *c = pv_mul(g, a, b);
    int64_t s3[3] = {64, 6, 8};
    pv_tensor *r = pv_reshape(g, c, 3, s3);
    pv_tensor *m = pv_mean(g, r, -1, 1);
    pv_tensor *d = pv_sub(g, r, m);
    h = pv_add(g, pv_reshape(g, d, 2, sh), h);
    if (i % 4 == 3) h = pv_unary(g, PV_SILU, h);
  }
  return pv_sum_all(g, pv_unary(g, PV_SQUARE, h));
}

int main(void) {
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  pv_tensor *x;
  pv_tensor *loss = build(g, &x);
  pv_set_trainable(x, 1);
  CHECK(pv_graph_backward(g, loss) == PV_OK, "backward: %s", pv_last_error(ctx));
  pv_tensor *gx = pv_grad(g, x);
  CHECK(gx != NULL, "grad of x");
  pv_plan *p = NULL;
  CHECK(pv_plan_compile(g, NULL, &p) == PV_OK, "compile: %s", pv_last_error(ctx));
  if (!p) return pv_t_finish();

  /* 1. no two live tensors overlap in the arena */
  int n = g->n;
  int *def = malloc(sizeof(int) * (size_t)n), *last = malloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) def[i] = last[i] = -1;
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    int r = p->slot[id].root;
    if (def[r] < 0) def[r] = k;
    if (last[r] < k) last[r] = k;
    pv_tensor *t = g->nodes[id];
    for (int j = 0; j < t->nsrc; j++) {
      int rs = p->slot[t->src[j]->id].root;
      if (last[rs] < k) last[rs] = k;
    }
    if (t->flags & (PV_NF_OUTPUT | PV_NF_INPUT | PV_NF_LOSS)) last[r] = p->norder;
    if (t->flags & PV_NF_INPUT) def[r] = -1000;
  }
  int overlaps = 0, inplace = 0, roots = 0;
  for (int a = 0; a < p->norder; a++) {
    int ia = p->order[a];
    if (p->slot[ia].root != ia || (g->nodes[ia]->flags & PV_NF_VAR)) continue;
    roots++;
    for (int b = a + 1; b < p->norder; b++) {
      int ib = p->order[b];
      if (p->slot[ib].root != ib || (g->nodes[ib]->flags & PV_NF_VAR)) continue;
      int64_t a0 = p->slot[ia].offset, a1 = a0 + p->slot[ia].bytes;
      int64_t b0 = p->slot[ib].offset, b1 = b0 + p->slot[ib].bytes;
      int mem = a0 < b1 && b0 < a1;
      if (!mem) continue;
      /* in-place handover: b is computed at the exact step a dies, from a as its src[0] */
      pv_tensor *tb = g->nodes[ib];
      if (tb->nsrc > 0 && p->slot[tb->src[0]->id].root == ia && last[ia] == def[ib] && a0 == b0) {
        inplace++;
        continue;
      }
      int live = def[ia] <= last[ib] && def[ib] <= last[ia];
      /* a block freed at step k may be reused by the node defined at step k only via in-place */
      if (live && !(last[ia] == def[ib] || last[ib] == def[ia])) overlaps++;
      else if (live && last[ia] == def[ib]) overlaps++; /* same-step reuse without in-place is a bug */
    }
  }
  CHECK(overlaps == 0, "%d pairs of live tensors overlap", overlaps);
  CHECK(inplace > 0, "expected in-place reuse (found %d of %d roots)", inplace, roots);
  /* 2. peak below the naive sum */
  CHECK(pv_plan_peak_bytes(p) < pv_plan_naive_bytes(p), "peak %lld >= naive %lld", (long long)pv_plan_peak_bytes(p),
        (long long)pv_plan_naive_bytes(p));
  printf("planner: %d nodes, peak %lld bytes, naive %lld bytes (%.1f%%), in-place handovers %d\n", p->norder,
         (long long)pv_plan_peak_bytes(p), (long long)pv_plan_naive_bytes(p),
         100.0 * (double)pv_plan_peak_bytes(p) / (double)pv_plan_naive_bytes(p), inplace);
  /* 3. running twice gives identical results; equals a plan without in-place reuse */
  float *xd = malloc(sizeof(float) * 64 * 48), *g1 = malloc(sizeof(float) * 64 * 48), *g2 = malloc(sizeof(float) * 64 * 48);
  for (int i = 0; i < 64 * 48; i++) xd[i] = (float)sin(i * 0.37) * 0.8f;
  float l1 = 0, l2 = 0;
  pv_plan_write(p, x, PV_F32, xd, 64 * 48);
  CHECK(pv_plan_run(p) == PV_OK, "run 1: %s", pv_last_error(ctx));
  pv_plan_read(p, loss, PV_F32, &l1, 1);
  pv_plan_read(p, gx, PV_F32, g1, 64 * 48);
  CHECK(pv_plan_run(p) == PV_OK, "run 2");
  pv_plan_read(p, loss, PV_F32, &l2, 1);
  pv_plan_read(p, gx, PV_F32, g2, 64 * 48);
  CHECK(l1 == l2 && memcmp(g1, g2, sizeof(float) * 64 * 48) == 0, "two runs differ: %g vs %g", l1, l2);
  pv_plan *q = NULL;
  pv_plan_options o = {"cpu", 0, -1, 1};
  CHECK(pv_plan_compile(g, &o, &q) == PV_OK, "compile no_inplace");
  pv_plan_write(q, x, PV_F32, xd, 64 * 48);
  pv_plan_run(q);
  pv_plan_read(q, gx, PV_F32, g2, 64 * 48);
  CHECK(memcmp(g1, g2, sizeof(float) * 64 * 48) == 0, "in-place plan differs from a plan without reuse");
  CHECK(pv_plan_peak_bytes(q) >= pv_plan_peak_bytes(p), "no-inplace plan should not be smaller");
  /* 4. same thread count => bitwise identical across fresh plans; 1 thread close to 2 */
  pv_plan *r1 = NULL;
  pv_plan_options o1 = {"cpu", 1, -1, 0};
  CHECK(pv_plan_compile(g, &o1, &r1) == PV_OK, "compile 1 thread");
  pv_plan_write(r1, x, PV_F32, xd, 64 * 48);
  pv_plan_run(r1);
  pv_plan_read(r1, gx, PV_F32, g2, 64 * 48);
  double md = 0;
  for (int i = 0; i < 64 * 48; i++) md = fmax(md, fabs(g1[i] - g2[i]));
  CHECK(md < 1e-4, "1 vs default threads max diff %g", md);
  /* 5. dead code is not planned */
  pv_graph *g3 = pv_graph_new(ctx);
  int64_t s1[1] = {8};
  pv_tensor *a = pv_input(g3, "a", PV_F32, 1, s1);
  pv_tensor *dead = pv_unary(g3, PV_EXP, pv_scale(g3, a, 3.0));
  (void)dead;
  pv_tensor *live = pv_add_scalar(g3, a, 1.0);
  pv_mark_output(live);
  pv_plan *p3 = NULL;
  CHECK(pv_plan_compile(g3, NULL, &p3) == PV_OK, "compile g3");
  CHECK(pv_plan_node_count(p3) == 2, "dead branch planned: %d nodes", pv_plan_node_count(p3));
  pv_plan_free(p3);
  pv_graph_free(g3);
  free(def), free(last), free(xd), free(g1), free(g2);
  pv_plan_free(p), pv_plan_free(q), pv_plan_free(r1);
  pv_graph_free(g);
  pv_context_free(ctx);
  return pv_t_finish();
}
