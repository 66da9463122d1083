/* pivot's own SGEMM (see sgemm.h), GotoBLAS/BLIS structure, row-major C[M, N] = op(A) · op(B):
 *   for each cell of C (M or N cut into whole micro-tiles, never K; thread i takes cell i, then claim in turn)
 *     for jc (NC columns)   for pc (a KC slice of K: fixed by K alone)   op(B) block: packed into KC x NR panels
 *       for ic (MR rows)    op(A) panel: packed MR x KC (a[k * AS + i]), or read in place
 *         for jr (NR)       micro-kernel: MR x NR accumulators += op(A)[ic.., k] (broadcast) x op(B)[k, jr..]
 * What is read in place (measured on the mini-MLLM shapes: packing costs more than it saves there):
 *   op(B) = B (tb = 0, ta = 0): B's rows, every full NR-wide panel, unless ldb is a multiple of 1024 floats; else
 * packed (tb = 1: with 16 x 16, AVX2 8 x 8, transposes). op(A) = A (ta = 0): A's rows (full MR-row tiles); ta = 1: A's
 * columns when the panel is used by one NR panel only or K is short, else packed (a strided copy). Edge tiles: the
 * partial B panel and A panel are packed with zero padding (AVX-512: A through a 16 x 16 transpose), kernels exist for
 * 12, 8 and 4 rows and 2 or 1 vectors of columns, and stores are masked to the mr x nr valid part. The first K slice
 * stores its tile, later ones add theirs to C (beta = 0 overall). Every C element is one FMA chain per K slice, summed
 * slice by slice, the same wherever its tile lies: the result is bitwise the same for every thread count and split.
 * AVX-512 kernel: 12 x 32 (24 zmm accumulators, a B row in 2 zmm, A broadcast from memory by the FMA); AVX2+FMA:
 * 6 x 16. Their code lives in functions with target attributes (the build targets x86-64-v2), picked at run time
 * with __builtin_cpu_supports. Scratch: on the stack up to STACK_FLOATS, else one posix_memalign per call
 * (failure: OpenBLAS). */
#include "sgemm.h"
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define PV_GEMM_X86 1
#endif

/* longest K slice: 256 measured ~0.5-1% faster than 384 in the mini-MLLM steps (its NN and TN GEMMs: a kc x NR panel
 * of B and the A tile then fit in L1 together) */
#define KC_MAX 256
#define BBLOCK_FLOATS (128 * 1024)    /* packed op(B) block: KC x NC floats (512 KiB, a quarter of an L2) */
#define MIN_MACS_PER_THREAD (1 << 18) /* ~2 us of work: less is not worth waking a thread */
#define STACK_FLOATS 8192             /* scratch up to 32 KiB lives on the stack */
#define GEMM_OWN_CELLS 64             /* up to this many cells, thread i first claims cell i */

typedef void (*gemm_kern)(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *b, int64_t bs, float *c,
                          int64_t ldc, int mr, int nr, int first);
typedef void (*gemm_pack_b)(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *bp);
typedef void (*gemm_pack_a)(int ta, int64_t mr, int64_t kc, const float *A, int64_t lda, float *ap);

typedef struct gemm_arch {
  int mr, nr, as; /* tile rows, columns; packed A panel stride per k */
  gemm_kern kern; /* a[i * rs + k * cs]: rs = 1 (a packed panel, cs = as, or ta's A in place), or cs = 1 (A's
                   * rows, mr = MR); b[k * bs + j]: bs = NR (a packed panel) or ldb (B's rows) */
  gemm_pack_b pack_b;
  gemm_pack_a pack_a;
} gemm_arch;

#ifdef PV_GEMM_X86
/* ------------------------------------------------------------ AVX-512: 12 x 32 */
#define T512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define MR5 12
#define NR5 32
#define AS5 16 /* packed A: a[k * AS5 + i], one aligned 64-byte slot per k */

/* r[c] <- column c of the 16 x 16 matrix whose rows are r[0..15] */
T512 static inline void tr16_512(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0x88);
    t[c + 4] = _mm512_shuffle_f32x4(r[c], r[c + 4], 0xDD);
    t[c + 8] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0x88);
    t[c + 12] = _mm512_shuffle_f32x4(r[c + 8], r[c + 12], 0xDD);
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; c++) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0x88);
    r[c + 8] = _mm512_shuffle_f32x4(t[c], t[c + 8], 0xDD);
  }
}

/* op(B)[0:kc, 0:nc] (B points at op(B)[pc, jc]) -> ceil(nc / 32) panels of kc x 32, zero-padded columns */
T512 static void pack_b_512(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *bp) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR5) {
    int nr = (int)(nc - j0 < NR5 ? nc - j0 : NR5);
    float *d = bp + j0 * kc;
    if (!tb) {
      __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
      __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
      const float *s = B + j0;
      for (int64_t k = 0; k < kc; k++, s += ldb, d += NR5) {
        _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, s));
        _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, s + 16));
      }
      continue;
    }
    /* op(B)[k, n] = B[n * ldb + k]: 16 x 16 transposes */
    for (int h = 0; h < 2; h++) {
      int nh = nr - 16 * h; /* valid rows of this half (none: the kernel reads only the first half) */
      if (nh <= 0) break;
      const float *s = B + (j0 + 16 * h) * ldb;
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        int kn = (int)(kc - k0 < 16 ? kc - k0 : 16);
        __mmask16 mk = kn == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kn) - 1);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
          r[i] = i < nh ? _mm512_maskz_loadu_ps(mk, s + i * ldb + k0) : _mm512_setzero_ps();
        tr16_512(r);
        float *dk = d + k0 * NR5 + 16 * h;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
          if (i < kn) _mm512_store_ps(dk + i * NR5, r[i]);
      }
    }
  }
}

/* op(A)[0:mr, 0:kc] (A points at op(A)[ic, pc]) -> ap[k * AS5 + i], rows mr..AS5-1 zero */
T512 static void pack_a_512(int ta, int64_t mr, int64_t kc, const float *A, int64_t lda, float *ap) {
  if (ta) { /* op(A)[i, k] = A[k * lda + i] */
    __mmask16 m = (__mmask16)((1u << mr) - 1);
    for (int64_t k = 0; k < kc; k++, A += lda, ap += AS5)
      _mm512_store_ps(ap, _mm512_maskz_loadu_ps(m, A));
    return;
  }
  for (int64_t k0 = 0; k0 < kc; k0 += 16) { /* op(A)[i, k] = A[i * lda + k]: 16 x 16 transposes (AS5 = 16) */
    int kn = (int)(kc - k0 < 16 ? kc - k0 : 16);
    __mmask16 mk = kn == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kn) - 1);
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
      r[i] = i < mr ? _mm512_maskz_loadu_ps(mk, A + i * lda + k0) : _mm512_setzero_ps();
    tr16_512(r);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
      if (i < kn) _mm512_store_ps(ap + (k0 + i) * AS5, r[i]);
  }
}

/* rows R (<= MR5) of the tile, V zmm columns (NR5 / 16 or 1); PACKED: a[k * cs + i], else a[i * rs + k] */
#define KERN_512_BODY(R, V, PACKED)                                                                                    \
  do {                                                                                                                 \
    __m512 acc[R][V];                                                                                                  \
    const float *ag[4] = {a, a + 3 * rs, a + 6 * rs, a + 9 * rs}; /* rows in place: row i at ag[i / 3] + i % 3 * rs */ \
    _Pragma("GCC unroll 16") for (int i = 0; i < (R); i++) _Pragma("GCC unroll 2") for (int v = 0; v < (V); v++)       \
        acc[i][v] = _mm512_setzero_ps();                                                                               \
    _Pragma("GCC unroll 2") for (int64_t k = 0; k < kc; k++) {                                                         \
      __m512 bv[V];                                                                                                    \
      _Pragma("GCC unroll 2") for (int v = 0; v < (V); v++) bv[v] = _mm512_loadu_ps(b + 16 * v);                       \
      _Pragma("GCC unroll 16") for (int i = 0; i < (R); i++) {                                                         \
        __m512 ai = _mm512_set1_ps((PACKED) ? a[i] : ag[i / 3][i % 3 * rs]);                                           \
        _Pragma("GCC unroll 2") for (int v = 0; v < (V); v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);       \
      }                                                                                                                \
      if (PACKED)                                                                                                      \
        a += cs;                                                                                                       \
      else                                                                                                             \
        _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++) ag[g]++;                                                   \
      b += bs;                                                                                                         \
    }                                                                                                                  \
    _Pragma("GCC unroll 16") for (int i = 0; i < (R); i++) {                                                           \
      if (i >= mr) break;                                                                                              \
      float *ci = c + i * ldc;                                                                                         \
      _Pragma("GCC unroll 2") for (int v = 0; v < (V); v++) {                                                          \
        __m512 x = acc[i][v];                                                                                          \
        if (!first) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk[v], ci + 16 * v));                                   \
        _mm512_mask_storeu_ps(ci + 16 * v, mk[v], x);                                                                  \
      }                                                                                                                \
    }                                                                                                                  \
  } while (0)

/* c[0:mr, 0:nr] (+)= a-panel x b-panel over kc, a[i * rs + k * cs] (rs = 1 or cs = 1, mr = MR5 when rs > 1) */
T512 static void kern_512(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *b, int64_t bs, float *c,
                          int64_t ldc, int mr, int nr, int first) {
  __mmask16 mk[2];
  mk[0] = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  mk[1] = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
  if (rs != 1) {
    if (nr > 16)
      KERN_512_BODY(MR5, 2, 0);
    else
      KERN_512_BODY(MR5, 1, 0);
  } else if (nr > 16) {
    if (mr > 8)
      KERN_512_BODY(MR5, 2, 1);
    else if (mr > 4)
      KERN_512_BODY(8, 2, 1);
    else
      KERN_512_BODY(4, 2, 1);
  } else {
    if (mr > 8)
      KERN_512_BODY(MR5, 1, 1);
    else if (mr > 4)
      KERN_512_BODY(8, 1, 1);
    else
      KERN_512_BODY(4, 1, 1);
  }
}

/* ------------------------------------------------------------ AVX2 + FMA: 6 x 16 */
#define T256 __attribute__((target("avx2,fma")))
#define MR2 6
#define NR2 16
#define AS2 8 /* packed A: a[k * AS2 + i], one aligned 32-byte slot per k */

/* r[c] <- column c of the 8 x 8 matrix whose rows are r[0..7] */
T256 static inline void tr8_256(__m256 r[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int g = 0; g < 2; g++) {
    r[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    t[c] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x20);
    t[c + 4] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x31);
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; c++)
    r[c] = t[c];
}

/* lanes 0..n-1 set (n may be <= 0 or >= 8) */
T256 static inline __m256i mask_256(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* op(B)[0:kc, 0:nc] -> ceil(nc / 16) panels of kc x 16, zero-padded columns */
T256 static void pack_b_256(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *bp) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR2) {
    int nr = (int)(nc - j0 < NR2 ? nc - j0 : NR2);
    float *d = bp + j0 * kc;
    if (!tb) {
      const float *s = B + j0;
      if (nr == NR2)
        for (int64_t k = 0; k < kc; k++, s += ldb, d += NR2) {
          _mm256_store_ps(d, _mm256_loadu_ps(s));
          _mm256_store_ps(d + 8, _mm256_loadu_ps(s + 8));
        }
      else {
        __m256i m0 = mask_256(nr), m1 = mask_256(nr - 8);
        for (int64_t k = 0; k < kc; k++, s += ldb, d += NR2) {
          _mm256_store_ps(d, _mm256_maskload_ps(s, m0));
          _mm256_store_ps(d + 8, _mm256_maskload_ps(s + 8, m1));
        }
      }
      continue;
    }
    for (int h = 0; h < 2; h++) { /* op(B)[k, n] = B[n * ldb + k]: 8 x 8 transposes */
      int nh = nr - 8 * h;
      const float *s = B + (j0 + 8 * h) * ldb;
      for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        int kn = (int)(kc - k0 < 8 ? kc - k0 : 8);
        __m256i mk = mask_256(kn);
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
          r[i] = i < nh ? _mm256_maskload_ps(s + i * ldb + k0, mk) : _mm256_setzero_ps();
        tr8_256(r);
        float *dk = d + k0 * NR2 + 8 * h;
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
          if (i < kn) _mm256_store_ps(dk + i * NR2, r[i]);
      }
    }
  }
}

/* op(A)[0:mr, 0:kc] -> ap[k * AS2 + i], rows mr..AS2-1 zero */
T256 static void pack_a_256(int ta, int64_t mr, int64_t kc, const float *A, int64_t lda, float *ap) {
  if (ta) {
    __m256i m = mask_256((int)mr);
    for (int64_t k = 0; k < kc; k++, A += lda, ap += AS2)
      _mm256_store_ps(ap, _mm256_maskload_ps(A, m));
    return;
  }
  for (int64_t k0 = 0; k0 < kc; k0 += 8) { /* op(A)[i, k] = A[i * lda + k]: 8 x 8 transposes (AS2 = 8) */
    int kn = (int)(kc - k0 < 8 ? kc - k0 : 8);
    __m256i mk = mask_256(kn);
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      r[i] = i < mr ? _mm256_maskload_ps(A + i * lda + k0, mk) : _mm256_setzero_ps();
    tr8_256(r);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      if (i < kn) _mm256_store_ps(ap + (k0 + i) * AS2, r[i]);
  }
}

/* c[0:mr, 0:nr] (+)= a-panel x b-panel over kc (6 rows always computed: packed panels are zero-padded) */
T256 static void kern_256(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *b, int64_t bs, float *c,
                          int64_t ldc, int mr, int nr, int first) {
  __m256 c0[MR2], c1[MR2];
#pragma GCC unroll 8
  for (int i = 0; i < MR2; i++)
    c0[i] = c1[i] = _mm256_setzero_ps();
  if (rs == 1) {
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
      __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
      for (int i = 0; i < MR2; i++) {
        __m256 ai = _mm256_broadcast_ss(a + i);
        c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
      }
      a += cs;
      b += bs;
    }
  } else {
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
      __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
      for (int i = 0; i < MR2; i++) {
        __m256 ai = _mm256_broadcast_ss(a + i * rs);
        c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
      }
      a += 1;
      b += bs;
    }
  }
  __m256i m0 = mask_256(nr), m1 = mask_256(nr - 8);
#pragma GCC unroll 8
  for (int i = 0; i < MR2; i++) {
    if (i >= mr) break;
    float *ci = c + i * ldc;
    __m256 v0 = c0[i], v1 = c1[i];
    if (!first) {
      v0 = _mm256_add_ps(v0, _mm256_maskload_ps(ci, m0));
      v1 = _mm256_add_ps(v1, _mm256_maskload_ps(ci + 8, m1));
    }
    _mm256_maskstore_ps(ci, m0, v0);
    _mm256_maskstore_ps(ci + 8, m1, v1);
  }
}

static const gemm_arch arch_512 = {MR5, NR5, AS5, kern_512, pack_b_512, pack_a_512};
static const gemm_arch arch_256 = {MR2, NR2, AS2, kern_256, pack_b_256, pack_a_256};
#endif

/* ------------------------------------------------------------ dispatch */
static int g_default = PV_GEMM_OPENBLAS; /* written once under pthread_once */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int cpu_has(int v) {
#ifdef PV_GEMM_X86
  if (v == PV_GEMM_AVX512)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  if (v == PV_GEMM_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return v == PV_GEMM_OPENBLAS;
}

static void choose_default(void) {
#ifdef PV_GEMM_X86
  __builtin_cpu_init();
#endif
  int v = cpu_has(PV_GEMM_AVX512) ? PV_GEMM_AVX512 : cpu_has(PV_GEMM_AVX2) ? PV_GEMM_AVX2 : PV_GEMM_OPENBLAS;
  const char *e = getenv("PIVOT_GEMM");
  if (e && *e) {
    int w = !strcmp(e, "avx512")     ? PV_GEMM_AVX512
            : !strcmp(e, "avx2")     ? PV_GEMM_AVX2
            : !strcmp(e, "openblas") ? PV_GEMM_OPENBLAS
                                     : 0;
    if (w && cpu_has(w))
      v = w;
    else /* said once per process (the choice is made once) */
      fprintf(stderr, "pivot: PIVOT_GEMM='%s' is not one of avx512, avx2, openblas%s; using %s\n", e,
              w ? " that this CPU supports" : "", pv__sgemm_name(v));
  }
  g_default = v;
}

int pv__sgemm_default(void) {
  pthread_once(&g_once, choose_default);
  return g_default;
}

int pv__sgemm_supported(int v) {
  if (v == PV_GEMM_AUTO) return 1;
  pthread_once(&g_once, choose_default); /* __builtin_cpu_init done */
  return cpu_has(v);
}

const char *pv__sgemm_name(int v) {
  if (v == PV_GEMM_AUTO) v = pv__sgemm_default();
  return v == PV_GEMM_AVX512 ? "avx512" : v == PV_GEMM_AVX2 ? "avx2" : "openblas";
}

/* ------------------------------------------------------------ driver */
typedef struct gemm_job {
  const gemm_arch *ar;
  int ta, tb;
  int64_t M, N, K;
  const float *A, *B;
  int64_t lda, ldb, ldc;
  float *C;
  int64_t kcb, nc;                    /* K slice length, columns per packed B block */
  int tm, tn;                         /* cells: a tm x tn grid over C */
  int T;                              /* threads */
  int bin;                            /* op(B) = B read in place (full NR-wide panels) */
  int64_t mstep, nstep;               /* rows / columns per cell (multiples of MR / NR) */
  atomic_int next;                    /* the next cell to claim */
  atomic_uchar taken[GEMM_OWN_CELLS]; /* cell i taken (cells <= GEMM_OWN_CELLS: thread i tries cell i first) */
  float *buf;
  size_t per; /* floats of scratch per thread: B block, then the A panel */
} gemm_job;

static void gemm_cell(const gemm_job *j, int cell, int ith) {
  const gemm_arch *ar = j->ar;
  const int MR = ar->mr, NR = ar->nr;
  int64_t m0 = (int64_t)(cell / j->tn) * j->mstep, n0 = (int64_t)(cell % j->tn) * j->nstep;
  int64_t m1 = m0 + j->mstep < j->M ? m0 + j->mstep : j->M, n1 = n0 + j->nstep < j->N ? n0 + j->nstep : j->N;
  if (m0 >= m1 || n0 >= n1) return;
  float *bp = j->buf + (size_t)ith * j->per, *ap = bp + j->per - (size_t)(ar->as * j->kcb);
  const float *A = j->A, *B = j->B;
  int64_t lda = j->lda, ldb = j->ldb, ldc = j->ldc, K = j->K;
  for (int64_t jc = n0; jc < n1; jc += j->nc) {
    int64_t ncur = n1 - jc < j->nc ? n1 - jc : j->nc;
    for (int64_t pc = 0; pc < K; pc += j->kcb) {
      int64_t kc = K - pc < j->kcb ? K - pc : j->kcb;
      int64_t nfull = j->bin ? ncur / NR * NR : 0; /* columns read from B in place */
      if (nfull < ncur)
        ar->pack_b(j->tb, kc, ncur - nfull, j->tb ? B + (jc + nfull) * ldb + pc : B + pc * ldb + jc + nfull, ldb, bp);
      for (int64_t ic = m0; ic < m1; ic += MR) {
        int mr = (int)(m1 - ic < MR ? m1 - ic : MR);
        const float *a = ap;
        int64_t rs = 1, cs = ar->as;
        if (!j->ta && mr == MR)
          a = A + ic * lda + pc, rs = lda, cs = 1;
        else if (j->ta && mr == MR && (ncur <= NR || kc <= 64)) /* A's columns in place: packing would not pay */
          a = A + pc * lda + ic, cs = lda;
        else
          ar->pack_a(j->ta, mr, kc, j->ta ? A + pc * lda + ic : A + ic * lda + pc, lda, ap);
        float *c = j->C + ic * ldc + jc;
        for (int64_t jr = 0; jr < ncur; jr += NR)
          ar->kern(kc, a, rs, cs, jr < nfull ? B + pc * ldb + jc + jr : bp + (jr - nfull) * kc, jr < nfull ? ldb : NR,
                   c + jr, ldc, mr, (int)(ncur - jr < NR ? ncur - jr : NR), pc == 0);
      }
    }
  }
}

/* thread i first takes cell i (its own rows), then threads claim the cells left in turn (a thread that starts late,
 * e.g. descheduled on a busy machine, leaves its cell to the others); which thread computes a cell does not change
 * its result */
static void gemm_worker(void *arg, int ith, int nth) {
  gemm_job *j = arg;
  (void)nth;
  if (ith >= j->T) return;
  int cells = j->tm * j->tn, own = cells <= GEMM_OWN_CELLS;
  if (own && ith < cells && !atomic_exchange_explicit(&j->taken[ith], 1, memory_order_relaxed)) gemm_cell(j, ith, ith);
  for (int cell; (cell = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < cells;)
    if (!own || !atomic_exchange_explicit(&j->taken[cell], 1, memory_order_relaxed)) gemm_cell(j, cell, ith);
}

static void sgemm_blas(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                       int64_t ldb, float *C, int64_t ldc, int nth) {
  if (openblas_get_num_threads() != nth) openblas_set_num_threads(nth);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              1.0f, A, (int)lda, B, (int)ldb, 0.0f, C, (int)ldc);
}

void pv__sgemm_ex(int variant, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                  const float *B, int64_t ldb, float *C, int64_t ldc, int nth, pv_gemm_parallel parallel, void *pool) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++)
      memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
    return;
  }
  if (nth < 1) nth = 1;
  if (variant == PV_GEMM_AUTO)
    variant = pv__sgemm_default();
  else if (!pv__sgemm_supported(variant))
    variant = PV_GEMM_OPENBLAS;
  const gemm_arch *ar = NULL;
#ifdef PV_GEMM_X86
  if (variant == PV_GEMM_AVX512)
    ar = &arch_512;
  else if (variant == PV_GEMM_AVX2)
    ar = &arch_256;
#endif
  if (!ar) {
    sgemm_blas(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, nth);
    return;
  }
  gemm_job j = {
      .ar = ar, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .A = A, .B = B, .lda = lda, .ldb = ldb, .ldc = ldc, .C = C};
  const int MR = ar->mr, NR = ar->nr;
  int64_t nks = (K + KC_MAX - 1) / KC_MAX;
  j.kcb = (K + nks - 1) / nks;
  /* B's rows in place (measured faster than packing them on the mini-MLLM's forward and input-gradient shapes),
   * unless rows 4 KiB apart (or a multiple): a kc x NR panel of those falls into a few cache sets (measured ~25%
   * slower, e.g. 1024^3). Not with ta (weight gradients, K = all the rows of a batch): there B's long, cold,
   * strided panels are re-read for every A tile; packed, the TN GEMMs of the mini-MLLM step ran ~15% faster. */
  j.bin = !tb && !ta && ldb % 1024 != 0;
  /* threads: each gets at least MIN_MACS_PER_THREAD multiply-adds; C is cut into T cells, tm x tn, minimising the
   * largest cell's compute (~32 MACs a cycle) plus its traffic (op(B) columns: ~2 a cycle packed, else ~0.5; op(A)
   * rows: ~1 a cycle packed (ta), else ~0.5). Cutting finer (more cells than threads) measured 3-15% slower.
   * But with at least 4 row tiles per thread, C is cut by rows only, cell i first claimed by thread i: each thread
   * then writes whole rows, the rows that thread reads in the next op (ops split rows evenly over the same pool), so
   * they are still in its core's cache (cut by columns, half of every row sits in the other core's L2). Measured
   * +1.5-2% on the mini-MLLM SFT and DPO steps over the cost model, which cut the wide GEMMs by columns. */
  int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
  double macs = (double)M * (double)N * (double)K;
  int T = parallel ? nth : 1;
  if (T > 1 && macs < (double)T * MIN_MACS_PER_THREAD)
    T = macs >= 2.0 * MIN_MACS_PER_THREAD ? (int)(macs / MIN_MACS_PER_THREAD) : 1;
  if ((int64_t)T > mt * nt) T = (int)(mt * nt);
  double best = -1;
  if (mt >= 4 * (int64_t)T) /* rows only (see above) */
    best = 0, j.tm = T, j.tn = 1;
  for (int tm = 1; tm <= T && best != 0; tm++) {
    if (T % tm) continue;
    int tn = T / tm;
    int64_t ms = (mt + tm - 1) / tm * MR, ns = (nt + tn - 1) / tn * NR;
    double cost =
        ((double)ms * (double)ns / 32.0 + (double)ns * (j.bin ? 0.5 : 2.0) + (double)ms * (ta ? 1.0 : 0.5)) * (double)K;
    if (best < 0 || cost < best) best = cost, j.tm = tm, j.tn = tn;
  }
  j.mstep = (mt + j.tm - 1) / j.tm * MR, j.nstep = (nt + j.tn - 1) / j.tn * NR;
  j.tm = (int)((M + j.mstep - 1) / j.mstep), j.tn = (int)((N + j.nstep - 1) / j.nstep); /* no empty cells */
  j.T = T;
  atomic_init(&j.next, 0);
  for (int i = 0; i < GEMM_OWN_CELLS; i++)
    atomic_init(&j.taken[i], 0);
  int64_t ncmax = BBLOCK_FLOATS / j.kcb / NR * NR, nblk;
  if (ncmax < NR) ncmax = NR;
  nblk = (j.nstep + ncmax - 1) / ncmax; /* B blocks per cell, of equal width */
  j.nc = ((j.nstep + nblk - 1) / nblk + NR - 1) / NR * NR;
  j.per = (size_t)(((j.bin ? NR : j.nc) * j.kcb + ar->as * j.kcb + 15) / 16 * 16); /* packed B, then A panel */
  size_t need = j.per * (size_t)T;
  _Alignas(64) float sbuf[STACK_FLOATS];
  void *buf = NULL;
  if (need <= STACK_FLOATS)
    j.buf = sbuf;
  else if (posix_memalign(&buf, 64, sizeof(float) * need) != 0 || !buf) {
    sgemm_blas(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, nth);
    return;
  } else
    j.buf = buf;
  if (T > 1)
    parallel(pool, gemm_worker, &j);
  else
    for (int cell = 0; cell < j.tm * j.tn; cell++)
      gemm_cell(&j, cell, 0);
  free(buf);
}

void pv__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
               int64_t ldb, float *C, int64_t ldc, int nth, pv_gemm_parallel parallel, void *pool) {
  pv__sgemm_ex(PV_GEMM_AUTO, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, nth, parallel, pool);
}
