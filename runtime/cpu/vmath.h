/* Vectorised float32 math and array kernels for the CPU backend's non-GEMM ops.
 *
 * Each kernel is written once (runtime/cpu/vmath_isa.h) and compiled for three instruction sets, chosen at run time
 * with __builtin_cpu_supports: AVX-512 (F+VL+DQ+BW, 16 lanes), AVX2+FMA (8 lanes) and the build's baseline SSE
 * (4 lanes; SSE2 suffices). PIVOT_VMATH=sse|avx2|avx512 caps the level (never above what the CPU has).
 * The variants give bitwise identical results (NaN payloads aside): the math is lane-wise without FMA contraction
 * (ISO C mode: -ffp-contract=off), and reductions accumulate 16 logical lanes over blocks of 16 elements whatever the
 * native width (f32 within blocks of at most 128 elements, summed by a fixed tree, then float64 across blocks), so a
 * result depends only on the data (and on the caller's fixed chunking), never on the CPU.
 *
 * Functions, with their max error over all 2^32 float inputs against float64 libm (tests/test_vmath.c checks a
 * sample of every sign and exponent, dense grids and the special values against bounds slightly above these):
 *   exp      Cephes degree-5 polynomial (Estrin) on [-ln2/2, ln2/2], 2^n applied in two steps so results stay
 *            correct into the subnormal range; +inf above ~88.72, 0 below ~-103.97.             1.00 ulp
 *   tanh     x + x³P(x²) for |x| < 0.625 (Cephes), else 1 - 2/(exp(2|x|) + 1) with x's sign.     1.33 ulp
 *   erf      x·P(x²) on |x| < 1 (degree 6); 1 - exp(h(t) - t²) with t = min(|x|, 4) and
 *            h = log erfc(t) + t² (degree 8 in t - 2.5, Chebyshev fit on [1, 4]), x's sign.      2.55 ulp
 *   log      Cephes: mantissa in [sqrt(1/2), sqrt(2)), degree-8 polynomial; subnormals scaled first;
 *            log(0) = -inf, log(x < 0) = NaN, log(inf) = inf.                                      0.83 ulp
 *   log1p    Kahan: u = 1 + x, log1p(x) = x if u == 1 else log(u)·x/(u - 1).                       2.47 ulp
 *   sigmoid  e = exp(-|x|), s = 1/(1 + e); x >= 0: s, else e·s (accurate in both tails).           2.83 ulp
 * NaN in gives NaN out everywhere; ±inf give the limits.
 *
 * All array kernels take element counts; y may equal x (in place) but must not partially overlap it. */
#ifndef PV_VMATH_H
#define PV_VMATH_H
#include <stdint.h>

enum { PV_VM_SSE = 0, PV_VM_AVX2 = 1, PV_VM_AVX512 = 2 };
/* the level the kernels use now (cached; PIVOT_VMATH caps it) */
int pv__vm_level(void);
/* the best level this CPU supports */
int pv__vm_max_level(void);
/* forces a level (clamped to pv__vm_max_level; -1: back to the default); returns the level in effect. For tests. */
int pv__vm_set_level(int level);
/* "sse", "avx2", "avx512" */
const char *pv__vm_level_name(int level);

/* y = f(x) for the functions above */
enum { PV_VM_EXP = 0, PV_VM_TANH, PV_VM_ERF, PV_VM_LOG, PV_VM_LOG1P, PV_VM_SIGMOID, PV_VM_FN_COUNT };
void pv__vm_math(int fn, const float *x, float *y, int64_t n);

/* unary op kernels (kind: pv_unary_kind): y = f(x); y = dy·f'(x) (ops/elementwise.c has the formulas) */
void pv__vm_unary(int kind, const float *x, float *y, int64_t n);
void pv__vm_unary_grad(int kind, const float *x, const float *dy, float *y, int64_t n);

/* swiglu (ops/swiglu.c): y = silu(a)·b; which 0: y = (dy·b)·silu'(a), 1: y = dy·silu(a) (b unused), bitwise equal
 * to the unary / binary kernels composed */
void pv__vm_swiglu(const float *a, const float *b, float *y, int64_t n);
void pv__vm_swiglu_grad(int which, const float *a, const float *b, const float *dy, float *y, int64_t n);
/* both: ya = the which-0 result, yb = the which-1 result (the same bits), one pass */
void pv__vm_swiglu_grad2(const float *a, const float *b, const float *dy, float *ya, float *yb, int64_t n);

/* y[i] = a[i·sa] (op) b[i·sb], op 0..3 = + - * /, sa and sb 0 (broadcast a[0] / b[0]) or 1 */
void pv__vm_binary(int op, const float *a, int sa, const float *b, int sb, float *y, int64_t n);

/* y[0..n) = v */
void pv__vm_fill(float *y, float v, int64_t n);

/* y[j] = Σ_r x[r·ld + j] for j < n, each column summed in row order (bitwise equal to the plain loop) */
void pv__vm_sum_rows(const float *x, int64_t rows, int64_t ld, float *y, int64_t n);

/* Σ x, Σ x², Σ (x - mu)², Σ a·b (blocked, see above) */
double pv__vm_sum(const float *x, int64_t n);
double pv__vm_sumsq(const float *x, int64_t n);
double pv__vm_sumsq_dev(const float *x, float mu, int64_t n);
double pv__vm_dot(const float *a, const float *b, int64_t n);

/* softmax rows. z[j] = sc·x[j] (+ mask[j]); returns max z (NaNs skipped, -inf if none). z may equal x. */
float pv__vm_scale_add_max(float *z, const float *x, float sc, const float *mask, int64_t n);
/* e[j] = exp(x[j] - m), stored into y when y != NULL; returns Σ e (blocked) */
double pv__vm_exp_sum(float *y, const float *x, float m, int64_t n);
/* a whole softmax row of nt entries whose first n (<= nt) take part (a causal row): z = sc·x (+ mask), then
 * y = exp(z - max z) / Σ (lg: log_softmax, z - max z - log Σ) for j < n, and y = 0 (lg: -inf) for n <= j < nt;
 * x[j] and mask[j] are read for j < n only. Returns 0 when every z is -inf, y then undefined (the caller fills the
 * row). y may equal x. Rows of nt <= 128 are computed in registers in one pass (the same bits). */
int pv__vm_softmax_row(float *y, const float *x, float sc, const float *mask, int64_t n, int64_t nt, int lg);
/* softmax_grad row of nt entries, the first n taking part: lg ? dx = sc·(dy - exp(y)·Σ dy) : dx = sc·y·(dy - Σ dy·y),
 * sums and dx skip the excluded entries (y == -inf for lg, y == 0 otherwise), whose dx is 0, as for j >= n */
void pv__vm_softmax_grad_row(int lg, const float *y, const float *dy, float *dx, float sc, int64_t n, int64_t nt);
/* two rows at once (row r: y[r], x[r], mask[r] (may be NULL), n[r]; the same nt), each with the bits of
 * pv__vm_softmax_row, interleaved so one row's latency hides behind the other's work; returns bit r set when row r
 * had a finite max (a row without one is undefined: the caller fills it) */
int pv__vm_softmax_row2(float *const *y, const float *const *x, const float *const *mask, const int64_t *n, int64_t nt,
                        float sc, int lg);
/* two rows of pv__vm_softmax_grad_row at once (the same bits) */
void pv__vm_softmax_grad_row2(int lg, const float *const *y, const float *const *dy, float *const *dx, const int64_t *n,
                              int64_t nt, float sc);

/* layer / rms norm rows: y = (x - mu)·rs [·w] [+ b] (w, b may be NULL) */
void pv__vm_norm_apply(const float *x, float mu, float rs, const float *w, const float *b, float *y, int64_t n);
/* g = dy [·w], xh = (x - mu)·rs: *sg = Σ g, *sgx = Σ g·xh (blocked) */
void pv__vm_norm_grad_sums(const float *x, const float *w, const float *dy, float mu, float rs, int64_t n, double *sg,
                           double *sgx);
/* dx = rs·(g - mg - xh·mgx) */
void pv__vm_norm_grad_apply(const float *x, const float *w, const float *dy, float mu, float rs, float mg, float mgx,
                            float *dx, int64_t n);

/* rope, rotate-half: y1 = x1·c - x2·s, y2 = x2·c + x1·s over n pairs (x1 = x[0..n), x2 = x[h..h+n), same for y),
 * for `heads` such groups ld floats apart */
void pv__vm_rope_pairs(const float *x, float *y, const float *c, const float *s, int64_t n, int64_t h, int64_t heads,
                       int64_t ld);

/* AdamW on n elements (ops/optim.c has the math; f32 scalars, same operation order as the scalar loop) */
typedef struct {
  float decay, w1, b2, c2, neg_step, bc2_sqrt, eps;
  int small;  /* |w1| < 0.5: m + w1·(g - m), else g - (g - m)·(1 - w1) */
  int scaled; /* g·gscale (f32) first */
  float gscale;
} pv_vm_adamw;
void pv__vm_adamw(float *p, const float *g, float *m, float *v, int64_t n, const pv_vm_adamw *s);
#endif
