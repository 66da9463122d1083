/* Plans: compile a graph for a backend, write inputs, run, read outputs. */
#include "internal.h"
#include "cpu/sgemm.h"
#include <cblas.h>

static const pv_backend *find_backend(pv_context *ctx, const char *name, pv_status *st) {
  *st = PV_OK;
  if (!name || !*name || strcmp(name, "cpu") == 0) return &pv_backend_cpu;
  if (strcmp(name, "ref") == 0) return &pv_backend_ref;
  if (strcmp(name, "vulkan") == 0) {
    const char *why = NULL;
    if (!pv__vk_available(ctx, &why)) {
      *st = pv__err(ctx, PV_ERR_UNSUPPORTED, "backend 'vulkan' is not available: %s", why ? why : "unknown reason");
      return NULL;
    }
    return pv__vk_backend();
  }
  *st = pv__err(ctx, PV_ERR_INVALID, "unknown backend '%s' (expected cpu, vulkan or ref)", name);
  return NULL;
}

int pv_backend_available(pv_context *ctx, const char *backend, const char **why) {
  if (why) *why = NULL;
  if (!backend) {
    if (why) *why = "backend name is NULL";
    return 0;
  }
  if (!strcmp(backend, "cpu") || !strcmp(backend, "ref")) return 1;
  if (!strcmp(backend, "vulkan")) return pv__vk_available(ctx, why);
  if (why) *why = "unknown backend";
  return 0;
}

pv_status pv_backend_describe(pv_context *ctx, const char *backend, char *buf, size_t cap) {
  if (!ctx || !backend || !buf) return PV_ERR_NULL;
  if (!strcmp(backend, "cpu")) {
    const char *core = openblas_get_corename();
    int gv = pv__sgemm_default();
    if (gv != PV_GEMM_OPENBLAS) {
      snprintf(buf, cap, "cpu: %d threads, GEMM by pivot's %s kernels (PIVOT_GEMM=openblas: %s, core %s)",
               ctx->threads, pv__sgemm_name(gv), openblas_get_config(), core ? core : "?");
      return PV_OK;
    }
    int old = core && (!strcmp(core, "Prescott") || !strcmp(core, "Core2") || !strcmp(core, "Nehalem"));
    int avx = __builtin_cpu_supports("avx2");
    snprintf(buf, cap, "cpu: %d threads, GEMM by %s (core %s)%s", ctx->threads, openblas_get_config(),
             core ? core : "?",
             old && avx ? "; this CPU is newer than the OpenBLAS build knows: OPENBLAS_CORETYPE=SkylakeX (AVX-512) or "
                          "Haswell (AVX2) makes GEMMs several times faster"
                        : "");
    return PV_OK;
  }
  if (!strcmp(backend, "ref")) {
    snprintf(buf, cap, "ref: naive float64 reference kernels");
    return PV_OK;
  }
  if (!strcmp(backend, "vulkan")) return pv__vk_describe(ctx, buf, cap);
  return pv__err(ctx, PV_ERR_INVALID, "unknown backend '%s'", backend);
}

pv_status pv_plan_compile(pv_graph *g, const pv_plan_options *opts, pv_plan **out) {
  if (out) *out = NULL;
  if (!g) return PV_ERR_NULL;
  if (!out) return pv__err(g->ctx, PV_ERR_NULL, "plan_compile: out is NULL");
  if (g->st) return pv__err(g->ctx, g->st, "plan_compile: the graph has an error: %s", g->err);
  pv_plan_options o = {0};
  if (opts) o = *opts;
  else o.device = -1;
  if (!o.backend) {
    const char *e = getenv("PIVOT_BACKEND");
    if (e && *e) o.backend = e;
  }
  pv_status st;
  const pv_backend *be = find_backend(g->ctx, o.backend, &st);
  if (!be) return st;
  pv_plan *p = calloc(1, sizeof *p);
  if (!p) return pv__err(g->ctx, PV_ERR_NOMEM, "plan_compile: out of memory");
  p->g = g;
  p->ctx = g->ctx;
  p->be = be;
  p->threads = o.threads > 0 ? o.threads : g->ctx->threads;
  p->device = o.device;
  p->compiled_n = g->n;
  p->prof_ms = calloc(PV_OP_COUNT, sizeof(double));
  p->prof_calls = calloc(PV_OP_COUNT, sizeof(int64_t));
  if (!p->prof_ms || !p->prof_calls) {
    pv_plan_free(p);
    return pv__err(g->ctx, PV_ERR_NOMEM, "plan_compile: out of memory");
  }
  st = pv__plan_memory(p, o.no_inplace);
  if (st == PV_OK) {
    for (int k = 0; k < p->norder; k++) {
      pv_tensor *t = g->nodes[p->order[k]];
      const pv_op_def *d = pv__opdef(t->op);
      if (d->cpu_scratch) {
        size_t s = d->cpu_scratch(t, p->threads);
        if (s > p->scratch_bytes) p->scratch_bytes = s;
      }
    }
    st = be->init(p);
  }
  if (st != PV_OK) {
    p->be = NULL;
    pv_plan_free(p);
    return st;
  }
  *out = p;
  return PV_OK;
}

void pv_plan_free(pv_plan *p) {
  if (!p) return;
  if (p->be && p->be->free) p->be->free(p);
  free(p->order);
  free(p->live);
  free(p->slot);
  free(p->prof_ms);
  free(p->prof_calls);
  free(p);
}

static pv_status check_tensor(pv_plan *p, pv_tensor *t, const char *what, int64_t count) {
  if (!t) return pv__err(p->ctx, PV_ERR_NULL, "%s: tensor is NULL", what);
  if (t->graph != p->g) return pv__err(p->ctx, PV_ERR_INVALID, "%s: tensor of another graph", what);
  if (t->id >= p->compiled_n || !p->live[t->id])
    return pv__err(p->ctx, PV_ERR_INVALID, "%s: node %d (%s '%s') is not part of the plan", what, t->id,
                   pv__opdef(t->op)->name, pv_tensor_name(t));
  if (count != t->numel) {
    char b[128];
    return pv__err(p->ctx, PV_ERR_SHAPE, "%s: %lld elements given, tensor '%s' %s has %lld", what, (long long)count,
                   pv_tensor_name(t), pv__shape_str(b, sizeof b, t->ndim, t->shape), (long long)t->numel);
  }
  return PV_OK;
}

pv_status pv_plan_write(pv_plan *p, pv_tensor *t, pv_dtype src_dtype, const void *data, int64_t count) {
  if (!p) return PV_ERR_NULL;
  pv_status st = check_tensor(p, t, "plan_write", count);
  if (st) return st;
  if (!data) return pv__err(p->ctx, PV_ERR_NULL, "plan_write '%s': data is NULL", pv_tensor_name(t));
  if (!(t->flags & PV_NF_INPUT))
    return pv__err(p->ctx, PV_ERR_INVALID, "plan_write: node %d (%s) is not an input", t->id, pv__opdef(t->op)->name);
  if (pv_dtype_size(src_dtype) == 0 || pv__is_int(src_dtype) != pv__is_int(t->dtype))
    return pv__err(p->ctx, PV_ERR_DTYPE, "plan_write '%s': cannot write %s data into a %s input", pv_tensor_name(t),
                   pv_dtype_name(src_dtype), pv_dtype_name(t->dtype));
  return p->be->write(p, t, src_dtype, data, count);
}

pv_status pv_plan_read(pv_plan *p, pv_tensor *t, pv_dtype dst_dtype, void *out, int64_t count) {
  if (!p) return PV_ERR_NULL;
  pv_status st = check_tensor(p, t, "plan_read", count);
  if (st) return st;
  if (!out) return pv__err(p->ctx, PV_ERR_NULL, "plan_read '%s': out is NULL", pv_tensor_name(t));
  if (!(t->flags & (PV_NF_OUTPUT | PV_NF_INPUT | PV_NF_LOSS)))
    return pv__err(p->ctx, PV_ERR_INVALID, "plan_read: node %d (%s '%s') is not an output (pv_mark_output)", t->id,
                   pv__opdef(t->op)->name, pv_tensor_name(t));
  if (!p->ran && !(t->flags & PV_NF_INPUT))
    return pv__err(p->ctx, PV_ERR_STATE, "plan_read '%s': the plan has not run yet", pv_tensor_name(t));
  if (pv_dtype_size(dst_dtype) == 0) return pv__err(p->ctx, PV_ERR_DTYPE, "plan_read: invalid dtype");
  return p->be->read(p, t, dst_dtype, out, count);
}

pv_status pv_plan_run(pv_plan *p) {
  if (!p) return PV_ERR_NULL;
  if (p->g->n != p->compiled_n)
    return pv__err(p->ctx, PV_ERR_STATE,
                   "plan_run: the graph changed since the plan was compiled (%d nodes now, %d then); compile again",
                   p->g->n, p->compiled_n);
  pv_status st = p->be->run(p);
  if (st == PV_OK) p->ran = 1;
  return st;
}

int64_t pv_plan_peak_bytes(const pv_plan *p) { return p ? p->arena_bytes : 0; }
int64_t pv_plan_naive_bytes(const pv_plan *p) { return p ? p->naive_bytes : 0; }
int pv_plan_node_count(const pv_plan *p) { return p ? p->norder : 0; }
const char *pv_plan_backend(const pv_plan *p) { return p && p->be ? p->be->name : ""; }

pv_status pv_plan_set_profiling(pv_plan *p, int on) {
  if (!p) return PV_ERR_NULL;
  p->profiling = on;
  memset(p->prof_ms, 0, sizeof(double) * PV_OP_COUNT);
  memset(p->prof_calls, 0, sizeof(int64_t) * PV_OP_COUNT);
  return PV_OK;
}

pv_status pv_plan_profile(pv_plan *p, char *buf, size_t cap) {
  if (!p || !buf) return PV_ERR_NULL;
  if (cap == 0) return PV_OK;
  size_t k = 0;
  double total = 0;
  for (int i = 0; i < PV_OP_COUNT; i++) total += p->prof_ms[i];
  k += (size_t)snprintf(buf + k, cap - k, "%-20s %8s %10s %6s\n", "op", "calls", "ms", "%");
  int done[PV_OP_COUNT] = {0};
  for (;;) { /* descending by time */
    int best = -1;
    for (int i = 0; i < PV_OP_COUNT; i++)
      if (!done[i] && p->prof_calls[i] && (best < 0 || p->prof_ms[i] > p->prof_ms[best])) best = i;
    if (best < 0 || k >= cap) break;
    done[best] = 1;
    k += (size_t)snprintf(buf + k, cap - k, "%-20s %8lld %10.3f %6.1f\n", pv_op_table[best]->name,
                          (long long)p->prof_calls[best], p->prof_ms[best],
                          total > 0 ? 100.0 * p->prof_ms[best] / total : 0.0);
  }
  if (k < cap) snprintf(buf + k, cap - k, "%-20s %8s %10.3f\n", "total", "", total);
  return PV_OK;
}
