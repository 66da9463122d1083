/* GEMM: y = op(a) · op(b), op(x) = x or xᵀ (over the last two axes), batch axes broadcast NumPy-style.
 *  a [..., M, K] (trans_a: [..., K, M]), b [..., K, N] (trans_b: [..., N, K]) -> y [..., M, N].
 *  Backward (one GEMM op serves all three products, only the transpose flags change):
 *    d op(a) = dy · op(b)ᵀ   ->  da = matmul(dy, b, 0, !tb)          (ta = 0)
 *                                da = matmul(b, dy, tb, 1)  = (dy·op(b)ᵀ)ᵀ  (ta = 1)
 *    d op(b) = op(a)ᵀ · dy   ->  db = matmul(a, dy, !ta, 0)          (tb = 0)
 *                                db = matmul(dy, a, 1, ta)  = (op(a)ᵀ·dy)ᵀ  (tb = 1)
 *    then pv_sum_to over broadcast batch axes. When b has no batch (a plain [K, N] / [N, K] weight) and a is a
 *    non-transposed [..., M, K], a and dy are viewed as 2-D [prod(...)·M, K] / [prod(...)·M, N] so db is one big
 *    GEMM with no reduction; the forward and da of that case are one big GEMM over all rows too.
 * CPU: pv__sgemm (runtime/cpu/sgemm.c) straight on the arena buffers: pivot's own packed GEMM with AVX-512 or
 * AVX2+FMA micro-kernels picked at run time, OpenBLAS cblas_sgemm on CPUs with neither (or env PIVOT_GEMM=openblas).
 * One GEMM: M and N split over the plan's pool. Batched (after folding the batch axes b is broadcast over into the
 * rows, see mm_fold_rows): when the batch count >= threads, batches are split across
 * the pool, each GEMM single-threaded; otherwise a loop of GEMMs, each split over the pool. K is never split and
 * every element is summed in the same order whatever the split, so the results do not depend on the thread count
 * (with OpenBLAS: deterministic for a given thread count). Reference: a naive triple loop in double. */
#include "common.h"
#include "../runtime/cpu/sgemm.h"
#include "../runtime/vulkan/vk_ops.h"
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

typedef struct {
  int ta, tb;
} matmul_p;

/* M, N, K of node t */
static void mm_dims(const pv_tensor *t, int64_t *M, int64_t *N, int64_t *K) {
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  const pv_tensor *a = t->src[0];
  *M = t->shape[t->ndim - 2];
  *N = t->shape[t->ndim - 1];
  *K = p->ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
}

/* ------------------------------------------------------------ shape */
static pv_status matmul_shape(pv_tensor *t) {
  matmul_p *p = PV_PARAMS(matmul_p, t);
  p->ta = p->ta ? 1 : 0;
  p->tb = p->tb ? 1 : 0;
  if (!pv_need_f32(t, 0) || !pv_need_f32(t, 1)) return t->graph->st;
  pv_tensor *a = t->src[0], *b = t->src[1];
  char b1[128], b2[128];
  if (a->ndim < 2 || b->ndim < 2)
    return PV_FAIL(t, PV_ERR_SHAPE, "matmul: a %s and b %s must both have at least 2 dimensions", PV_SHAPESTR(b1, a),
                   PV_SHAPESTR(b2, b));
  int64_t M = p->ta ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
  int64_t Ka = p->ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
  int64_t Kb = p->tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
  int64_t N = p->tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
  if (Ka != Kb)
    return PV_FAIL(t, PV_ERR_SHAPE,
                   "matmul: a %s (trans_a=%d) and b %s (trans_b=%d): inner dimensions %lld and %lld differ",
                   PV_SHAPESTR(b1, a), p->ta, PV_SHAPESTR(b2, b), p->tb, (long long)Ka, (long long)Kb);
  if (M > INT_MAX || N > INT_MAX || Ka > INT_MAX)
    return PV_FAIL(t, PV_ERR_SHAPE, "matmul: a %s and b %s: a matrix dimension exceeds %d", PV_SHAPESTR(b1, a),
                   PV_SHAPESTR(b2, b), INT_MAX);
  int64_t sh[PV_MAX_DIMS];
  int nb;
  if (!pv__broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nb, sh))
    return PV_FAIL(t, PV_ERR_SHAPE, "matmul: batch dimensions of a %s and b %s do not broadcast", PV_SHAPESTR(b1, a),
                   PV_SHAPESTR(b2, b));
  sh[nb] = M; /* nb <= PV_MAX_DIMS - 2 since both inputs have >= 2 dims */
  sh[nb + 1] = N;
  pv__set_shape(t, PV_F32, nb + 2, sh);
  return PV_OK;
}

/* ------------------------------------------------------------ batching */
typedef struct mm_batch {
  int64_t M, N, K, n; /* n: batch count of the output */
  int nbd;
  int64_t shape[PV_MAX_DIMS], sa[PV_MAX_DIMS], sb[PV_MAX_DIMS]; /* batch shape; matrix strides of a and b */
} mm_batch;

static void mm_batch_init(const pv_tensor *t, mm_batch *bt) {
  const pv_tensor *a = t->src[0], *b = t->src[1];
  mm_dims(t, &bt->M, &bt->N, &bt->K);
  bt->nbd = t->ndim - 2;
  bt->n = 1;
  for (int d = 0; d < bt->nbd; d++)
    bt->shape[d] = t->shape[d], bt->n *= t->shape[d];
  pv__bcast_strides(bt->nbd, bt->shape, a->ndim - 2, a->shape, bt->sa);
  pv__bcast_strides(bt->nbd, bt->shape, b->ndim - 2, b->shape, bt->sb);
}

/* element offsets of batch i in a and b */
static void mm_batch_off(const mm_batch *bt, int64_t i, int64_t *oa, int64_t *ob) {
  int64_t ia = 0, ib = 0;
  for (int d = bt->nbd - 1; d >= 0; d--) {
    int64_t id = i % bt->shape[d];
    i /= bt->shape[d];
    ia += id * bt->sa[d];
    ib += id * bt->sb[d];
  }
  *oa = ia * bt->M * bt->K;
  *ob = ib * bt->K * bt->N;
}

/* b broadcast over the trailing batch axes (grouped-query attention: k, v [B, Hkv, 1, S, D] against q
 * [B, Hkv, rep, T, D]), a not transposed and not broadcast there: those axes' row blocks of a and y are contiguous
 * and use the same b, so they are one GEMM of rep·M rows (fewer, larger GEMMs; each element is computed exactly as
 * before: the same bits) */
static void mm_fold_rows(mm_batch *bt, int ta) {
  int j = bt->nbd;
  int64_t R = 1;
  if (ta) return;
  while (j > 0 && bt->sb[j - 1] == 0 && (bt->sa[j - 1] != 0 || bt->shape[j - 1] == 1))
    R *= bt->shape[--j];
  if (R <= 1 || bt->M * R > INT_MAX) return;
  for (int d = 0; d < j; d++)
    bt->sa[d] /= R; /* a's batch strides count M x K blocks: now R·M x K ones */
  bt->nbd = j;
  bt->M *= R;
  bt->n /= R;
}

/* ------------------------------------------------------------ CPU */
/* C[M, N] = op(A) · op(B), row-major, contiguous; nth threads of the pool (a NULL: one thread) */
static void sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C, int nth,
                  const pv_cpu_args *a) {
  pv__sgemm(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, nth, a ? a->parallel : NULL, a ? a->pool : NULL);
}

typedef struct mm_job {
  const mm_batch *bt;
  int ta, tb;
  const float *A, *B;
  float *C;
  const pv_cpu_args *a; /* NULL: each GEMM single-threaded (inside pool workers) */
  int nth;
} mm_job;

static void mm_batches(void *arg, int ith, int nth) {
  const mm_job *j = arg;
  const mm_batch *bt = j->bt;
  int64_t i0, i1;
  pv_split(bt->n, ith, nth, &i0, &i1);
  for (int64_t i = i0; i < i1; i++) {
    int64_t oa, ob;
    mm_batch_off(bt, i, &oa, &ob);
    sgemm(j->ta, j->tb, bt->M, bt->N, bt->K, j->A + oa, j->B + ob, j->C + i * bt->M * bt->N, j->nth, j->a);
  }
}

static void matmul_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  mm_batch bt;
  mm_batch_init(t, &bt);
  const float *A = a->src[0], *B = a->src[1];
  float *C = a->dst;
  int nth = a->nth < 1 ? 1 : a->nth;
  /* one GEMM: no batch, or a plain-matrix b with a non-transposed, non-broadcast a (all rows at once) */
  int64_t rows = bt.n * bt.M;
  int one =
      bt.n == 1 || (!p->ta && t->src[1]->numel == bt.K * bt.N && t->src[0]->numel == rows * bt.K && rows <= INT_MAX);
  if (one) {
    sgemm(p->ta, p->tb, bt.n == 1 ? bt.M : rows, bt.N, bt.K, A, B, C, nth, a);
    return;
  }
  mm_fold_rows(&bt, p->ta);
  if (bt.n == 1) {
    sgemm(p->ta, p->tb, bt.M, bt.N, bt.K, A, B, C, nth, a);
    return;
  }
  if (nth > 1 && bt.n >= nth && a->parallel) {
    mm_job j = {&bt, p->ta, p->tb, A, B, C, NULL, 1};
    /* the OpenBLAS fallback must not start its own threads inside the pool's */
    if (pv__sgemm_default() == PV_GEMM_OPENBLAS && openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    a->parallel(a->pool, mm_batches, &j);
  } else {
    mm_job j = {&bt, p->ta, p->tb, A, B, C, a, nth};
    mm_batches(&j, 0, 1);
  }
}

/* ------------------------------------------------------------ reference */
static void matmul_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  mm_batch bt;
  mm_batch_init(t, &bt);
  int64_t M = bt.M, N = bt.N, K = bt.K;
  for (int64_t i = 0; i < bt.n; i++) {
    int64_t oa, ob;
    mm_batch_off(&bt, i, &oa, &ob);
    const double *A = s[0] + oa, *B = s[1] + ob;
    double *C = y + i * M * N;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++)
          acc += (p->ta ? A[k * M + m] : A[m * K + k]) * (p->tb ? B[n * K + k] : B[k * N + n]);
        C[m * N + n] = acc;
      }
  }
}

/* ------------------------------------------------------------ backward */
static int64_t batch_numel(const pv_tensor *x) {
  int64_t n = 1;
  for (int d = 0; d < x->ndim - 2; d++)
    n *= x->shape[d];
  return n;
}

static pv_status matmul_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  pv_tensor *a = t->src[0], *b = t->src[1];
  int ta = p->ta, tb = p->tb;
  if (need[0]) {
    pv_tensor *da = ta ? pv_matmul(g, b, dy, tb, 1) : pv_matmul(g, dy, b, 0, !tb);
    dsrc[0] = pv_sum_to(g, da, a->ndim, a->shape);
  }
  if (need[1]) {
    int64_t M = t->shape[t->ndim - 2], N = t->shape[t->ndim - 1];
    int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t rows = batch_numel(t) * M;
    if (!ta && t->ndim > 2 && batch_numel(b) == 1 && batch_numel(a) * M == rows) {
      /* plain-matrix b: one GEMM over all rows of a and dy, no batch reduction */
      int64_t sa[2] = {rows, K}, sy[2] = {rows, N};
      pv_tensor *a2 = pv_reshape(g, a, 2, sa), *dy2 = pv_reshape(g, dy, 2, sy);
      pv_tensor *db = tb ? pv_matmul(g, dy2, a2, 1, 0) : pv_matmul(g, a2, dy2, 1, 0);
      dsrc[1] = pv_reshape(g, db, b->ndim, b->shape);
    } else {
      pv_tensor *db = tb ? pv_matmul(g, dy, a, 1, ta) : pv_matmul(g, a, dy, !ta, 0);
      dsrc[1] = pv_sum_to(g, db, b->ndim, b->shape);
    }
  }
  return g->st;
}

/* ------------------------------------------------------------ Vulkan */
/* Tiled GEMM (shaders/matmul_body.glsl): variants "matmul_small" (32x32 tile, 64 invocations of 4x4), "matmul_64"
 * (64x64, 256 of 4x4) and "matmul_128" (128x128, 256 of 8x8), K step 16, double-buffered shared memory. The tile is
 * picked by problem size (env PIVOT_VK_GEMM_TILE=small|64|128 forces one): 128 for large problems that keep enough
 * workgroups and waste little on partial tiles, 64 likewise for medium ones, else small. The batch is folded into
 * the rows for a plain-matrix b with a non-transposed, non-broadcast a (as the CPU path).
 * Split K: when the tiles are too few to fill a large GPU and K is long (weight gradients: K = tokens), K is cut
 * into S ranges (multiples of 16) whose partial products go to the scratch buffer, then summed in range order by
 * "matmul_splitk" (deterministic). Env PIVOT_VK_GEMM_SPLITK=S forces S (1: never split). */
#define MM_VK_SPLITK_MAX 16
#define MM_VK_SPLITK_BYTES ((int64_t)256 << 20)

typedef struct mm_vk_cfg {
  int64_t M, N, K, nb; /* after folding the batch into the rows */
  int nbd;
  int64_t sh[PV_MAX_DIMS], st[2][PV_MAX_DIMS]; /* coalesced batch shape, batch strides of a and b (elements) */
  const char *shader;
  int64_t tile, gx, gy;
  int64_t S, kc; /* K ranges and their length (S = 1: no split) */
} mm_vk_cfg;

static int mm_vk_config(const pv_tensor *t, mm_vk_cfg *c) {
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  const pv_tensor *a = t->src[0], *b = t->src[1];
  mm_batch bt;
  mm_batch_init(t, &bt);
  memset(c, 0, sizeof *c);
  c->M = bt.M, c->N = bt.N, c->K = bt.K, c->nb = bt.n;
  if (c->nb > 1 && !p->ta && b->numel == bt.K * bt.N && a->numel == bt.n * bt.M * bt.K) {
    c->M *= c->nb; /* one GEMM over all rows */
    c->nb = 1;
  } else {
    for (int i = 0; i < bt.nbd; i++)
      c->sh[i] = bt.shape[i], c->st[0][i] = bt.sa[i] * bt.M * bt.K, c->st[1][i] = bt.sb[i] * bt.K * bt.N;
    c->nbd = pv_vk_coalesce(bt.nbd, c->sh, 2, c->st);
  }
  int64_t M = c->M, N = c->N, K = c->K, nb = c->nb;
  if (M > UINT32_MAX || N > UINT32_MAX || K > UINT32_MAX || nb > UINT32_MAX || c->nbd > 6) return 0;
  if (M * N * nb > UINT32_MAX || (M ? M : 1) * K > UINT32_MAX || (N ? N : 1) * K > UINT32_MAX) return 0;
  const char *e = getenv("PIVOT_VK_GEMM_TILE");
  double useful = (double)M * (double)N;
  int64_t t128 = ((M + 127) / 128) * ((N + 127) / 128) * nb, t64 = ((M + 63) / 64) * ((N + 63) / 64) * nb;
  double w128 = (double)((M + 127) / 128 * 128) * (double)((N + 127) / 128 * 128);
  double w64 = (double)((M + 63) / 64 * 64) * (double)((N + 63) / 64 * 64);
  if (e && *e && (!strcmp(e, "small") || !strcmp(e, "32")))
    c->tile = 32;
  else if (e && *e && !strcmp(e, "64"))
    c->tile = 64;
  else if (e && *e && !strcmp(e, "128"))
    c->tile = 128;
  else if (t128 >= 128 && w128 <= 1.15 * useful)
    c->tile = 128;
  else if (t64 >= 48 && w64 <= 1.25 * useful)
    c->tile = 64;
  else
    c->tile = 32;
  c->shader = c->tile == 128 ? "matmul_128" : c->tile == 64 ? "matmul_64" : "matmul_small";
  c->gx = (N + c->tile - 1) / c->tile;
  c->gy = (M + c->tile - 1) / c->tile;
  if (c->gx > 65535 || c->gy > 65535) return 0;
  /* split K: aim at >= 256 workgroups, each range >= 256 long */
  int64_t wgs = c->gx * c->gy * nb, S = 1;
  const char *es = getenv("PIVOT_VK_GEMM_SPLITK");
  if (es && *es)
    S = atoi(es);
  else if (wgs < 128 && K >= 1024)
    S = (256 + wgs - 1) / wgs;
  if (S > K / 256 && !(es && *es)) S = K / 256;
  if (S > MM_VK_SPLITK_MAX) S = MM_VK_SPLITK_MAX;
  if (S < 1) S = 1;
  int64_t kc = S > 1 ? ((K + S - 1) / S + 15) / 16 * 16 : K;
  if (S > 1) S = (K + kc - 1) / kc; /* no empty range */
  if (S > 1 && (S * nb * M * N * 4 > MM_VK_SPLITK_BYTES || S * nb > UINT32_MAX)) S = 1, kc = K;
  c->S = S;
  c->kc = kc;
  return 1;
}

static size_t matmul_vk_scratch(const pv_tensor *t) {
  mm_vk_cfg c;
  if (!mm_vk_config(t, &c) || c.S <= 1) return 0;
  return sizeof(float) * (size_t)(c.S * c.nb * c.M * c.N);
}

static int matmul_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  const matmul_p *p = PV_CPARAMS(matmul_p, t);
  mm_vk_cfg c;
  if (!mm_vk_config(t, &c) || max < (c.S > 1 ? 2 : 1)) return 0;
  int64_t M = c.M, N = c.N, K = c.K, nb = c.nb, S = c.S;
  int bind[3] = {S > 1 ? -2 : -1, 0, 1};
  pv_vk_begin(d, c.shader, 3, bind);
  uint32_t fl = (uint32_t)p->ta | (uint32_t)p->tb << 1;
  if ((p->ta ? M : K) % 4 == 0) fl |= 4u; /* a's contiguous axis */
  if ((p->tb ? K : N) % 4 == 0) fl |= 8u;
  if (N % 4 == 0) fl |= 16u;
  pv_vk_push(d, (uint32_t)M);
  pv_vk_push(d, (uint32_t)N);
  pv_vk_push(d, (uint32_t)K);
  pv_vk_push(d, fl);
  pv_vk_push(d, (uint32_t)nb);
  pv_vk_push(d, (uint32_t)c.nbd);
  for (int i = 0; i < 6; i++)
    pv_vk_push(d, i < c.nbd ? (uint32_t)c.sh[i] : 1u);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 6; i++)
      pv_vk_push(d, i < c.nbd ? (uint32_t)c.st[k][i] : 0u);
  pv_vk_push(d, (uint32_t)S);
  pv_vk_push(d, (uint32_t)c.kc);
  if (M > 0 && N > 0 && nb > 0) {
    d->groups[0] = (uint32_t)c.gx;
    d->groups[1] = (uint32_t)c.gy;
    d->groups[2] = (uint32_t)(nb * S < 65535 ? nb * S : 65535);
  }
  d->work = 2.0 * (double)M * (double)N * (double)(K ? K : 1) * (double)nb;
  if (S <= 1) return 1;
  int bs[2] = {-1, -2};
  pv_vk_begin(&d[1], "matmul_splitk", 2, bs);
  pv_vk_push(&d[1], (uint32_t)(nb * M * N));
  pv_vk_push(&d[1], (uint32_t)(M * N));
  pv_vk_push(&d[1], (uint32_t)S);
  pv_vk_grid(&d[1], nb * M * N, PV_VK_WG);
  d[1].work = (double)(nb * M * N * S);
  return 2;
}

const pv_op_def pv_op_matmul = {.name = "matmul",
                                .min_src = 2,
                                .max_src = 2,
                                .flags = PV_OPF_CPU_SERIAL,
                                .shape = matmul_shape,
                                .backward = matmul_backward,
                                .cpu = matmul_cpu,
                                .ref = matmul_ref,
                                .vk = matmul_vk,
                                .vk_scratch = matmul_vk_scratch};

pv_tensor *pv_matmul(pv_graph *g, pv_tensor *a, pv_tensor *b, int trans_a, int trans_b) {
  matmul_p p = {trans_a ? 1 : 0, trans_b ? 1 : 0};
  pv_tensor *s[2] = {a, b};
  return pv__node(g, PV_OP_MATMUL, 2, s, &p, sizeof p);
}
