/* Run-time selection of the vector kernels (vmath.h): vmath_isa.h compiled for AVX-512, AVX2+FMA and the baseline. */
#include "vmath.h"
#include "pivot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && !defined(PV_VM_GENERIC) /* PV_VM_GENERIC: test the portable path */
#define PV_VM_X86 1
#include <immintrin.h>
#else
#define PV_VM_X86 0
#endif

#define PV_VM_S sse
#define PV_VM_N 4
#define PV_VM_TGT
#include "vmath_isa.h"
#undef PV_VM_S
#undef PV_VM_N
#undef PV_VM_TGT

#if PV_VM_X86
#define PV_VM_S avx2
#define PV_VM_N 8
#define PV_VM_TGT __attribute__((target("avx2,fma")))
#include "vmath_isa.h"
#undef PV_VM_S
#undef PV_VM_N
#undef PV_VM_TGT

#define PV_VM_S avx512
#define PV_VM_N 16
#define PV_VM_TGT __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma")))
#include "vmath_isa.h"
#undef PV_VM_S
#undef PV_VM_N
#undef PV_VM_TGT
#endif

/* ------------------------------------------------------------ level */
static int vm_level = -1; /* accessed atomically; -1: not chosen yet */

int pv__vm_max_level(void) {
#if PV_VM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("fma"))
    return PV_VM_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PV_VM_AVX2;
#endif
  return PV_VM_SSE;
}

const char *pv__vm_level_name(int level) {
  return level == PV_VM_AVX512 ? "avx512" : level == PV_VM_AVX2 ? "avx2" : "sse";
}

static int default_level(void) {
  int l = pv__vm_max_level();
  const char *e = getenv("PIVOT_VMATH");
  if (e && *e) {
    int want = !strcmp(e, "sse")      ? PV_VM_SSE
               : !strcmp(e, "avx2")   ? PV_VM_AVX2
               : !strcmp(e, "avx512") ? PV_VM_AVX512
                                      : -1;
    if (want < 0)
      fprintf(stderr, "pivot: PIVOT_VMATH='%s' is not one of sse, avx2, avx512; ignored\n", e);
    else if (want < l)
      l = want;
  }
  return l;
}

int pv__vm_level(void) {
  int l = __atomic_load_n(&vm_level, __ATOMIC_RELAXED);
  if (l < 0) {
    l = default_level();
    __atomic_store_n(&vm_level, l, __ATOMIC_RELAXED);
  }
  return l;
}

int pv__vm_set_level(int level) {
  int l = level < 0 ? default_level() : level;
  int mx = pv__vm_max_level();
  if (l > mx) l = mx;
  __atomic_store_n(&vm_level, l, __ATOMIC_RELAXED);
  return l;
}

/* ------------------------------------------------------------ dispatch */
#if PV_VM_X86
#define CALL(fn, args)                                                                                                 \
  (pv__vm_level() == PV_VM_AVX512 ? fn##_avx512 args : pv__vm_level() == PV_VM_AVX2 ? fn##_avx2 args : fn##_sse args)
#else
#define CALL(fn, args) fn##_sse args
#endif

void pv__vm_math(int fn, const float *x, float *y, int64_t n) { CALL(math, (fn, x, y, n)); }
void pv__vm_unary(int kind, const float *x, float *y, int64_t n) { CALL(unary, (kind, x, y, n)); }
void pv__vm_unary_grad(int kind, const float *x, const float *dy, float *y, int64_t n) {
  CALL(unary_grad, (kind, x, dy, y, n));
}
void pv__vm_swiglu(const float *a, const float *b, float *y, int64_t n) { CALL(swiglu, (a, b, y, n)); }
void pv__vm_swiglu_grad(int which, const float *a, const float *b, const float *dy, float *y, int64_t n) {
  CALL(swiglu_grad, (which, a, b, dy, y, n));
}
void pv__vm_binary(int op, const float *a, int sa, const float *b, int sb, float *y, int64_t n) {
  CALL(binary, (op, a, sa, b, sb, y, n));
}
void pv__vm_sum_rows(const float *x, int64_t rows, int64_t ld, float *y, int64_t n) {
  CALL(sum_rows, (x, rows, ld, y, n));
}
double pv__vm_sum(const float *x, int64_t n) { return CALL(sum, (x, n)); }
double pv__vm_sumsq(const float *x, int64_t n) { return CALL(sumsq, (x, n)); }
double pv__vm_sumsq_dev(const float *x, float mu, int64_t n) { return CALL(sumsq_dev, (x, mu, n)); }
double pv__vm_dot(const float *a, const float *b, int64_t n) { return CALL(dot, (a, b, n)); }
float pv__vm_scale_add_max(float *z, const float *x, float sc, const float *mask, int64_t n) {
  return CALL(scale_add_max, (z, x, sc, mask, n));
}
void pv__vm_fill(float *y, float v, int64_t n) { CALL(fill, (y, v, n)); }
double pv__vm_exp_sum(float *y, const float *x, float m, int64_t n) { return CALL(exp_sum, (y, x, m, n)); }
int pv__vm_softmax_row(float *y, const float *x, float sc, const float *mask, int64_t n, int64_t nt, int lg) {
  return CALL(softmax_row, (y, x, sc, mask, n, nt, lg));
}
void pv__vm_swiglu_grad2(const float *a, const float *b, const float *dy, float *ya, float *yb, int64_t n) {
  CALL(swiglu_grad2, (a, b, dy, ya, yb, n));
}
void pv__vm_softmax_grad_row(int lg, const float *y, const float *dy, float *dx, float sc, int64_t n, int64_t nt) {
  CALL(softmax_grad_row, (lg, y, dy, dx, sc, n, nt));
}
int pv__vm_softmax_row2(float *const *y, const float *const *x, const float *const *mask, const int64_t *n, int64_t nt,
                        float sc, int lg) {
  return CALL(softmax_row2, (y, x, mask, n, nt, sc, lg));
}
void pv__vm_softmax_grad_row2(int lg, const float *const *y, const float *const *dy, float *const *dx, const int64_t *n,
                              int64_t nt, float sc) {
  CALL(softmax_grad_row2, (lg, y, dy, dx, n, nt, sc));
}
void pv__vm_norm_apply(const float *x, float mu, float rs, const float *w, const float *b, float *y, int64_t n) {
  CALL(norm_apply, (x, mu, rs, w, b, y, n));
}
void pv__vm_norm_grad_sums(const float *x, const float *w, const float *dy, float mu, float rs, int64_t n, double *sg,
                           double *sgx) {
  CALL(norm_grad_sums, (x, w, dy, mu, rs, n, sg, sgx));
}
void pv__vm_norm_grad_apply(const float *x, const float *w, const float *dy, float mu, float rs, float mg, float mgx,
                            float *dx, int64_t n) {
  CALL(norm_grad_apply, (x, w, dy, mu, rs, mg, mgx, dx, n));
}
void pv__vm_rope_pairs(const float *x, float *y, const float *c, const float *s, int64_t n, int64_t h, int64_t heads,
                       int64_t ld) {
  CALL(rope_pairs, (x, y, c, s, n, h, heads, ld));
}
void pv__vm_adamw(float *p, const float *g, float *m, float *v, int64_t n, const pv_vm_adamw *s) {
  CALL(adamw, (p, g, m, v, n, s));
}
