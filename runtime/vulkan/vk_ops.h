/* runtime/vulkan/vk_ops.h: helpers for the ops' Vulkan dispatch functions (pv_op_def.vk). Plain C, no Vulkan
 * headers: the ops compile the same with or without Vulkan support.
 *
 * Adding an op: write shaders/NAME.comp (GLSL 450; `#extension GL_GOOGLE_include_directive : require` then
 * `#include "common.glsl"`; declare `layout(local_size_x = PV_WG) in;` before using pv_gid()), and a static
 * `xxx_vk(t, d, max)` in the op's file that fills up to max dispatches (pv_vk_begin, pv_vk_push..., pv_vk_grid) and
 * returns their count (0: unsupported for these shapes/dtypes); `vk_scratch` gives the bytes of binding -2.
 * Optional NAME_sg.comp: a variant using subgroup arithmetic, picked when the device supports it.
 *
 * Shader conventions (shaders/common.glsl): push constants are 32 uint words (pc.u[i]), fixed when the plan is
 * compiled; the elementwise and data movement shaders use workgroups of PV_VK_WG invocations on a 2-D grid
 * (pv_vk_grid) so that element counts beyond 65535 workgroups work; binding 0 is the output and 1.. the sources
 * unless a shader says otherwise; binding 10 is the status word (shaders/status.glsl: pv_report_invalid()).
 * Each binding starts at its tensor's first element; f16/bf16 are packed two per uint (an invocation writing
 * 16-bit data writes whole words), i64 is a (lo, hi) pair of uints. Ops flagged PV_OPF_INPLACE may get the same
 * memory for the output and source 0: read an element before writing it, and only from the same invocation. */
#ifndef PV_VK_OPS_H
#define PV_VK_OPS_H
#include "../internal.h"

#define PV_VK_WG 256

/* Clears d and sets the shader and its bindings (bind: -1 output, k source k, -2 scratch). */
static inline pv_vk_dispatch *pv_vk_begin(pv_vk_dispatch *d, const char *shader, int nbind, const int *bind) {
  memset(d, 0, sizeof *d);
  d->shader = shader;
  d->nbind = nbind;
  for (int i = 0; i < nbind && i < PV_MAX_SRC + 2; i++)
    d->bind[i] = bind[i];
  return d;
}

/* Workgroup counts for `threads` invocations in groups of wg, as a 2-D grid (x <= 65535). */
static inline void pv_vk_grid(pv_vk_dispatch *d, int64_t threads, int64_t wg) {
  int64_t g = threads > 0 ? (threads + wg - 1) / wg : 0;
  int64_t x = g < 65535 ? g : 65535, y = x ? (g + x - 1) / x : 0;
  d->groups[0] = (uint32_t)x;
  d->groups[1] = (uint32_t)y;
  d->groups[2] = g ? 1u : 0u;
}

static inline void pv_vk_push(pv_vk_dispatch *d, uint32_t v) {
  if (d->npush < 32) d->push[d->npush++] = v;
}
static inline void pv_vk_pushf(pv_vk_dispatch *d, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  pv_vk_push(d, u);
}

/* Row-major element strides of a contiguous shape. */
static inline void pv_vk_contig(int nd, const int64_t *shape, int64_t *st) {
  int64_t s = 1;
  for (int i = nd - 1; i >= 0; i--)
    st[i] = s, s *= shape[i];
}

/* Drops size-1 dims and merges adjacent dims that every one of the nops stride arrays walks contiguously
 * (st[k][d] == st[k][d+1] * shape[d+1]); returns the new ndim (0 for a single element). */
static inline int pv_vk_coalesce(int nd, int64_t *shape, int nops, int64_t (*st)[PV_MAX_DIMS]) {
  int n = 0;
  for (int d = 0; d < nd; d++) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      int ok = 1;
      for (int k = 0; k < nops; k++)
        if (st[k][n - 1] != st[k][d] * shape[d]) ok = 0;
      if (ok) {
        shape[n - 1] *= shape[d];
        for (int k = 0; k < nops; k++)
          st[k][n - 1] = st[k][d];
        continue;
      }
    }
    shape[n] = shape[d];
    for (int k = 0; k < nops; k++)
      st[k][n] = st[k][d];
    n++;
  }
  return n;
}

/* Pushes ndim then shape[8] then each stride array [8] (unused entries 0 / 1 for shapes). */
static inline void pv_vk_push_dims(pv_vk_dispatch *d, int nd, const int64_t *shape, int nops,
                                   int64_t (*st)[PV_MAX_DIMS]) {
  pv_vk_push(d, (uint32_t)nd);
  for (int i = 0; i < PV_MAX_DIMS; i++)
    pv_vk_push(d, i < nd ? (uint32_t)shape[i] : 1u);
  for (int k = 0; k < nops; k++)
    for (int i = 0; i < PV_MAX_DIMS; i++)
      pv_vk_push(d, i < nd ? (uint32_t)st[k][i] : 0u);
}

/* A strided gather into a contiguous output (shader "gather"): y[i] = x[soff + sum_d idx_d(i) * sst[d]] over the
 * output shape, elements of es bytes (2, 4 or 8). bind_src: the source binding (a source index). */
static inline int pv_vk_gather(pv_vk_dispatch *d, int src, int nd, const int64_t *shape, const int64_t *sst,
                               int64_t soff, int es) {
  int64_t sh[PV_MAX_DIMS], st[1][PV_MAX_DIMS], n = 1;
  for (int i = 0; i < nd; i++)
    sh[i] = shape[i], st[0][i] = sst[i], n *= shape[i];
  int m = pv_vk_coalesce(nd, sh, 1, st);
  int bind[2] = {-1, src};
  pv_vk_begin(d, "gather", 2, bind);
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, (uint32_t)es);
  pv_vk_push(d, (uint32_t)soff);
  pv_vk_push_dims(d, m, sh, 1, st);
  pv_vk_grid(d, es == 2 ? (n + 1) / 2 : n, PV_VK_WG);
  d->work = (double)n;
  return 1;
}
/* The generic reduction (shader "reduce"): x is contiguous of shape xs (nd dims); dims whose bit is set in red are
 * reduced, the output is row-major over the kept dims. kind 0: sum times scale, 1: max. Deterministic: one
 * invocation per output summing in order (Kahan), or one workgroup per output with a fixed tree.
 * Returns 0 if the dims do not fit (more than 4 kept or reduced runs after coalescing). */
static inline int pv_vk_reduce(pv_vk_dispatch *d, int nd, const int64_t *xs, unsigned red, int kind, float scale) {
  int64_t xst[PV_MAX_DIMS], ks[PV_MAX_DIMS], kst[PV_MAX_DIMS], rs[PV_MAX_DIMS], rst[PV_MAX_DIMS], M = 1, R = 1;
  int nk = 0, nr = 0, lastr = -1;
  pv_vk_contig(nd, xs, xst);
  for (int i = 0; i < nd; i++) {
    int r = (red >> i) & 1u;
    if (r)
      R *= xs[i];
    else
      M *= xs[i];
    if (xs[i] == 1) continue;
    if (r) {
      if (lastr == 1)
        rs[nr - 1] *= xs[i], rst[nr - 1] = xst[i];
      else
        rs[nr] = xs[i], rst[nr] = xst[i], nr++;
    } else {
      if (lastr == 0)
        ks[nk - 1] *= xs[i], kst[nk - 1] = xst[i];
      else
        ks[nk] = xs[i], kst[nk] = xst[i], nk++;
    }
    lastr = r;
  }
  if (nk > 4 || nr > 4) return 0;
  int wg = R >= 64 && (M <= 4096 || (nr > 0 && rst[nr - 1] == 1));
  int bind[2] = {-1, 0};
  pv_vk_begin(d, "reduce", 2, bind);
  pv_vk_push(d, (uint32_t)M);
  pv_vk_push(d, (uint32_t)R);
  pv_vk_push(d, (uint32_t)kind);
  pv_vk_pushf(d, scale);
  pv_vk_push(d, (uint32_t)nk);
  pv_vk_push(d, (uint32_t)nr);
  for (int i = 0; i < 4; i++)
    pv_vk_push(d, i < nk ? (uint32_t)ks[i] : 1u);
  for (int i = 0; i < 4; i++)
    pv_vk_push(d, i < nk ? (uint32_t)kst[i] : 0u);
  for (int i = 0; i < 4; i++)
    pv_vk_push(d, i < nr ? (uint32_t)rs[i] : 1u);
  for (int i = 0; i < 4; i++)
    pv_vk_push(d, i < nr ? (uint32_t)rst[i] : 0u);
  pv_vk_push(d, (uint32_t)wg);
  pv_vk_grid(d, wg ? M * PV_VK_WG : M, PV_VK_WG);
  d->work = (double)M * (double)(R ? R : 1);
  return 1;
}

/* Segments along the middle axis of an output viewed as [outer, N, inner] (shader "concat"): segment k ends at
 * end[k] and reads source src[k] (a source index) or is zero (src[k] < 0). es: element bytes. */
static inline int pv_vk_segments(pv_vk_dispatch *d, const pv_tensor *t, int axis, int nseg, const int64_t *end,
                                 const int *src) {
  int64_t inner = 1;
  for (int i = axis + 1; i < t->ndim; i++)
    inner *= t->shape[i];
  int bind[PV_MAX_SRC + 1] = {-1}, nb = 1, slot[PV_MAX_SRC];
  for (int k = 0; k < nseg; k++) {
    slot[k] = 0;
    if (src[k] < 0) continue;
    for (int b = 1; b < nb; b++)
      if (bind[b] == src[k]) slot[k] = b;
    if (!slot[k]) {
      if (nb > PV_MAX_SRC) return 0;
      bind[nb] = src[k];
      slot[k] = nb++;
    }
  }
  int es = (int)pv_dtype_size(t->dtype);
  pv_vk_begin(d, "concat", nb, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, (uint32_t)es);
  pv_vk_push(d, (uint32_t)t->shape[axis]);
  pv_vk_push(d, (uint32_t)inner);
  pv_vk_push(d, (uint32_t)nseg);
  for (int k = 0; k < 8; k++)
    pv_vk_push(d, k < nseg ? (uint32_t)end[k] : 0u);
  for (int k = 0; k < 8; k++)
    pv_vk_push(d, k < nseg ? (uint32_t)slot[k] : 0u);
  pv_vk_grid(d, es == 2 ? (t->numel + 1) / 2 : t->numel, PV_VK_WG);
  d->work = (double)t->numel;
  return 1;
}
#endif
