/* CPU backend: one 64-byte aligned arena at the planner's offsets; vars use their host storage;
 * kernels run on a persistent thread pool (GEMMs: pivot's own kernels in sgemm.c, or OpenBLAS). */
#include "../internal.h"
#include "threadpool.h"
#include <time.h>

/* Ops touching fewer elements than this run on the calling thread only. */
#define PV_CPU_PARALLEL_MIN 16384

typedef struct cpu_plan {
  unsigned char *arena;
  void *scratch;
  pv_pool *pool;
} cpu_plan;

static void *node_ptr(pv_plan *p, cpu_plan *c, const pv_tensor *t) {
  int r = p->slot[t->id].root;
  pv_tensor *rt = p->g->nodes[r];
  if (rt->flags & PV_NF_VAR) return (char *)rt->var->data + p->slot[t->id].voff * (int64_t)pv_dtype_size(t->dtype);
  return c->arena + p->slot[t->id].offset;
}

static pv_status cpu_init(pv_plan *p) {
  cpu_plan *c = calloc(1, sizeof *c);
  if (!c) return pv__err(p->ctx, PV_ERR_NOMEM, "cpu plan: out of memory");
  p->bed = c;
  c->arena = pv__aligned_alloc((size_t)p->arena_bytes);
  c->scratch = pv__aligned_alloc(p->scratch_bytes);
  c->pool = pv__pool_new(p->threads);
  if (!c->arena || !c->scratch || !c->pool)
    return pv__err(p->ctx, PV_ERR_NOMEM, "cpu plan: out of memory for an arena of %lld bytes",
                   (long long)p->arena_bytes);
  /* vars used by the plan must be stored as f32 (float) or as ids */
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = p->g->nodes[p->order[k]];
    if ((t->flags & PV_NF_VAR) && t->var->dev_version > t->var->host_version && p->ctx->vk_sync_var) {
      pv_status st = p->ctx->vk_sync_var(p->ctx, t->var);
      if (st) return st;
    }
  }
  return PV_OK;
}

static void cpu_free(pv_plan *p) {
  cpu_plan *c = p->bed;
  if (!c) return;
  pv__pool_free(c->pool);
  pv__aligned_free(c->arena);
  pv__aligned_free(c->scratch);
  free(c);
  p->bed = NULL;
}

static pv_status cpu_write(pv_plan *p, pv_tensor *t, pv_dtype sd, const void *data, int64_t count) {
  pv__convert(t->dtype, node_ptr(p, p->bed, t), sd, data, count);
  return PV_OK;
}

static pv_status cpu_read(pv_plan *p, pv_tensor *t, pv_dtype dd, void *out, int64_t count) {
  pv__convert(dd, out, t->dtype, node_ptr(p, p->bed, t), count);
  return PV_OK;
}

typedef struct job {
  const pv_tensor *t;
  pv_cpu_args a;
} job;

static void run_job(void *arg, int ith, int nth) {
  job *j = arg;
  pv_cpu_args a = j->a;
  a.ith = ith;
  a.nth = nth;
  pv__opdef(j->t->op)->cpu(j->t, &a);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static pv_status cpu_run(pv_plan *p) {
  cpu_plan *c = p->bed;
  pv_graph *g = p->g;
  int error = 0;
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    if (t->flags & PV_NF_VAR) { /* a device copy may be newer (after a Vulkan plan) */
      pv_var *v = t->var;
      if (v->dev_version > v->host_version && p->ctx->vk_sync_var) {
        pv_status st = p->ctx->vk_sync_var(p->ctx, v);
        if (st) return st;
      }
    }
  }
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    const pv_op_def *d = pv__opdef(t->op);
    if (!d->cpu) continue; /* inputs, vars, views */
    double t0 = p->profiling ? now_ms() : 0;
    job j;
    memset(&j, 0, sizeof j);
    j.t = t;
    j.a.dst = node_ptr(p, c, t);
    for (int s = 0; s < t->nsrc; s++) {
      j.a.srcw[s] = node_ptr(p, c, t->src[s]);
      j.a.src[s] = j.a.srcw[s];
    }
    j.a.scratch = c->scratch;
    j.a.error = &error;
    j.a.parallel = pv__pool_run;
    j.a.pool = c->pool;
    int64_t work = t->numel;
    for (int s = 0; s < t->nsrc; s++)
      if (t->src[s]->numel > work) work = t->src[s]->numel;
    if (d->flags & PV_OPF_CPU_SERIAL) {
      j.a.ith = 0;
      j.a.nth = pv__pool_size(c->pool);
      d->cpu(t, &j.a);
    } else if (work < PV_CPU_PARALLEL_MIN) {
      run_job(&j, 0, 1); /* waking the pool costs more than a small op */
    } else {
      pv__pool_run(c->pool, run_job, &j);
    }
    if (d->flags & PV_OPF_UPDATE)
      for (int s = 0; s < t->nsrc; s++)
        if (t->src[s]->flags & PV_NF_VAR) {
          pv_var *v = t->src[s]->var;
          v->host_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
        }
    if (p->profiling) {
      p->prof_ms[t->op] += now_ms() - t0;
      p->prof_calls[t->op]++;
    }
    if (error)
      return pv__err(p->ctx, PV_ERR_INVALID, "run: op '%s' (node %d '%s'): invalid data (e.g. an id out of range)",
                     d->name, t->id, pv_tensor_name(t));
  }
  return PV_OK;
}

const pv_backend pv_backend_cpu = {"cpu", cpu_init, cpu_free, cpu_write, cpu_read, cpu_run};
