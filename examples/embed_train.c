/* embed_train.c: how a C application embeds pivot. Only pivot.h is used; link with -lpivot.
 *
 * It fits a linear model  pred = x·Wᵀ + b  to data made from known weights, training W and b with AdamW
 * for 50 steps on the CPU, and exits 0 only if the loss fell by a large factor. The steps are the same for
 * any model:
 *   1. a context (owns the variables: weights and optimizer state),
 *   2. a graph: inputs, variable nodes, ops, the loss; pv_graph_backward appends the gradients, and
 *      pv_adamw the in-place updates,
 *   3. a plan (the graph compiled for a backend, with its memory planned once),
 *   4. a loop that writes the inputs, runs the plan and reads the loss.
 * Graph-builder calls return NULL on error and keep the first error in the graph (pv_graph_error), so
 * a whole graph can be built and checked once; other calls return a pv_status (pv_last_error).
 * (This file needs no libm: everything numeric happens inside libpivot.) */
#include "pivot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 64, IN = 4, OUT = 3, STEPS = 50 };

static pv_context *ctx;

/* exits with the runtime's message when a call failed */
static void must(pv_status st, const char *what) {
  if (st != PV_OK) {
    fprintf(stderr, "embed_train: %s failed: %s: %s\n", what, pv_status_name(st), pv_last_error(ctx));
    exit(1);
  }
}

/* a variable of the given shape, zero-filled (or normal(0, std) when std > 0) */
static pv_var *new_var(const char *name, int ndim, const int64_t *shape, double std) {
  pv_var *v = NULL;
  must(pv_var_new(ctx, name, PV_F32, ndim, shape, &v), name);
  if (std > 0) must(pv_var_init_normal(v, 0.0, std), name);
  return v;
}

/* deterministic data: uniform in [-1, 1) from a small LCG */
static double next_uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

int main(void) {
  /* 1. the context, its seed (for pv_var_init_*) and CPU threads */
  ctx = pv_context_new();
  if (!ctx) return 1;
  must(pv_set_seed(ctx, 42), "set_seed");
  must(pv_set_threads(ctx, 2), "set_threads");

  int64_t w_shape[2] = {OUT, IN}, b_shape[1] = {OUT};
  pv_var *W = new_var("W", 2, w_shape, 0.1), *B = new_var("b", 1, b_shape, 0.0);
  /* AdamW state: first and second moments, one pair per parameter */
  pv_var *mW = new_var("W.m", 2, w_shape, 0), *vW = new_var("W.v", 2, w_shape, 0);
  pv_var *mB = new_var("b.m", 1, b_shape, 0), *vB = new_var("b.v", 1, b_shape, 0);

  /* 2. the graph */
  pv_graph *g = pv_graph_new(ctx);
  int64_t x_shape[2] = {N, IN}, y_shape[2] = {N, OUT}, h_shape[1] = {6};
  pv_tensor *x = pv_input(g, "x", PV_F32, 2, x_shape);
  pv_tensor *y = pv_input(g, "y", PV_F32, 2, y_shape);
  /* AdamW hyper-parameters as an input: (lr, beta1, beta2, eps, 1 - beta1^t, 1 - beta2^t), written each step */
  pv_tensor *hyper = pv_input(g, "hyper", PV_F32, 1, h_shape);
  pv_tensor *w = pv_use_var(g, W), *b = pv_use_var(g, B);
  pv_set_trainable(w, 1);
  pv_set_trainable(b, 1);
  pv_tensor *pred = pv_add(g, pv_matmul(g, x, w, 0, 1), b); /* x·Wᵀ + b, b broadcast over rows */
  pv_tensor *err = pv_sub(g, pred, y);
  pv_tensor *loss = pv_scale(g, pv_sum_all(g, pv_unary(g, PV_SQUARE, err)), 1.0 / (N * OUT)); /* MSE */
  if (pv_graph_status(g) != PV_OK) { /* one check covers every builder call above */
    fprintf(stderr, "embed_train: building the graph failed: %s\n", pv_graph_error(g));
    return 1;
  }
  must(pv_mark_output(loss), "mark_output");
  must(pv_graph_backward(g, loss), "backward");
  pv_adamw(g, w, pv_grad(g, w), pv_use_var(g, mW), pv_use_var(g, vW), hyper, 1.0, 0.0);
  pv_adamw(g, b, pv_grad(g, b), pv_use_var(g, mB), pv_use_var(g, vB), hyper, 1.0, 0.0);
  if (pv_graph_status(g) != PV_OK) {
    fprintf(stderr, "embed_train: adding the optimizer failed: %s\n", pv_graph_error(g));
    return 1;
  }

  /* 3. the plan: NULL options = the CPU backend (or $PIVOT_BACKEND) with the context's threads */
  pv_plan *plan = NULL;
  must(pv_plan_compile(g, NULL, &plan), "compile");

  /* data from known weights: y = x·W*ᵀ + b* */
  static float xs[N * IN], ys[N * OUT];
  uint64_t s = 7;
  double wt[OUT][IN], bt[OUT];
  for (int o = 0; o < OUT; o++) {
    bt[o] = next_uniform(&s);
    for (int i = 0; i < IN; i++) wt[o][i] = 2.0 * next_uniform(&s);
  }
  for (int n = 0; n < N; n++) {
    for (int i = 0; i < IN; i++) xs[n * IN + i] = (float)next_uniform(&s);
    for (int o = 0; o < OUT; o++) {
      double acc = bt[o];
      for (int i = 0; i < IN; i++) acc += wt[o][i] * xs[n * IN + i];
      ys[n * OUT + o] = (float)acc;
    }
  }
  must(pv_plan_write(plan, x, PV_F32, xs, N * IN), "write x");
  must(pv_plan_write(plan, y, PV_F32, ys, N * OUT), "write y");

  /* 4. the training loop: each run computes the loss, the gradients and the AdamW updates */
  const double lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double beta1_t = 1.0, beta2_t = 1.0; /* beta^step, kept as running products */
  float first = 0, last = 0;
  for (int step = 1; step <= STEPS; step++) {
    beta1_t *= beta1;
    beta2_t *= beta2;
    float h[6] = {(float)lr, (float)beta1, (float)beta2, (float)eps, (float)(1.0 - beta1_t), (float)(1.0 - beta2_t)};
    must(pv_plan_write(plan, hyper, PV_F32, h, 6), "write hyper");
    must(pv_plan_run(plan), "run");
    must(pv_plan_read(plan, loss, PV_F32, &last, 1), "read loss");
    if (step == 1) first = last;
    if (step == 1 || step % 10 == 0) printf("step %2d  loss %.6f\n", step, last);
  }

  /* the variables hold the trained weights; read them back like any host data */
  float wv[OUT * IN];
  must(pv_var_read(W, PV_F32, wv, OUT * IN), "read W");
  printf("W[0] = %.3f %.3f %.3f %.3f (true %.3f %.3f %.3f %.3f)\n", wv[0], wv[1], wv[2], wv[3], wt[0][0], wt[0][1],
         wt[0][2], wt[0][3]);

  pv_plan_free(plan); /* plans before their graph, graphs before their context */
  pv_graph_free(g);
  pv_context_free(ctx);

  double factor = last > 0 ? first / last : INFINITY;
  int ok = isfinite(first) && last < first && factor >= 20.0;
  printf("loss %.6f -> %.6f (%.0fx lower): %s\n", first, last, factor, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
