/* Helpers shared by the op family files. */
#ifndef PV_OPS_COMMON_H
#define PV_OPS_COMMON_H
#include "../runtime/internal.h"
#include <math.h>

/* [*a, *b): this thread's share of n items */
static inline void pv_split(int64_t n, int ith, int nth, int64_t *a, int64_t *b) {
  int64_t per = (n + nth - 1) / nth;
  *a = per * ith;
  *b = *a + per;
  if (*a > n) *a = n;
  if (*b > n) *b = n;
}

/* asks for the cache lines of p[0..n) ahead of use. Row kernels (norms, softmax_grad) call it for the rows two
 * ahead: measured in the mini-MLLM step, the hardware prefetchers do not keep up with row-at-a-time kernels whose
 * rows come from L3 (rms_norm_grad ~30% faster, rms_norm ~15%) */
static inline void pv_prefetch(const float *p, int64_t n) {
  for (int64_t o = 0; o < n; o += 16)
    __builtin_prefetch(p + o, 0, 3);
}
#define PV_PREFETCH_ROWS 2

#define PV_SHAPESTR(buf, t) pv__shape_str(buf, sizeof buf, (t)->ndim, (t)->shape)

/* shape-rule error: returns the graph's status */
#define PV_FAIL(t, status, ...) (pv__gerr((t)->graph, status, __VA_ARGS__), (t)->graph->st)

/* requires src k to be f32; on failure records an error naming the op, input and dtype */
static inline int pv_need_f32(pv_tensor *t, int k) {
  if (t->src[k]->dtype == PV_F32) return 1;
  char b[128];
  pv__gerr(t->graph, PV_ERR_DTYPE, "%s: input %d has dtype %s %s, expected f32 (use pv_cast)", pv__opdef(t->op)->name,
           k, pv_dtype_name(t->src[k]->dtype), PV_SHAPESTR(b, t->src[k]));
  return 0;
}
static inline int pv_need_ids(pv_tensor *t, int k) {
  if (pv__is_int(t->src[k]->dtype)) return 1;
  char b[128];
  pv__gerr(t->graph, PV_ERR_DTYPE, "%s: input %d has dtype %s %s, expected i32 or i64 ids", pv__opdef(t->op)->name, k,
           pv_dtype_name(t->src[k]->dtype), PV_SHAPESTR(b, t->src[k]));
  return 0;
}
/* normalises a possibly negative axis; -1 if out of range */
static inline int pv_axis(int axis, int ndim) {
  if (axis < 0) axis += ndim;
  return (axis < 0 || axis >= ndim) ? -1 : axis;
}
/* reads id i from an i32/i64 buffer */
static inline int64_t pv_id_at(pv_dtype dt, const void *p, int64_t i) {
  return dt == PV_I64 ? ((const int64_t *)p)[i] : (int64_t)((const int32_t *)p)[i];
}
#endif
