/* Template of runtime/cpu/vmath.c: the vector math and array kernels of vmath.h for one instruction set. vmath.c
 * includes it once per set with PV_VM_S (name suffix), PV_VM_N (float lanes: 4, 8 or 16) and PV_VM_TGT (a
 * target attribute, or nothing) defined. No include guard: that is the point.
 *
 * Reductions work on blocks of 16 elements = PV_VM_K native vectors ("16 logical lanes"), so that every variant
 * adds the same numbers in the same order (see vmath.h). Tails are processed through padded loads and partial
 * stores, never by reading or writing past n. */
#define PV_VM_CAT2(a, b) a##_##b
#define PV_VM_CAT(a, b) PV_VM_CAT2(a, b)
#define F(name) PV_VM_CAT(name, PV_VM_S)
#define VF F(pv_vf)
#define VI F(pv_vi)
#define INL static inline __attribute__((always_inline, unused)) PV_VM_TGT
#define KER static PV_VM_TGT
#define N PV_VM_N
#define K (16 / PV_VM_N)

typedef float VF __attribute__((vector_size(PV_VM_N * 4)));
typedef int32_t VI __attribute__((vector_size(PV_VM_N * 4)));

/* software prefetch PV_VM_PF_AHEAD floats ahead in streaming loops (once per 64-byte line: every vector with 16
 * lanes, every other with 8, ...); a prefetch past the end of an array is harmless. Used where it measured faster
 * in the mini-MLLM step: the exp-heavy maps (swiglu and its gradient 8-16%, unary); plain binary ops and AdamW
 * showed no change. */
#ifndef PV_VM_PF_AHEAD
#define PV_VM_PF_AHEAD 512
#define PV_VM_PF(p)                                                                                                    \
  (((uintptr_t)(p)&63) < 4 * N ? __builtin_prefetch((const char *)(p) + 4 * PV_VM_PF_AHEAD, 0, 3) : (void)0)
#endif

/* ------------------------------------------------------------ lane helpers */
INL VF F(bc)(float s) {
  VF v = {0};
  return v + s;
}
INL VF F(ld)(const float *p) {
  VF v;
  memcpy(&v, p, sizeof v);
  return v;
}
INL void F(st)(float *p, VF v) { memcpy(p, &v, sizeof v); }
/* p[0..n) then pad, and the first min(n, N) lanes of v to p (n may be <= 0 or >= N): masked loads and stores where
 * the instruction set has them (masked-off lanes are never accessed) */
#if PV_VM_X86 && PV_VM_N == 16
/* branch-free (the clamp is two cmovs): causal softmax rows change n every row */
INL __mmask16 F(tailmask)(int64_t n) {
  int64_t c = n < 0 ? 0 : n;
  c = c > 16 ? 16 : c;
  return (__mmask16)(0xffffu >> (16 - (int)c));
}
INL VF F(ldp)(const float *p, int64_t n, float pad) {
  return (VF)_mm512_mask_loadu_ps(_mm512_set1_ps(pad), F(tailmask)(n), p);
}
INL void F(stp)(float *p, VF v, int64_t n) { _mm512_mask_storeu_ps(p, F(tailmask)(n), (__m512)v); }
#elif PV_VM_X86 && PV_VM_N == 8
INL __m256i F(tailmask)(int64_t n) {
  int32_t c = (int32_t)(n < 0 ? 0 : n > 8 ? 8 : n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INL VF F(ldp)(const float *p, int64_t n, float pad) {
  __m256i m = F(tailmask)(n);
  return (VF)_mm256_blendv_ps(_mm256_set1_ps(pad), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
INL void F(stp)(float *p, VF v, int64_t n) { _mm256_maskstore_ps(p, F(tailmask)(n), (__m256)v); }
#else
INL VF F(ldp)(const float *p, int64_t n, float pad) {
  float b[N];
  for (int k = 0; k < N; k++)
    b[k] = k < n ? p[k] : pad;
  return F(ld)(b);
}
INL void F(stp)(float *p, VF v, int64_t n) {
  float b[N];
  F(st)(b, v);
  for (int k = 0; k < N && k < n; k++)
    p[k] = b[k];
}
#endif
INL VF F(sel)(VI m, VF a, VF b) { return (VF)((m & (VI)a) | (~m & (VI)b)); }
/* lanes k < r set */
INL VI F(below)(int64_t r) {
  VI iota, rv = {0};
  for (int k = 0; k < N; k++)
    iota[k] = k;
  return iota < rv + (int32_t)(r < N ? r : N);
}
INL VF F(vabs)(VF x) { return (VF)((VI)x & INT32_MAX); }
/* |a| with the sign of s */
INL VF F(copysign)(VF a, VF s) { return (VF)(((VI)a & INT32_MAX) | ((VI)s & INT32_MIN)); }
/* sum of 16 logical lanes (acc[0] holds lanes 0..N-1, acc[1] lanes N.., ...): a fixed f32 tree, lane l + 8 onto l,
 * then l + 4, l + 2, l + 1 (the same in every variant) */
INL double F(hsum)(const VF *acc) {
#if PV_VM_X86 && PV_VM_N >= 8 /* the same tree in registers (lane l + 8 onto l is an add of two 8-lane halves, ...) */
#if PV_VM_N == 16
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256((__m512)acc[0]), _mm512_extractf32x8_ps((__m512)acc[0], 1));
#else
  __m256 h = _mm256_add_ps((__m256)acc[0], (__m256)acc[1]);
#endif
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return (double)_mm_cvtss_f32(q);
#else
  float t[16];
  memcpy(t, acc, sizeof t);
  for (int l = 0; l < 8; l++)
    t[l] += t[l + 8];
  for (int l = 0; l < 4; l++)
    t[l] += t[l + 4];
  for (int l = 0; l < 2; l++)
    t[l] += t[l + 2];
  return (double)(t[0] + t[1]);
#endif
}

/* sqrt; a < b ? a : b and a > b ? a : b (so a NaN gives b), as the min/max instructions */
#if PV_VM_X86 && PV_VM_N == 16
INL VF F(vsqrt)(VF x) { return (VF)_mm512_sqrt_ps((__m512)x); }
INL VF F(vmin)(VF a, VF b) { return (VF)_mm512_min_ps((__m512)a, (__m512)b); }
INL VF F(vmax)(VF a, VF b) { return (VF)_mm512_max_ps((__m512)a, (__m512)b); }
#elif PV_VM_X86 && PV_VM_N == 8
INL VF F(vsqrt)(VF x) { return (VF)_mm256_sqrt_ps((__m256)x); }
INL VF F(vmin)(VF a, VF b) { return (VF)_mm256_min_ps((__m256)a, (__m256)b); }
INL VF F(vmax)(VF a, VF b) { return (VF)_mm256_max_ps((__m256)a, (__m256)b); }
#elif PV_VM_X86 && PV_VM_N == 4
INL VF F(vsqrt)(VF x) { return (VF)_mm_sqrt_ps((__m128)x); }
INL VF F(vmin)(VF a, VF b) { return (VF)_mm_min_ps((__m128)a, (__m128)b); }
INL VF F(vmax)(VF a, VF b) { return (VF)_mm_max_ps((__m128)a, (__m128)b); }
#else
INL VF F(vsqrt)(VF x) {
  for (int k = 0; k < N; k++)
    x[k] = sqrtf(x[k]);
  return x;
}
INL VF F(vmin)(VF a, VF b) { return F(sel)(a < b, a, b); }
INL VF F(vmax)(VF a, VF b) { return F(sel)(a > b, a, b); }
#endif

/* ------------------------------------------------------------ math (vmath.h documents the errors) */
INL VF F(vexp)(VF x) {
  /* x <= -104 gives +0 (as the clamped formula does) without computing it: the final products would underflow, and
   * underflow costs a microcode assist of ~100+ cycles on x86 (masked softmax lanes are -inf: every row hits it) */
  VI tiny = x <= F(bc)(-104.0f);
  VF xc = F(vmin)(F(sel)(tiny, F(bc)(0.0f), x), F(bc)(88.9f));    /* in (-104, 88.9]; NaN -> 88.9, restored */
  VF n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2), in [-150, 129] */
  VF r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  /* e^r = 1 + r + r²·P(r), P(r) = Σ c_k r^k of degree 5 by Estrin (a short dependency chain) */
  VF r2 = r * r;
  VF a = r * 1.6666665459e-1f + 5.0000001201e-1f, b = r * 8.3334519073e-3f + 4.1665795894e-2f;
  VF c = r * 1.9875691500e-4f + 1.3981999507e-3f;
  VF y = (r2 * (a + r2 * (b + r2 * c)) + r) + 1.0f;
#if PV_VM_X86 && PV_VM_N == 16
  /* y·2^n in one instruction: one rounding, as the two exact-or-once-rounded products below (y·2^n1 is normal) */
  VF e = (VF)_mm512_scalef_ps((__m512)y, (__m512)n);
#else
  VI ni = __builtin_convertvector(n, VI), n1 = ni >> 1, n2 = ni - n1; /* 2^n = 2^n1·2^n2, both normal */
  VF s1 = (VF)((n1 + 127) << 23), s2 = (VF)((n2 + 127) << 23);
  VF e = y * s1 * s2;
#endif
  return F(sel)(x != x, x, F(sel)(tiny, F(bc)(0.0f), e));
}

INL VF F(vtanh)(VF x) {
  VF ax = F(vabs)(x), z = x * x;
  VF p = z * -5.70498872745e-3f + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  p = F(copysign)(p * z * x + x, x); /* keeps tanh(-0) = -0 */
  VF e = F(vexp)(ax + ax);
  VF q = F(copysign)(1.0f - 2.0f / (e + 1.0f), x);
  return F(sel)(ax < F(bc)(0.625f), p, q); /* NaN: q */
}

INL VF F(vsigmoid)(VF x) {
  VF e = F(vexp)(-F(vabs)(x)), s = 1.0f / (1.0f + e);
  return F(sel)(x >= F(bc)(0.0f), s, e * s); /* NaN: e·s */
}

INL VF F(verf)(VF x) {
  VF ax = F(vabs)(x), s = x * x;
  /* |x| < 1: x·P(x²) */
  VF p = s * 7.87587506269e-5f - 8.01686428717e-4f;
  p = p * s + 5.18908742343e-3f;
  p = p * s - 2.68542120106e-2f;
  p = p * s + 1.12835947152e-1f;
  p = p * s - 3.76126266667e-1f;
  p = p * s + 1.12837916585f;
  p = p * x;
  /* 1 <= |x|: 1 - exp(h(t) - t²), t = min(|x|, 4), h(t) = log erfc(t) + t² in u = t - 2.5 */
  VF t = F(sel)(ax > F(bc)(4.0f), F(bc)(4.0f), ax), u = t - 2.5f;
  VF h = u * 1.63715141459e-6f - 1.33150143973e-5f;
  h = h * u + 7.72913761538e-5f;
  h = h * u - 4.20122523541e-4f;
  h = h * u + 2.16530354916e-3f;
  h = h * u - 1.08585416429e-2f;
  h = h * u + 5.61062963893e-2f;
  h = h * u - 3.52680674224e-1f;
  h = h * u - 1.55681527273f;
  VF q = F(copysign)(1.0f - F(vexp)(h - t * t), x);
  return F(sel)(ax < F(bc)(1.0f), p, q); /* NaN: t, u, h, q are NaN */
}

INL VF F(vlog)(VF x) {
  VI sub = x < F(bc)(1.17549435e-38f);
  VF xs = F(sel)(sub, x * 8388608.0f, x); /* subnormals (and <= 0, fixed up below) times 2^23 */
  VI bits = (VI)xs;
  VF e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, VF) - F(sel)(sub, F(bc)(23.0f), F(bc)(0.0f));
  VF m = (VF)((bits & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
  VI lo = m < F(bc)(0.707106781186547524f);
  e = e - F(sel)(lo, F(bc)(1.0f), F(bc)(0.0f));
  m = F(sel)(lo, m + m, m) - 1.0f; /* [sqrt(1/2) - 1, sqrt(2) - 1) */
  VF z = m * m;
  VF y = m * 7.0376836292e-2f - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + e * -2.12194440e-4f;
  y = y - 0.5f * z;
  VF r = m + y;
  r = r + e * 0.693359375f;
  /* x <= 0, inf, NaN */
  VF special = F(sel)(x == F(bc)(0.0f), F(bc)(-INFINITY), F(sel)(x == F(bc)(INFINITY), x, F(bc)(NAN)));
  return F(sel)((x > F(bc)(0.0f)) & (x < F(bc)(INFINITY)), r, special);
}

INL VF F(vlog1p)(VF x) {
  VF u = 1.0f + x;
  VF r = F(vlog)(u) * (x / (u - 1.0f));
  r = F(sel)(u == F(bc)(1.0f), x, r);
  return F(sel)(x == F(bc)(INFINITY), x, r);
}

/* ------------------------------------------------------------ maps: y = EXPR(v) (and d = dy) over n elements */
#define PV_VM_MAP1(EXPR)                                                                                               \
  do {                                                                                                                 \
    int64_t i_ = 0;                                                                                                    \
    for (; i_ + N <= n; i_ += N) {                                                                                     \
      PV_VM_PF(x + i_);                                                                                                \
      VF v = F(ld)(x + i_);                                                                                            \
      F(st)(y + i_, EXPR);                                                                                             \
    }                                                                                                                  \
    if (i_ < n) {                                                                                                      \
      VF v = F(ldp)(x + i_, n - i_, 1.0f);                                                                             \
      F(stp)(y + i_, EXPR, n - i_);                                                                                    \
    }                                                                                                                  \
  } while (0)
#define PV_VM_MAP2(EXPR)                                                                                               \
  do {                                                                                                                 \
    int64_t i_ = 0;                                                                                                    \
    for (; i_ + N <= n; i_ += N) {                                                                                     \
      PV_VM_PF(x + i_), PV_VM_PF(dy + i_);                                                                             \
      VF v = F(ld)(x + i_), d = F(ld)(dy + i_);                                                                        \
      (void)v;                                                                                                         \
      F(st)(y + i_, EXPR);                                                                                             \
    }                                                                                                                  \
    if (i_ < n) {                                                                                                      \
      VF v = F(ldp)(x + i_, n - i_, 1.0f), d = F(ldp)(dy + i_, n - i_, 0.0f);                                          \
      (void)v;                                                                                                         \
      F(stp)(y + i_, EXPR, n - i_);                                                                                    \
    }                                                                                                                  \
  } while (0)

KER void F(math)(int fn, const float *x, float *y, int64_t n) {
  switch (fn) {
  case PV_VM_EXP: PV_VM_MAP1(F(vexp)(v)); break;
  case PV_VM_TANH: PV_VM_MAP1(F(vtanh)(v)); break;
  case PV_VM_ERF: PV_VM_MAP1(F(verf)(v)); break;
  case PV_VM_LOG: PV_VM_MAP1(F(vlog)(v)); break;
  case PV_VM_LOG1P: PV_VM_MAP1(F(vlog1p)(v)); break;
  case PV_VM_SIGMOID: PV_VM_MAP1(F(vsigmoid)(v)); break;
  default: break;
  }
}

#define PV_VM_SQRT_2_PI 0.7978845608028654f
#define PV_VM_INV_SQRT_2 0.7071067811865476f
#define PV_VM_INV_SQRT_2PI 0.3989422804014327f
/* gelu_tanh: 0.5·x·(1 + tanh(u)) = x·sigmoid(2u), u = sqrt(2/pi)·(x + 0.044715·x³) */
INL VF F(gelu_u2)(VF v) { return 2.0f * (PV_VM_SQRT_2_PI * (v + 0.044715f * v * v * v)); }

KER void F(unary)(int kind, const float *x, float *y, int64_t n) {
  switch (kind) {
  case PV_NEG: PV_VM_MAP1(-v); break;
  case PV_EXP: PV_VM_MAP1(F(vexp)(v)); break;
  case PV_LOG: PV_VM_MAP1(F(vlog)(v)); break;
  case PV_SQRT: PV_VM_MAP1(F(vsqrt)(v)); break;
  case PV_RSQRT: PV_VM_MAP1(1.0f / F(vsqrt)(v)); break;
  case PV_TANH: PV_VM_MAP1(F(vtanh)(v)); break;
  case PV_SIGMOID: PV_VM_MAP1(F(vsigmoid)(v)); break;
  case PV_LOGSIGMOID: PV_VM_MAP1(F(sel)(v < F(bc)(0.0f), v, F(bc)(0.0f)) - F(vlog1p)(F(vexp)(-F(vabs)(v)))); break;
  case PV_SILU: PV_VM_MAP1(v * F(vsigmoid)(v)); break;
  case PV_GELU_TANH: PV_VM_MAP1(v * F(vsigmoid)(F(gelu_u2)(v))); break;
  case PV_GELU_ERF: PV_VM_MAP1(0.5f * v * (1.0f + F(verf)(v * PV_VM_INV_SQRT_2))); break;
  case PV_RELU: PV_VM_MAP1(F(sel)(v > F(bc)(0.0f), v, F(bc)(0.0f))); break;
  case PV_SQUARE: PV_VM_MAP1(v * v); break;
  case PV_ABS: PV_VM_MAP1(F(vabs)(v)); break;
  default: break;
  }
}

INL VF F(tanh_d)(VF v) {
  VF th = F(vtanh)(v);
  return 1.0f - th * th;
}
INL VF F(sigmoid_d)(VF v) {
  VF s = F(vsigmoid)(v);
  return s * (1.0f - s);
}
INL VF F(silu_d)(VF v) {
  VF s = F(vsigmoid)(v);
  return s * (1.0f + v * (1.0f - s));
}
/* d/dx x·sigmoid(2u) = s + 2·x·s·(1 - s)·u', u' = sqrt(2/pi)·(1 + 3·0.044715·x²) */
INL VF F(gelu_tanh_d)(VF v) {
  VF s = F(vsigmoid)(F(gelu_u2)(v));
  return s + 2.0f * v * (s * (1.0f - s)) * (PV_VM_SQRT_2_PI * (1.0f + 3.0f * 0.044715f * v * v));
}
INL VF F(gelu_erf_d)(VF v) {
  return 0.5f * (1.0f + F(verf)(v * PV_VM_INV_SQRT_2)) + v * F(vexp)(-0.5f * v * v) * PV_VM_INV_SQRT_2PI;
}
INL VF F(sign)(VF v) {
  return F(sel)(v > F(bc)(0.0f), F(bc)(1.0f), F(sel)(v < F(bc)(0.0f), F(bc)(-1.0f), F(bc)(0.0f)));
}

KER void F(unary_grad)(int kind, const float *x, const float *dy, float *y, int64_t n) {
  switch (kind) {
  case PV_NEG: PV_VM_MAP2(d * -1.0f); break;
  case PV_EXP: PV_VM_MAP2(d * F(vexp)(v)); break;
  case PV_LOG: PV_VM_MAP2(d * (1.0f / v)); break;
  case PV_SQRT: PV_VM_MAP2(d * (0.5f / F(vsqrt)(v))); break;
  case PV_RSQRT: PV_VM_MAP2(d * (-0.5f / (v * F(vsqrt)(v)))); break;
  case PV_TANH: PV_VM_MAP2(d * F(tanh_d)(v)); break;
  case PV_SIGMOID: PV_VM_MAP2(d * F(sigmoid_d)(v)); break;
  case PV_LOGSIGMOID: PV_VM_MAP2(d * F(vsigmoid)(-v)); break;
  case PV_SILU: PV_VM_MAP2(d * F(silu_d)(v)); break;
  case PV_GELU_TANH: PV_VM_MAP2(d * F(gelu_tanh_d)(v)); break;
  case PV_GELU_ERF: PV_VM_MAP2(d * F(gelu_erf_d)(v)); break;
  case PV_RELU: PV_VM_MAP2(d * F(sel)(v > F(bc)(0.0f), F(bc)(1.0f), F(bc)(0.0f))); break;
  case PV_SQUARE: PV_VM_MAP2(d * (2.0f * v)); break;
  case PV_ABS: PV_VM_MAP2(d * F(sign)(v)); break;
  default: break;
  }
}

/* ------------------------------------------------------------ swiglu (ops/swiglu.c): the same expressions as
 * unary silu then binary mul (forward), and as mul then unary_grad silu (backward), so the fused op is bitwise equal */
KER void F(swiglu)(const float *a, const float *b, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    PV_VM_PF(a + i), PV_VM_PF(b + i);
    VF v = F(ld)(a + i);
    F(st)(y + i, (v * F(vsigmoid)(v)) * F(ld)(b + i));
  }
  if (i < n) {
    VF v = F(ldp)(a + i, n - i, 1.0f);
    F(stp)(y + i, (v * F(vsigmoid)(v)) * F(ldp)(b + i, n - i, 1.0f), n - i);
  }
}
/* which 0: y = (dy·b)·silu'(a); 1: y = dy·silu(a) (b unused) */
KER void F(swiglu_grad)(int which, const float *a, const float *b, const float *dy, float *y, int64_t n) {
  int64_t i = 0;
  if (which == 0) {
    for (; i + N <= n; i += N) {
      PV_VM_PF(a + i), PV_VM_PF(b + i), PV_VM_PF(dy + i);
      VF v = F(ld)(a + i);
      F(st)(y + i, (F(ld)(dy + i) * F(ld)(b + i)) * F(silu_d)(v));
    }
    if (i < n) {
      VF v = F(ldp)(a + i, n - i, 1.0f), d = F(ldp)(dy + i, n - i, 0.0f) * F(ldp)(b + i, n - i, 0.0f);
      F(stp)(y + i, d * F(silu_d)(v), n - i);
    }
  } else {
    for (; i + N <= n; i += N) {
      PV_VM_PF(a + i), PV_VM_PF(dy + i);
      VF v = F(ld)(a + i);
      F(st)(y + i, F(ld)(dy + i) * (v * F(vsigmoid)(v)));
    }
    if (i < n) {
      VF v = F(ldp)(a + i, n - i, 1.0f);
      F(stp)(y + i, F(ldp)(dy + i, n - i, 0.0f) * (v * F(vsigmoid)(v)), n - i);
    }
  }
}

/* both gradients in one pass, sigmoid(a) computed once: ya = (dy·b)·silu'(a), yb = dy·silu(a), the expressions of
 * which 0 and 1 (so the same bits) */
KER void F(swiglu_grad2)(const float *a, const float *b, const float *dy, float *ya, float *yb, int64_t n) {
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    PV_VM_PF(a + i), PV_VM_PF(b + i), PV_VM_PF(dy + i);
    VF v = F(ld)(a + i), d = F(ld)(dy + i), s = F(vsigmoid)(v);
    F(st)(ya + i, (d * F(ld)(b + i)) * (s * (1.0f + v * (1.0f - s))));
    F(st)(yb + i, d * (v * s));
  }
  if (i < n) {
    VF v = F(ldp)(a + i, n - i, 1.0f), d = F(ldp)(dy + i, n - i, 0.0f), s = F(vsigmoid)(v);
    F(stp)(ya + i, (d * F(ldp)(b + i, n - i, 0.0f)) * (s * (1.0f + v * (1.0f - s))), n - i);
    F(stp)(yb + i, d * (v * s), n - i);
  }
}

/* ------------------------------------------------------------ binary */
#define PV_VM_BIN(OP)                                                                                                  \
  do {                                                                                                                 \
    int64_t i_ = 0;                                                                                                    \
    if (sa && sb) {                                                                                                    \
      for (; i_ + N <= n; i_ += N)                                                                                     \
        F(st)(y + i_, F(ld)(a + i_) OP F(ld)(b + i_));                                                                 \
      if (i_ < n) F(stp)(y + i_, F(ldp)(a + i_, n - i_, 1.0f) OP F(ldp)(b + i_, n - i_, 1.0f), n - i_);                \
    } else if (sa) {                                                                                                   \
      VF bv = F(bc)(b[0]);                                                                                             \
      for (; i_ + N <= n; i_ += N)                                                                                     \
        F(st)(y + i_, F(ld)(a + i_) OP bv);                                                                            \
      if (i_ < n) F(stp)(y + i_, F(ldp)(a + i_, n - i_, 1.0f) OP bv, n - i_);                                          \
    } else if (sb) {                                                                                                   \
      VF av = F(bc)(a[0]);                                                                                             \
      for (; i_ + N <= n; i_ += N)                                                                                     \
        F(st)(y + i_, av OP F(ld)(b + i_));                                                                            \
      if (i_ < n) F(stp)(y + i_, av OP F(ldp)(b + i_, n - i_, 1.0f), n - i_);                                          \
    } else {                                                                                                           \
      float r_ = a[0] OP b[0];                                                                                         \
      for (; i_ < n; i_++)                                                                                             \
        y[i_] = r_;                                                                                                    \
    }                                                                                                                  \
  } while (0)

KER void F(binary)(int op, const float *a, int sa, const float *b, int sb, float *y, int64_t n) {
  switch (op) {
  case 0: PV_VM_BIN(+); break;
  case 1: PV_VM_BIN(-); break;
  case 2: PV_VM_BIN(*); break;
  default: PV_VM_BIN(/); break;
  }
}

/* ------------------------------------------------------------ column sums */
KER void F(sum_rows)(const float *x, int64_t rows, int64_t ld, float *y, int64_t n) {
  int64_t j = 0;
  for (; j + 4 * N <= n; j += 4 * N) {
    VF a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int64_t r = 0; r < rows; r++) {
      const float *p = x + r * ld + j;
      a0 += F(ld)(p);
      a1 += F(ld)(p + N);
      a2 += F(ld)(p + 2 * N);
      a3 += F(ld)(p + 3 * N);
    }
    F(st)(y + j, a0);
    F(st)(y + j + N, a1);
    F(st)(y + j + 2 * N, a2);
    F(st)(y + j + 3 * N, a3);
  }
  for (; j < n; j += N) {
    VF a0 = {0};
    if (j + N <= n)
      for (int64_t r = 0; r < rows; r++)
        a0 += F(ld)(x + r * ld + j);
    else
      for (int64_t r = 0; r < rows; r++)
        a0 += F(ldp)(x + r * ld + j, n - j, 0.0f);
    F(stp)(y + j, a0, n - j);
  }
}

/* ------------------------------------------------------------ blocked reductions
 * PV_VM_REDUCE(PAD, EXPR): acc[k] += EXPR over blocks of 16, where EXPR uses L(p) to load the native vector at
 * p (full, or padded with PAD in the last block) and o = offset of the vector; flushed to *s every 8 blocks. */
#define PV_VM_REDUCE(s, acc, PAD, EXPR)                                                                                \
  do {                                                                                                                 \
    int blk_ = 0;                                                                                                      \
    for (int64_t j_ = 0; j_ < n; j_ += 16) {                                                                           \
      if (j_ + 16 <= n) {                                                                                              \
        for (int k_ = 0; k_ < K; k_++) {                                                                               \
          int64_t o = j_ + k_ * N;                                                                                     \
          (void)o;                                                                                                     \
          acc[k_] += EXPR(F(ld));                                                                                      \
        }                                                                                                              \
      } else {                                                                                                         \
        for (int k_ = 0; k_ < K; k_++) {                                                                               \
          int64_t o = j_ + k_ * N, rem_ = n - o;                                                                       \
          (void)rem_;                                                                                                  \
          acc[k_] += EXPR(PV_VM_LDP_##PAD);                                                                            \
        }                                                                                                              \
      }                                                                                                                \
      if (++blk_ == 8) {                                                                                               \
        *(s) += F(hsum)(acc);                                                                                          \
        for (int k_ = 0; k_ < K; k_++)                                                                                 \
          acc[k_] = (VF){0};                                                                                           \
        blk_ = 0;                                                                                                      \
      }                                                                                                                \
    }                                                                                                                  \
    *(s) += F(hsum)(acc);                                                                                              \
  } while (0)
#define PV_VM_LDP_ZERO(p) F(ldp)(p, rem_, 0.0f)

#define E_SUM(L) L(x + o)
KER double F(sum)(const float *x, int64_t n) {
  VF acc[K] = {{0}};
  double s = 0;
  PV_VM_REDUCE(&s, acc, ZERO, E_SUM);
  return s;
}
#undef E_SUM
#define E_SUMSQ(L) (L(x + o) * L(x + o))
KER double F(sumsq)(const float *x, int64_t n) {
  VF acc[K] = {{0}};
  double s = 0;
  PV_VM_REDUCE(&s, acc, ZERO, E_SUMSQ);
  return s;
}
#undef E_SUMSQ
/* padding with mu makes the padded terms (mu - mu)² = 0 */
#define E_DEV(L) ((L(x + o) - mu) * (L(x + o) - mu))
#define PV_VM_LDP_MU(p) F(ldp)(p, rem_, mu)
KER double F(sumsq_dev)(const float *x, float mu, int64_t n) {
  VF acc[K] = {{0}};
  double s = 0;
  PV_VM_REDUCE(&s, acc, MU, E_DEV);
  return s;
}
#undef E_DEV
#undef PV_VM_LDP_MU
#define E_DOT(L) (L(a + o) * L(b + o))
KER double F(dot)(const float *a, const float *b, int64_t n) {
  VF acc[K] = {{0}};
  double s = 0;
  PV_VM_REDUCE(&s, acc, ZERO, E_DOT);
  return s;
}
#undef E_DOT

/* ------------------------------------------------------------ softmax rows */
INL float F(scale_add_max_i)(float *z, const float *x, float sc, const float *mask, int64_t n) {
  VF mv = F(bc)(-INFINITY), scv = F(bc)(sc);
  for (int64_t j = 0; j < n; j += N) {
    if (j + N <= n) {
      VF v = scv * F(ld)(x + j) + (mask ? F(ld)(mask + j) : F(bc)(0.0f));
      F(st)(z + j, v);
      mv = F(sel)(v > mv, v, mv);
    } else { /* padded lanes are -inf: they change neither the max nor z */
      VF v = scv * F(ldp)(x + j, n - j, 0.0f) + (mask ? F(ldp)(mask + j, n - j, 0.0f) : F(bc)(0.0f));
      F(stp)(z + j, v, n - j);
      v = F(sel)(F(below)(n - j), v, F(bc)(-INFINITY));
      mv = F(sel)(v > mv, v, mv);
    }
  }
  float m = -INFINITY, t[N];
  F(st)(t, mv);
  for (int k = 0; k < N; k++)
    m = t[k] > m ? t[k] : m;
  return m;
}

KER void F(fill)(float *y, float v, int64_t n) {
  VF vv = F(bc)(v);
  int64_t j = 0;
  for (; j + N <= n; j += N)
    F(st)(y + j, vv);
  if (j < n) F(stp)(y + j, vv, n - j);
}

#define PV_VM_LDP_NINF(p) F(ldp)(p, rem_, -INFINITY)
/* stores the lanes of v that lie below n at y + o; returns v */
INL VF F(exp_st)(float *y, int64_t o, int64_t n, VF v) {
  if (o + N <= n)
    F(st)(y + o, v);
  else
    F(stp)(y + o, v, n - o);
  return v;
}
INL double F(exp_sum_i)(float *y, const float *x, float m, int64_t n) {
  VF acc[K] = {{0}};
  double s = 0;
  if (y) {
#define E_EXPST(L) F(exp_st)(y, o, n, F(vexp)(L(x + o) - m))
    PV_VM_REDUCE(&s, acc, NINF, E_EXPST);
#undef E_EXPST
  } else {
#define E_EXP(L) F(vexp)(L(x + o) - m)
    PV_VM_REDUCE(&s, acc, NINF, E_EXP);
#undef E_EXP
  }
  return s;
}
KER float F(scale_add_max)(float *z, const float *x, float sc, const float *mask, int64_t n) {
  return F(scale_add_max_i)(z, x, sc, mask, n);
}
KER double F(exp_sum)(float *y, const float *x, float m, int64_t n) { return F(exp_sum_i)(y, x, m, n); }

/* max of the lanes of v (none NaN): a shuffle tree, exact whatever the order */
INL float F(hmax)(VF v) {
#if PV_VM_X86 && PV_VM_N == 16
  return _mm512_reduce_max_ps((__m512)v);
#else
  float t[N], m = -INFINITY;
  F(st)(t, v);
  for (int k = 0; k < N; k++)
    m = t[k] > m ? t[k] : m;
  return m;
#endif
}

/* softmax rows of nt <= PV_VM_SHORT_ROW entries (attention rows), two at a time: each row stays in registers from
 * the load to the store, one pass instead of four, and no branch changes from row to row (causal rows: n grows by
 * one each row; ceil(nt / N) vectors every row, lanes at or past n are -inf, so exp gives 0 there, and the stores
 * fill the excluded tail; only the exp of a wholly excluded vector is skipped, a branch that changes every N rows).
 * The two rows' operations are interleaved, so one row's latency chains (max and sum trees, exp, the division)
 * overlap the other's work; one row alone is passed twice. Same operations in the same order as the long-row path,
 * so the same bits: the exp sum puts native vector i into acc[i % K], then F(hsum), as PV_VM_REDUCE does for up to
 * 8 blocks (the extra vectors add +0). Returns bit r set when row r has a finite max; a row without one is left
 * undefined (the caller fills it). */
#define PV_VM_SHORT_ROW 128
KER int F(softmax_row2_short)(float *const *y, const float *const *x, const float *const *mask, const int64_t *n,
                              int64_t nt, float sc, int lg) {
  enum { NV = PV_VM_SHORT_ROW / N };
  VF v[2][NV] = {{{0}}}, mv[2] = {F(bc)(-INFINITY), F(bc)(-INFINITY)}, scv = F(bc)(sc), ninf = F(bc)(-INFINITY);
  int nv = (int)((nt + N - 1) / N);
#pragma GCC unroll 32
  for (int i = 0; i < NV; i++) {
    if (i >= nv) break;
    int64_t o = (int64_t)i * N;
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
      VF z = scv * F(ldp)(x[r] + o, n[r] - o, 0.0f) + (mask[r] ? F(ldp)(mask[r] + o, n[r] - o, 0.0f) : F(bc)(0.0f));
      v[r][i] = F(sel)(F(below)(n[r] - o), z, ninf);
      mv[r] = F(sel)(v[r][i] > mv[r], v[r][i], mv[r]);
    }
  }
  float m[2] = {F(hmax)(mv[0]), F(hmax)(mv[1])};
  VF acc[2][K] = {{{0}}};
#pragma GCC unroll 32
  for (int i = 0; i < NV; i++) {
    if (i >= nv) break;
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
      if ((int64_t)i * N >= n[r]) { /* wholly excluded (a causal row's tail): exp would give 0, adding +0 */
        if (!lg) v[r][i] = F(bc)(0.0f);
        continue;
      }
      VF e = F(vexp)(v[r][i] - m[r]);
      acc[r][i % K] += e;
      if (!lg) v[r][i] = e;
    }
  }
  VF f[2];
#pragma GCC unroll 2
  for (int r = 0; r < 2; r++) {
    double s = 0;
    s += F(hsum)(acc[r]);
    f[r] = F(bc)(lg ? m[r] + (float)log(s) : (float)(1.0 / s));
  }
#pragma GCC unroll 32
  for (int i = 0; i < NV; i++) {
    if (i >= nv) break;
    int64_t o = (int64_t)i * N;
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++)
      F(stp)(y[r] + o, lg ? v[r][i] - f[r] : v[r][i] * f[r], nt - o);
  }
  return (m[0] != -INFINITY) | (m[1] != -INFINITY) << 1;
}

/* one softmax (log: log_softmax) row of n entries in place of the scalar passes: z = sc·x + mask into y, max,
 * exp sum, normalise. Returns 0 (y untouched past z) when every z is -inf. */
KER int F(softmax_row)(float *y, const float *x, float sc, const float *mask, int64_t n, int64_t nt, int lg) {
  if (nt <= PV_VM_SHORT_ROW) { /* the two-row kernel on this row twice (the same values to the same place) */
    float *yy[2] = {y, y};
    const float *xx[2] = {x, x}, *mm[2] = {mask, mask};
    int64_t nn[2] = {n, n};
    return F(softmax_row2_short)(yy, xx, mm, nn, nt, sc, lg) & 1;
  }
  float m = F(scale_add_max_i)(y, x, sc, mask, n);
  if (m == -INFINITY) return 0;
  F(fill)(y + n, lg ? -INFINITY : 0.0f, nt - n);
  if (lg) {
    float ls = m + (float)log(F(exp_sum_i)(NULL, y, m, n));
    for (int64_t j = 0; j < n; j += N)
      if (j + N <= n)
        F(st)(y + j, F(ld)(y + j) - ls);
      else
        F(stp)(y + j, F(ldp)(y + j, n - j, 0.0f) - ls, n - j);
  } else {
    float inv = (float)(1.0 / F(exp_sum_i)(y, y, m, n));
    for (int64_t j = 0; j < n; j += N)
      if (j + N <= n)
        F(st)(y + j, F(ld)(y + j) * inv);
      else
        F(stp)(y + j, F(ldp)(y + j, n - j, 0.0f) * inv, n - j);
  }
  return 1;
}

KER int F(softmax_row2)(float *const *y, const float *const *x, const float *const *mask, const int64_t *n, int64_t nt,
                        float sc, int lg) {
  if (nt <= PV_VM_SHORT_ROW) return F(softmax_row2_short)(y, x, mask, n, nt, sc, lg);
  int ok = F(softmax_row)(y[0], x[0], sc, mask[0], n[0], nt, lg);
  return ok | F(softmax_row)(y[1], x[1], sc, mask[1], n[1], nt, lg) << 1;
}

/* sums of the non-excluded entries: Σ dy (log) or Σ dy·y (padded entries have dy = 0: they add 0) */
#define E_GLOG(L) F(sel)(L(y + o) != F(bc)(-INFINITY), L(dy + o), F(bc)(0.0f))
#define E_G(L) F(sel)(L(y + o) != F(bc)(0.0f), L(dy + o) * L(y + o), F(bc)(0.0f))
/* softmax_grad rows of nt <= PV_VM_SHORT_ROW, two at a time, in registers and without a branch on n (as
 * softmax_row2_short): lanes at or past n load y as the excluded value and dy as 0, so they add 0 and give dx = 0 */
KER void F(softmax_grad_row2_short)(int lg, const float *const *y, const float *const *dy, float *const *dx,
                                    const int64_t *n, int64_t nt, float sc) {
  enum { NV = PV_VM_SHORT_ROW / N };
  VF yv[2][NV] = {{{0}}}, dv[2][NV] = {{{0}}}, acc[2][K] = {{{0}}}, zero = F(bc)(0.0f);
  VF ex = F(bc)(lg ? -INFINITY : 0.0f);
  int nv = (int)((nt + N - 1) / N);
#pragma GCC unroll 32
  for (int i = 0; i < NV; i++) {
    if (i >= nv) break;
    int64_t o = (int64_t)i * N;
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
      yv[r][i] = F(ldp)(y[r] + o, n[r] - o, lg ? -INFINITY : 0.0f);
      dv[r][i] = F(ldp)(dy[r] + o, n[r] - o, 0.0f);
      acc[r][i % K] += lg ? F(sel)(yv[r][i] != ex, dv[r][i], zero) : F(sel)(yv[r][i] != ex, dv[r][i] * yv[r][i], zero);
    }
  }
  VF fs[2], scv = F(bc)(sc);
#pragma GCC unroll 2
  for (int r = 0; r < 2; r++) {
    double s = 0;
    s += F(hsum)(acc[r]);
    fs[r] = F(bc)((float)s);
  }
#pragma GCC unroll 32
  for (int i = 0; i < NV; i++) {
    if (i >= nv) break;
    int64_t o = (int64_t)i * N;
#pragma GCC unroll 2
    for (int r = 0; r < 2; r++) {
      VF q = lg ? scv * (dv[r][i] - F(vexp)(yv[r][i]) * fs[r]) : scv * yv[r][i] * (dv[r][i] - fs[r]);
      F(stp)(dx[r] + o, F(sel)(yv[r][i] == ex, zero, q), nt - o);
    }
  }
}

KER void F(softmax_grad_row)(int lg, const float *y, const float *dy, float *dx, float sc, int64_t n, int64_t nt) {
  if (nt <= PV_VM_SHORT_ROW) { /* the two-row kernel on this row twice */
    const float *yy[2] = {y, y}, *dd[2] = {dy, dy};
    float *xx[2] = {dx, dx};
    int64_t nn[2] = {n, n};
    F(softmax_grad_row2_short)(lg, yy, dd, xx, nn, nt, sc);
    return;
  }
  F(fill)(dx + n, 0.0f, nt - n);
  VF acc[K] = {{0}};
  double s = 0;
  if (lg)
    PV_VM_REDUCE(&s, acc, ZERO, E_GLOG);
  else
    PV_VM_REDUCE(&s, acc, ZERO, E_G);
  VF fs = F(bc)((float)s), scv = F(bc)(sc), zero = F(bc)(0.0f);
  int64_t j = 0;
  if (lg) {
    for (; j + N <= n; j += N) {
      VF yv = F(ld)(y + j), d = F(ld)(dy + j);
      F(st)(dx + j, F(sel)(yv == F(bc)(-INFINITY), zero, scv * (d - F(vexp)(yv) * fs)));
    }
    if (j < n) {
      VF yv = F(ldp)(y + j, n - j, -INFINITY), d = F(ldp)(dy + j, n - j, 0.0f);
      F(stp)(dx + j, F(sel)(yv == F(bc)(-INFINITY), zero, scv * (d - F(vexp)(yv) * fs)), n - j);
    }
  } else {
    for (; j + N <= n; j += N) {
      VF yv = F(ld)(y + j), d = F(ld)(dy + j);
      F(st)(dx + j, F(sel)(yv == zero, zero, scv * yv * (d - fs)));
    }
    if (j < n) {
      VF yv = F(ldp)(y + j, n - j, 0.0f), d = F(ldp)(dy + j, n - j, 0.0f);
      F(stp)(dx + j, F(sel)(yv == zero, zero, scv * yv * (d - fs)), n - j);
    }
  }
}

KER void F(softmax_grad_row2)(int lg, const float *const *y, const float *const *dy, float *const *dx, const int64_t *n,
                              int64_t nt, float sc) {
  if (nt <= PV_VM_SHORT_ROW) {
    F(softmax_grad_row2_short)(lg, y, dy, dx, n, nt, sc);
    return;
  }
  F(softmax_grad_row)(lg, y[0], dy[0], dx[0], sc, n[0], nt);
  F(softmax_grad_row)(lg, y[1], dy[1], dx[1], sc, n[1], nt);
}
#undef E_GLOG
#undef E_G

/* ------------------------------------------------------------ norm rows */
KER void F(norm_apply)(const float *x, float mu, float rs, const float *w, const float *b, float *y, int64_t n) {
  VF muv = F(bc)(mu), rsv = F(bc)(rs);
  int64_t j = 0;
  for (; j < n; j += N) {
    int full = j + N <= n;
    VF v = full ? F(ld)(x + j) : F(ldp)(x + j, n - j, 0.0f);
    v = (v - muv) * rsv;
    if (w) v = v * (full ? F(ld)(w + j) : F(ldp)(w + j, n - j, 0.0f));
    if (b) v = v + (full ? F(ld)(b + j) : F(ldp)(b + j, n - j, 0.0f));
    if (full)
      F(st)(y + j, v);
    else
      F(stp)(y + j, v, n - j);
  }
}

INL VF F(norm_g)(const float *w, const float *dy, int64_t o, int64_t rem) {
  VF d = rem >= N ? F(ld)(dy + o) : F(ldp)(dy + o, rem, 0.0f);
  return w ? d * (rem >= N ? F(ld)(w + o) : F(ldp)(w + o, rem, 0.0f)) : d;
}
INL VF F(norm_xh)(const float *x, int64_t o, int64_t rem, VF muv, VF rsv) {
  return ((rem >= N ? F(ld)(x + o) : F(ldp)(x + o, rem, 0.0f)) - muv) * rsv;
}
KER void F(norm_grad_sums)(const float *x, const float *w, const float *dy, float mu, float rs, int64_t n, double *sg,
                           double *sgx) {
  VF a[K] = {{0}}, b[K] = {{0}}, muv = F(bc)(mu), rsv = F(bc)(rs);
  double s1 = 0, s2 = 0;
  int blk = 0;
  for (int64_t j = 0; j < n; j += 16) {
    for (int k = 0; k < K; k++) {
      int64_t o = j + k * N, rem = n - o;
      VF g = F(norm_g)(w, dy, o, rem); /* 0 in the padding */
      a[k] += g;
      b[k] += g * F(norm_xh)(x, o, rem, muv, rsv);
    }
    if (++blk == 8) {
      s1 += F(hsum)(a);
      s2 += F(hsum)(b);
      for (int k = 0; k < K; k++)
        a[k] = b[k] = (VF){0};
      blk = 0;
    }
  }
  *sg = s1 + F(hsum)(a);
  *sgx = s2 + F(hsum)(b);
}

KER void F(norm_grad_apply)(const float *x, const float *w, const float *dy, float mu, float rs, float mg, float mgx,
                            float *dx, int64_t n) {
  VF muv = F(bc)(mu), rsv = F(bc)(rs), mgv = F(bc)(mg), mgxv = F(bc)(mgx);
  for (int64_t j = 0; j < n; j += N) {
    VF g = F(norm_g)(w, dy, j, n - j), xh = F(norm_xh)(x, j, n - j, muv, rsv);
    VF r = rsv * (g - mgv - xh * mgxv);
    if (j + N <= n)
      F(st)(dx + j, r);
    else
      F(stp)(dx + j, r, n - j);
  }
}

/* ------------------------------------------------------------ rope */
KER void F(rope_pairs)(const float *x, float *y, const float *c, const float *s, int64_t n, int64_t h, int64_t heads,
                       int64_t ld) {
  for (int64_t q = 0; q < heads; q++, x += ld, y += ld)
    for (int64_t j = 0; j < n; j += N) {
      int full = j + N <= n;
      VF x1 = full ? F(ld)(x + j) : F(ldp)(x + j, n - j, 0.0f);
      VF x2 = full ? F(ld)(x + h + j) : F(ldp)(x + h + j, n - j, 0.0f);
      VF cv = full ? F(ld)(c + j) : F(ldp)(c + j, n - j, 0.0f);
      VF sv = full ? F(ld)(s + j) : F(ldp)(s + j, n - j, 0.0f);
      VF y1 = x1 * cv - x2 * sv, y2 = x2 * cv + x1 * sv; /* both read before either is written (in place) */
      if (full) {
        F(st)(y + j, y1);
        F(st)(y + h + j, y2);
      } else {
        F(stp)(y + j, y1, n - j);
        F(stp)(y + h + j, y2, n - j);
      }
    }
}

/* ------------------------------------------------------------ AdamW (the scalar loop's operation order) */
INL void F(adamw_step)(float *p, const float *g, float *m, float *v, int64_t o, int64_t rem, const pv_vm_adamw *s) {
  int full = rem >= N;
  VF pi = full ? F(ld)(p + o) : F(ldp)(p + o, rem, 0.0f), gi = full ? F(ld)(g + o) : F(ldp)(g + o, rem, 0.0f);
  VF mi = full ? F(ld)(m + o) : F(ldp)(m + o, rem, 0.0f), vi = full ? F(ld)(v + o) : F(ldp)(v + o, rem, 0.0f);
  if (s->scaled) gi = gi * s->gscale;
  pi = pi * s->decay;
  mi = s->small ? mi + s->w1 * (gi - mi) : gi - (gi - mi) * (1.0f - s->w1);
  vi = vi * s->b2;
  vi = vi + s->c2 * gi * gi;
  VF denom = F(vsqrt)(vi) / s->bc2_sqrt + s->eps;
  pi = pi + s->neg_step * mi / denom;
  if (full) {
    F(st)(m + o, mi);
    F(st)(v + o, vi);
    F(st)(p + o, pi);
  } else {
    F(stp)(m + o, mi, rem);
    F(stp)(v + o, vi, rem);
    F(stp)(p + o, pi, rem);
  }
}
KER void F(adamw)(float *p, const float *g, float *m, float *v, int64_t n, const pv_vm_adamw *s) {
  pv_vm_adamw c = *s; /* a local copy: the stores to p, m, v cannot alias it */
  for (int64_t j = 0; j < n; j += N)
    F(adamw_step)(p, g, m, v, j, n - j, &c);
}

#undef PV_VM_CAT2
#undef PV_VM_CAT
#undef F
#undef VF
#undef VI
#undef INL
#undef KER
#undef N
#undef K
#undef PV_VM_MAP1
#undef PV_VM_MAP2
#undef PV_VM_BIN
#undef PV_VM_REDUCE
#undef PV_VM_LDP_ZERO
#undef PV_VM_LDP_NINF
#undef PV_VM_SQRT_2_PI
#undef PV_VM_INV_SQRT_2
#undef PV_VM_INV_SQRT_2PI
