/* internal.h: structures shared by runtime/, ops/ and the backends. Not part of the public API. */
#ifndef PV_INTERNAL_H
#define PV_INTERNAL_H
#include "pivot.h"
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PV_MAX_DIMS 8
#define PV_MAX_SRC 8
#define PV_PARAM_BYTES 128
#define PV_ERRMSG 1024
#define PV_ALIGN 256 /* arena offset alignment (>= Vulkan minStorageBufferOffsetAlignment) */

/* ------------------------------------------------------------ context, variables */
struct pv_var {
  pv_context *ctx;
  char *name;
  pv_dtype dtype;
  int ndim;
  int64_t shape[PV_MAX_DIMS];
  int64_t numel;
  void *data;            /* host copy, numel * dtype size bytes, 64-byte aligned */
  uint64_t host_version; /* bumped on every host write */
  uint64_t dev_version;  /* bumped when a device copy is newer than the host (backend-managed) */
  void *dev;             /* backend-private device copy (Vulkan) */
  int index;
};

typedef struct pv_vk_ctx pv_vk_ctx; /* runtime/vulkan: per-context device state */

struct pv_context {
  char err[PV_ERRMSG];
  int threads;
  uint64_t rng[2];
  pv_var **vars;
  int nvars, cap_vars;
  pv_vk_ctx *vk;                    /* lazily created */
  void (*vk_free)(pv_context *ctx); /* set by the Vulkan backend */
  /* Vulkan: sync a var's device copy back to host (set by the backend); NULL if none */
  pv_status (*vk_sync_var)(pv_context *ctx, pv_var *v);
};

/* Sets ctx->err (printf-style) and returns st. Safe with ctx == NULL. */
pv_status pv__err(pv_context *ctx, pv_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void *pv__aligned_alloc(size_t bytes); /* 64-byte aligned, zeroed; free with pv__aligned_free */
void pv__aligned_free(void *p);
double pv__rng_normal(pv_context *ctx);
double pv__rng_uniform(pv_context *ctx);
/* dtype conversion of n elements */
void pv__convert(pv_dtype dst_t, void *dst, pv_dtype src_t, const void *src, int64_t n);
float pv__f16_to_f32(uint16_t h);
uint16_t pv__f32_to_f16(float f);
float pv__bf16_to_f32(uint16_t h);
uint16_t pv__f32_to_bf16(float f);
/* "[2, 3, 4]" into buf */
const char *pv__shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* ------------------------------------------------------------ graph nodes */
enum {
  PV_NF_INPUT = 1u << 0,     /* written by pv_plan_write */
  PV_NF_VAR = 1u << 1,       /* reads a pv_var */
  PV_NF_TRAINABLE = 1u << 2, /* gradients flow to it */
  PV_NF_OUTPUT = 1u << 3,    /* readable after a run */
  PV_NF_LOSS = 1u << 4,
  PV_NF_CONST = 1u << 5, /* computed from params only (fill, arange) */
};

struct pv_tensor {
  pv_graph *graph;
  int id; /* index in graph->nodes (creation order is a topological order) */
  int op; /* index in the op registry */
  pv_dtype dtype;
  int ndim;
  int64_t shape[PV_MAX_DIMS];
  int64_t numel;
  int nsrc;
  struct pv_tensor *src[PV_MAX_SRC];
  unsigned flags;
  pv_var *var; /* for var nodes */
  char *name;
  /* op parameters: each op family casts this to its own struct (see PV_PARAMS) */
  _Alignas(16) unsigned char params[PV_PARAM_BYTES];
};
#define PV_PARAMS(T, n) ((T *)(void *)(n)->params)
#define PV_CPARAMS(T, n) ((const T *)(const void *)(n)->params)

struct pv_graph {
  pv_context *ctx;
  pv_tensor **nodes;
  int n, cap;
  pv_status st;
  char err[PV_ERRMSG];
  pv_tensor **grads; /* grads[id] after pv_graph_backward (size cap_grads) */
  int ngrads;
  pv_tensor *loss;
};

/* Records the graph's sticky error (first one wins) and returns NULL. */
pv_tensor *pv__gerr(pv_graph *g, pv_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Creates a node of op `op` with the given sources and params (copied), then runs the op's shape
 * rule. Returns NULL (sticky error) on failure. Checks sources belong to g and are non-NULL. */
/* x[index] of x [n, ...]: a view (ops/shape.c); block index must start on a PV_ALIGN-byte boundary */
pv_tensor *pv__select(pv_graph *g, pv_tensor *x, int64_t index);
pv_tensor *pv__node(pv_graph *g, int op, int nsrc, pv_tensor *const *src, const void *params, size_t params_size);
/* Helper for shape rules */
void pv__set_shape(pv_tensor *t, pv_dtype dtype, int ndim, const int64_t *shape);
int pv__same_shape(const pv_tensor *a, const pv_tensor *b);
int pv__is_float(pv_dtype t);
int pv__is_int(pv_dtype t);
/* NumPy broadcast of two shapes into out; returns 0 if incompatible */
int pv__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout, int64_t *out);

/* ------------------------------------------------------------ op registry */
enum {
  PV_OPF_VIEW = 1u << 0,       /* output aliases src[0]'s buffer (its bytes, or a block of them: view_offset) */
  PV_OPF_INPLACE = 1u << 1,    /* may write its output into src[0]'s buffer when src[0] dies here */
  PV_OPF_UPDATE = 1u << 2,     /* side effect on var-node sources; scheduled last, always kept */
  PV_OPF_LEAF = 1u << 3,       /* no sources, computed from params (fill, arange) */
  PV_OPF_CPU_SERIAL = 1u << 4, /* CPU kernel is called once (ith=0, nth=1) and threads itself */
};

/* Arguments of one CPU kernel call. Kernels split their work by (ith, nth) and must not depend on
 * nth for their results beyond what is documented (results are deterministic for a given nth). */
typedef struct pv_cpu_args {
  void *dst;
  const void *src[PV_MAX_SRC];
  void *srcw[PV_MAX_SRC]; /* writable views of sources (UPDATE ops write var-nodes) */
  int ith, nth;
  void *scratch; /* per-plan scratch of op->cpu_scratch bytes (shared by all threads) */
  int *error;    /* set to nonzero to report a runtime data error (e.g. id out of range) */
  /* Runs fn(arg, ith, nth) on the plan's thread pool (for PV_OPF_CPU_SERIAL kernels). */
  void (*parallel)(void *pool, void (*fn)(void *arg, int ith, int nth), void *arg);
  void *pool;
} pv_cpu_args;

/* A Vulkan dispatch description filled by an op's vk function (helpers: runtime/vulkan/vk_ops.h).
 * Binding i (0..9) of descriptor set 0 is bind[i]: -1 the op's output, k >= 0 its source k, -2 the plan's scratch
 * buffer (vk_scratch bytes); each binding starts at the tensor's first element (tensors are stored in their dtype:
 * f32, 16-bit floats packed two per uint, i32, i64 as (lo, hi) uint pairs). Binding 10 is a per-dispatch status
 * word (uint): a shader sets it nonzero to report invalid data (the run then fails like a CPU kernel's error flag).
 * Push constants: 32 u32 words, fixed at compile time (shapes are static); groups: workgroup counts (0: no work). */
typedef struct pv_vk_dispatch {
  const char *shader; /* shader name: shaders/NAME.comp */
  int nbind;          /* bindings 0..nbind-1 are used */
  int bind[PV_MAX_SRC + 2];
  uint32_t push[32]; /* push constants (u32/f32 bit patterns) */
  int npush;
  uint32_t groups[3]; /* workgroup counts */
  double work;        /* estimated cost in flops (0: from the grid size); used to split long submits */
} pv_vk_dispatch;

typedef struct pv_op_def {
  const char *name;
  int min_src, max_src;
  unsigned flags;
  unsigned nodiff; /* bit k set: src[k] gets no gradient (ids, masks, positions) */
  /* Shape rule: validates sources and params of t (srcs/params already set) and sets dtype/shape
   * with pv__set_shape. On error, returns pv__gerr(...) status via t->graph; returns PV_OK. */
  pv_status (*shape)(pv_tensor *t);
  /* Backward rule: given dy (the gradient of t, same shape), appends nodes to g and stores in dsrc[k]
   * the gradient for src[k] when need[k] is set (shape equal to src[k]). Returns PV_OK or the
   * graph's sticky status. NULL if the op is not differentiable. */
  pv_status (*backward)(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc);
  /* CPU kernel (f32 data; ids as stored). */
  void (*cpu)(const pv_tensor *t, const pv_cpu_args *a);
  /* Scratch bytes the CPU kernel needs (may be NULL). */
  size_t (*cpu_scratch)(const pv_tensor *t, int nth);
  /* Naive float64 reference kernel: every tensor (ids too) is stored as double. srcw as in pv_cpu_args. */
  void (*ref)(const pv_tensor *t, double *dst, const double *const *src, double *const *srcw, int *error);
  /* Vulkan: fills up to max dispatches, returns the count (0: unsupported). NULL: unsupported. */
  int (*vk)(const pv_tensor *t, pv_vk_dispatch *d, int max);
  size_t (*vk_scratch)(const pv_tensor *t);
  /* PV_OPF_VIEW ops: the view's first element within src[0] (NULL: 0, the whole buffer). A view at an offset must
   * start on a PV_ALIGN-byte boundary of its root (Vulkan binds it at that offset); its builder checks that. */
  int64_t (*view_offset)(const pv_tensor *t);
} pv_op_def;

/* The registry: X-macro in ops/ops.def. Op ids are PV_OP_<NAME>. */
enum {
#define PV_OP(id, def) PV_OP_##id,
#include "../ops/ops.def"
#undef PV_OP
  PV_OP_COUNT
};
extern const pv_op_def *const pv_op_table[PV_OP_COUNT];
static inline const pv_op_def *pv__opdef(int op) { return pv_op_table[op]; }
int pv__op_by_name(const char *name);

/* ------------------------------------------------------------ plans and backends */
typedef struct pv_backend pv_backend;

typedef struct pv_plan_slot {
  int64_t offset; /* byte offset in the arena (for non-var, non-view roots) */
  int64_t bytes;
  int root;     /* node id that owns the storage (self, or the view root / var) */
  int64_t voff; /* views: element offset into the root's storage (pv_op_def.view_offset; 0 for reshape) */
} pv_plan_slot;

struct pv_plan {
  pv_graph *g;
  pv_context *ctx;
  const pv_backend *be;
  void *bed;  /* backend data */
  int *order; /* node ids in execution order (only nodes that execute or are leaves in use) */
  int norder;
  unsigned char *live; /* live[id]: node is part of the plan */
  pv_plan_slot *slot;  /* per node id */
  int64_t arena_bytes;
  int64_t naive_bytes;
  int threads;
  int device;
  int profiling;
  double *prof_ms; /* per op id */
  int64_t *prof_calls;
  size_t scratch_bytes;
  int ran;
  int compiled_n; /* graph node count at compile time */
};

struct pv_backend {
  const char *name;
  /* allocate backend data after planning (arena of p->arena_bytes, scratch, pipelines) */
  pv_status (*init)(pv_plan *p);
  void (*free)(pv_plan *p);
  pv_status (*write)(pv_plan *p, pv_tensor *t, pv_dtype src_dtype, const void *data, int64_t count);
  pv_status (*read)(pv_plan *p, pv_tensor *t, pv_dtype dst_dtype, void *out, int64_t count);
  pv_status (*run)(pv_plan *p);
};
extern const pv_backend pv_backend_cpu;
extern const pv_backend pv_backend_ref;
const pv_backend *pv__vk_backend(void); /* NULL when built without Vulkan support */
int pv__vk_available(pv_context *ctx, const char **why);
pv_status pv__vk_describe(pv_context *ctx, char *buf, size_t cap);

/* Memory planner: computes p->order, p->live, p->slot, arena and naive bytes. */
pv_status pv__plan_memory(pv_plan *p, int no_inplace);

/* Elementwise strides helper for broadcasting: for an output of shape out (ndim), compute the element
 * strides of a source of shape (sn, s) right-aligned (0 where broadcast). */
void pv__bcast_strides(int ndim, const int64_t *out, int sn, const int64_t *s, int64_t *strides);

#endif
