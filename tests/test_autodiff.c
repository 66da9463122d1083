/* Autodiff tests: accumulation over several consumers, frozen parameters, unused branches,
 * non-differentiable inputs, errors. */
#include "internal.h"
#include "testutil.h"
#include <math.h>

int main(void) {
  pv_context *ctx = pv_context_new();
  int64_t sh[1] = {5};
  /* 1. accumulation: L = sum(w*w + 3w + tanh(w)) -> dL/dw = 2w + 3 + 1 - tanh²(w) */
  {
    pv_var *wv;
    pv_var_new(ctx, "w", PV_F32, 1, sh, &wv);
    float wd[5] = {0.1f, -0.5f, 0.7f, 1.2f, -2.0f};
    pv_var_write(wv, PV_F32, wd, 5);
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *w = pv_use_var(g, wv);
    pv_set_trainable(w, 1);
    pv_tensor *l = pv_sum_all(g, pv_add(g, pv_add(g, pv_mul(g, w, w), pv_scale(g, w, 3.0)), pv_unary(g, PV_TANH, w)));
    CHECK(pv_graph_backward(g, l) == PV_OK, "backward: %s", pv_last_error(ctx));
    pv_tensor *gw = pv_grad(g, w);
    pv_plan *p = NULL;
    CHECK(pv_plan_compile(g, NULL, &p) == PV_OK, "compile: %s", pv_last_error(ctx));
    CHECK(pv_plan_run(p) == PV_OK, "run");
    float gd[5];
    pv_plan_read(p, gw, PV_F32, gd, 5);
    double err = 0;
    for (int i = 0; i < 5; i++) {
      double th = tanh(wd[i]);
      err = fmax(err, fabs(gd[i] - (2 * wd[i] + 3 + 1 - th * th)));
    }
    CHECK(err < 1e-5, "accumulated gradient error %g", err);
    pv_plan_free(p);
    pv_graph_free(g);
  }
  /* 2. frozen parameters get no gradient and cost nothing */
  {
    int nodes[2];
    for (int frozen = 0; frozen < 2; frozen++) {
      pv_graph *g = pv_graph_new(ctx);
      pv_var *av = pv_var_find(ctx, "w"), *bv = NULL;
      if (!pv_var_find(ctx, "b")) pv_var_new(ctx, "b", PV_F32, 1, sh, &bv);
      bv = pv_var_find(ctx, "b");
      pv_tensor *a = pv_use_var(g, av), *b = pv_use_var(g, bv);
      pv_set_trainable(a, 1);
      pv_set_trainable(b, !frozen);
      pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh);
      pv_tensor *bb = pv_unary(g, PV_EXP, pv_mul(g, b, x));
      pv_tensor *l = pv_sum_all(g, pv_add(g, pv_mul(g, a, x), bb));
      CHECK(pv_graph_backward(g, l) == PV_OK, "backward: %s", pv_last_error(ctx));
      CHECK(pv_grad(g, a) != NULL, "grad of trainable a");
      if (frozen) CHECK(pv_grad(g, b) == NULL, "frozen b has a gradient");
      pv_plan *p = NULL;
      CHECK(pv_plan_compile(g, NULL, &p) == PV_OK, "compile");
      nodes[frozen] = pv_plan_node_count(p);
      pv_plan_free(p);
      pv_graph_free(g);
    }
    CHECK(nodes[1] < nodes[0], "freezing b should remove its backward nodes (%d vs %d)", nodes[1], nodes[0]);
  }
  /* 3. unused branches: a trainable var not feeding the loss has no gradient; x input not trainable */
  {
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *a = pv_use_var(g, pv_var_find(ctx, "w"));
    pv_tensor *b = pv_use_var(g, pv_var_find(ctx, "b"));
    pv_set_trainable(a, 1);
    pv_set_trainable(b, 1);
    pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh);
    pv_tensor *side = pv_unary(g, PV_EXP, b);
    pv_mark_output(side);
    pv_tensor *l = pv_sum_all(g, pv_mul(g, a, x));
    CHECK(pv_graph_backward(g, l) == PV_OK, "backward");
    CHECK(pv_grad(g, b) == NULL, "unused b has a gradient");
    CHECK(pv_grad(g, x) == NULL, "non-trainable input x has a gradient");
    CHECK(pv_graph_backward(g, l) == PV_ERR_STATE, "second backward must fail");
    pv_graph_free(g);
  }
  /* 4. errors: non-scalar loss, no trainable, loss of another graph */
  {
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *x = pv_input(g, "x", PV_F32, 1, sh);
    CHECK(pv_graph_backward(g, pv_unary(g, PV_EXP, x)) == PV_ERR_SHAPE, "non-scalar loss");
    CHECK(strstr(pv_last_error(ctx), "[5]") != NULL, "message names the shape: %s", pv_last_error(ctx));
    CHECK(pv_graph_backward(g, pv_sum_all(g, x)) == PV_ERR_STATE, "no trainable");
    CHECK(strstr(pv_last_error(ctx), "trainable") != NULL, "message: %s", pv_last_error(ctx));
    int64_t idsh[1] = {3};
    pv_tensor *ids = pv_input(g, "ids", PV_I64, 1, idsh);
    CHECK(pv_set_trainable(ids, 1) == PV_ERR_DTYPE, "ids cannot be trainable");
    pv_graph_free(g);
  }
  pv_context_free(ctx);
  return pv_t_finish();
}
