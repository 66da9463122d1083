#include "opcheck.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;
static double urand(void) {
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return (double)(rs >> 11) / 9007199254740992.0;
}
static double nrand(void) {
  double u = urand(), v = urand();
  if (u < 1e-12) u = 1e-12;
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
static int64_t numel_of(const oc_input *in) {
  int64_t n = 1;
  for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
  return n;
}
static double rel_l2(const double *a, const double *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (den == 0) return sqrt(num);
  return sqrt(num / den);
}

typedef struct built {
  pv_graph *g;
  pv_tensor *in[16], *out, *loss, *R;
} built;

static int build(built *b, pv_context *ctx, int nin, const oc_input *ins, oc_build fn, void *ud, int with_loss) {
  memset(b, 0, sizeof *b);
  b->g = pv_graph_new(ctx);
  for (int i = 0; i < nin; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "in%d", i);
    pv_dtype dt = ins[i].kind == OC_IDS ? (ins[i].dtype ? ins[i].dtype : PV_I64) : PV_F32;
    b->in[i] = pv_input(b->g, nm, dt, ins[i].ndim, ins[i].shape);
    if (with_loss && ins[i].trainable) pv_set_trainable(b->in[i], 1);
  }
  b->out = fn(b->g, b->in, ud);
  if (!b->out) return 0;
  pv_mark_output(b->out);
  if (with_loss) {
    int64_t sh[8];
    for (int i = 0; i < pv_tensor_ndim(b->out); i++) sh[i] = pv_tensor_dim(b->out, i);
    b->R = pv_input(b->g, "R", PV_F32, pv_tensor_ndim(b->out), sh);
    b->loss = pv_sum_all(b->g, pv_mul(b->g, b->out, b->R));
    if (!b->loss || pv_graph_backward(b->g, b->loss) != PV_OK) return 0;
  }
  return pv_graph_status(b->g) == PV_OK;
}

static int write_all(pv_plan *p, built *b, int nin, double **data, const oc_input *ins, const double *R) {
  for (int i = 0; i < nin; i++) {
    int64_t n = numel_of(&ins[i]);
    if (ins[i].kind == OC_IDS) { /* ids are written as integers */
      int64_t *ids = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
      for (int64_t j = 0; j < n; j++) ids[j] = (int64_t)data[i][j];
      pv_status st = pv_plan_write(p, b->in[i], PV_I64, ids, n);
      free(ids);
      if (st != PV_OK) return 0;
    } else if (pv_plan_write(p, b->in[i], PV_F64, data[i], n) != PV_OK)
      return 0;
  }
  if (b->R && pv_plan_write(p, b->R, PV_F64, R, pv_tensor_numel(b->out)) != PV_OK) return 0;
  return 1;
}

int oc_check(const char *name, int nin, const oc_input *ins, oc_build fn, void *ud, const oc_opts *o) {
  oc_opts op = {2e-5, 1e-6, 1e-4, 1e-6, 24, 0};
  if (o) {
    if (o->fwd_tol > 0) op.fwd_tol = o->fwd_tol;
    if (o->fd_tol > 0) op.fd_tol = o->fd_tol;
    if (o->grad_tol > 0) op.grad_tol = o->grad_tol;
    if (o->fd_h > 0) op.fd_h = o->fd_h;
    if (o->fd_max > 0) op.fd_max = o->fd_max;
    op.no_vulkan = o->no_vulkan;
  }
  int fails0 = pv_t_fail;
  pv_context *ctx = pv_context_new();
  double *data[16] = {0};
  for (int i = 0; i < nin; i++) {
    int64_t n = numel_of(&ins[i]);
    data[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t j = 0; j < n; j++) {
      const oc_input *in = &ins[i];
      if (in->kind == OC_IDS) data[i][j] = floor(in->lo + (in->hi - in->lo) * urand());
      else if (in->kind == OC_UNIFORM) data[i][j] = in->lo + (in->hi - in->lo) * urand();
      else data[i][j] = nrand() * (in->hi > 0 ? in->hi : 1.0);
      if (in->kind != OC_IDS) data[i][j] = (double)(float)data[i][j]; /* exactly representable in f32 */
    }
  }
  built fb;
  if (!build(&fb, ctx, nin, ins, fn, ud, 0)) {
    CHECK(0, "%s: building the graph failed: %s", name, pv_graph_error(fb.g));
    goto out_fb;
  }
  int64_t nout = pv_tensor_numel(fb.out);
  double *yc = calloc((size_t)nout + 1, sizeof(double)), *yr = calloc((size_t)nout + 1, sizeof(double));
  pv_plan *pc = NULL, *pr = NULL;
  pv_plan_options oc = {"cpu", 0, -1, 0}, orf = {"ref", 0, -1, 0};
  int ok = pv_plan_compile(fb.g, &oc, &pc) == PV_OK && pv_plan_compile(fb.g, &orf, &pr) == PV_OK;
  CHECK(ok, "%s: compile: %s", name, pv_last_error(ctx));
  if (ok) {
    ok = write_all(pc, &fb, nin, data, ins, NULL) && write_all(pr, &fb, nin, data, ins, NULL) &&
         pv_plan_run(pc) == PV_OK && pv_plan_run(pr) == PV_OK &&
         pv_plan_read(pc, fb.out, PV_F64, yc, nout) == PV_OK && pv_plan_read(pr, fb.out, PV_F64, yr, nout) == PV_OK;
    CHECK(ok, "%s: forward run: %s", name, pv_last_error(ctx));
    if (ok) {
      double e = rel_l2(yc, yr, nout);
      int fin = 1;
      for (int64_t j = 0; j < nout; j++) fin &= isfinite(yr[j]);
      CHECK(fin && e <= op.fwd_tol, "%s: forward cpu vs ref rel err %.3g (tol %.1g)%s", name, e, op.fwd_tol,
            fin ? "" : " (non-finite)");
      /* Vulkan forward parity */
      if (!op.no_vulkan && pv_backend_available(ctx, "vulkan", NULL) && !getenv("PIVOT_TEST_NO_VULKAN")) {
        pv_plan *pv = NULL;
        pv_plan_options ov = {"vulkan", 0, -1, 0};
        double *yv = calloc((size_t)nout + 1, sizeof(double));
        pv_status cst = pv_plan_compile(fb.g, &ov, &pv);
        int okv = cst == PV_OK && write_all(pv, &fb, nin, data, ins, NULL) &&
                  pv_plan_run(pv) == PV_OK && pv_plan_read(pv, fb.out, PV_F64, yv, nout) == PV_OK;
        if (cst == PV_ERR_UNSUPPORTED && getenv("PIVOT_TEST_VK_ALLOW_UNSUPPORTED")) {
          printf("skip %s: %s\n", name, pv_last_error(ctx));
          okv = -1;
        } else
          CHECK(okv, "%s: vulkan forward: %s", name, pv_last_error(ctx));
        if (okv == 1) {
          double ev = rel_l2(yv, yc, nout);
          CHECK(ev <= op.fwd_tol * 5, "%s: forward vulkan vs cpu rel err %.3g", name, ev);
        }
        pv_plan_free(pv);
        free(yv);
      }
    }
  }
  pv_plan_free(pc);
  pv_plan_free(pr);
  free(yc);
  free(yr);
  /* gradients */
  int anytr = 0;
  for (int i = 0; i < nin; i++) anytr |= ins[i].trainable;
  if (anytr) {
    built gb;
    double *R = malloc(sizeof(double) * (size_t)(nout ? nout : 1));
    for (int64_t j = 0; j < nout; j++) R[j] = (double)(float)nrand();
    if (!build(&gb, ctx, nin, ins, fn, ud, 1)) {
      CHECK(0, "%s: building the backward graph failed: %s / %s", name, pv_graph_error(gb.g), pv_last_error(ctx));
    } else {
      pv_plan *pr2 = NULL, *pc2 = NULL;
      ok = pv_plan_compile(gb.g, &orf, &pr2) == PV_OK && pv_plan_compile(gb.g, &oc, &pc2) == PV_OK;
      CHECK(ok, "%s: compile backward: %s", name, pv_last_error(ctx));
      if (ok) ok = write_all(pr2, &gb, nin, data, ins, R) && pv_plan_run(pr2) == PV_OK &&
                   write_all(pc2, &gb, nin, data, ins, R) && pv_plan_run(pc2) == PV_OK;
      CHECK(ok, "%s: backward run: %s", name, pv_last_error(ctx));
      for (int i = 0; ok && i < nin; i++) {
        if (!ins[i].trainable) continue;
        pv_tensor *gr = pv_grad(gb.g, gb.in[i]);
        CHECK(gr != NULL, "%s: no gradient for input %d", name, i);
        if (!gr) continue;
        int64_t n = numel_of(&ins[i]);
        double *an = malloc(sizeof(double) * (size_t)n), *ac = malloc(sizeof(double) * (size_t)n);
        pv_plan_read(pr2, gr, PV_F64, an, n);
        pv_plan_read(pc2, gr, PV_F64, ac, n);
        double amax = 0, emax = 0;
        for (int64_t j = 0; j < n; j++) amax = fmax(amax, fabs(an[j]));
        int64_t step = n > op.fd_max ? n / op.fd_max : 1;
        for (int64_t j = 0; j < n; j += step) {
          double x0 = data[i][j], lp, lm;
          data[i][j] = x0 + op.fd_h;
          write_all(pr2, &gb, nin, data, ins, R);
          pv_plan_run(pr2);
          pv_plan_read(pr2, gb.loss, PV_F64, &lp, 1);
          data[i][j] = x0 - op.fd_h;
          write_all(pr2, &gb, nin, data, ins, R);
          pv_plan_run(pr2);
          pv_plan_read(pr2, gb.loss, PV_F64, &lm, 1);
          data[i][j] = x0;
          double fd = (lp - lm) / (2 * op.fd_h);
          emax = fmax(emax, fabs(fd - an[j]));
        }
        /* restore the unperturbed state of the reference plan for the next input */
        write_all(pr2, &gb, nin, data, ins, R);
        pv_plan_run(pr2);
        double rel = emax / (amax + 1e-8);
        CHECK(rel <= op.fd_tol, "%s: input %d gradient vs finite differences: max err %.3g rel %.3g (tol %.1g)", name, i,
              emax, rel, op.fd_tol);
        double ec = rel_l2(ac, an, n);
        CHECK(ec <= op.grad_tol, "%s: input %d gradient cpu vs ref rel err %.3g (tol %.1g)", name, i, ec, op.grad_tol);
        free(an);
        free(ac);
      }
      /* Vulkan gradients vs CPU */
      if (ok && !op.no_vulkan && pv_backend_available(ctx, "vulkan", NULL) && !getenv("PIVOT_TEST_NO_VULKAN")) {
        pv_plan *pv = NULL;
        pv_plan_options ov = {"vulkan", 0, -1, 0};
        pv_status cst = pv_plan_compile(gb.g, &ov, &pv);
        int okv = cst == PV_OK && write_all(pv, &gb, nin, data, ins, R) && pv_plan_run(pv) == PV_OK;
        if (cst == PV_ERR_UNSUPPORTED && getenv("PIVOT_TEST_VK_ALLOW_UNSUPPORTED")) okv = 0;
        else CHECK(okv, "%s: vulkan backward: %s", name, pv_last_error(ctx));
        for (int i = 0; okv && i < nin; i++) {
          pv_tensor *gr = ins[i].trainable ? pv_grad(gb.g, gb.in[i]) : NULL;
          if (!gr) continue;
          int64_t n = numel_of(&ins[i]);
          double *av = malloc(sizeof(double) * (size_t)n), *ac = malloc(sizeof(double) * (size_t)n);
          pv_plan_read(pv, gr, PV_F64, av, n);
          pv_plan_read(pc2, gr, PV_F64, ac, n);
          double ev = rel_l2(av, ac, n);
          CHECK(ev <= op.grad_tol, "%s: input %d gradient vulkan vs cpu rel err %.3g", name, i, ev);
          free(av);
          free(ac);
        }
        pv_plan_free(pv);
      }
      pv_plan_free(pr2);
      pv_plan_free(pc2);
    }
    pv_graph_free(gb.g);
    free(R);
  }
out_fb:
  pv_graph_free(fb.g);
  for (int i = 0; i < nin; i++) free(data[i]);
  pv_context_free(ctx);
  if (pv_t_fail == fails0) printf("ok   %s\n", name);
  return pv_t_fail == fails0;
}
