/* Op tests: matmul (GEMM) forward vs reference, gradients vs finite differences, batching and broadcasting,
 * thread counts (one GEMM, batches fanned out on the pool, batch loop), determinism and shape errors. */
#include "opcheck.h"
#include "testutil.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN(nd, ...)                                                                                                    \
  { nd, {__VA_ARGS__}, OC_NORMAL, 0, 1, 1, 0 }

/* ud: bit 0 trans_a, bit 1 trans_b */
static pv_tensor *b_mm(pv_graph *g, pv_tensor **x, void *u) {
  int f = (int)(intptr_t)u;
  return pv_matmul(g, x[0], x[1], f & 1, (f >> 1) & 1);
}
static pv_tensor *b_self(pv_graph *g, pv_tensor **x, void *u) { /* a == b: x·xᵀ or xᵀ·x */
  int f = (int)(intptr_t)u;
  return pv_matmul(g, x[0], x[0], f & 1, (f >> 1) & 1);
}
static pv_tensor *b_attn(pv_graph *g, pv_tensor **x, void *u) { /* (q·kᵀ)·v, [B,H,T,D] */
  (void)u;
  return pv_matmul(g, pv_matmul(g, x[0], x[1], 0, 1), x[2], 0, 0);
}
static pv_tensor *b_mlp(pv_graph *g, pv_tensor **x, void *u) { /* Linear -> tanh -> Linear with [N, K] weights */
  (void)u;
  pv_tensor *h = pv_unary(g, PV_TANH, pv_matmul(g, x[0], x[1], 0, 1));
  return pv_matmul(g, h, x[2], 0, 1);
}

/* a [bat.., M, K] or [bat.., K, M]; b [bbt.., K, N] or [bbt.., N, K] */
static void mk(oc_input *in, int nbat, const int64_t *bat, int64_t r, int64_t c) {
  oc_input z = IN(0, 0);
  *in = z;
  in->ndim = nbat + 2;
  for (int i = 0; i < nbat; i++)
    in->shape[i] = bat[i];
  in->shape[nbat] = r;
  in->shape[nbat + 1] = c;
}
static void check_mm(const char *what, int na, const int64_t *ba, int nb, const int64_t *bb, int64_t M, int64_t K,
                     int64_t N, int f) {
  int ta = f & 1, tb = (f >> 1) & 1;
  oc_input in[2];
  mk(&in[0], na, ba, ta ? K : M, ta ? M : K);
  mk(&in[1], nb, bb, tb ? N : K, tb ? K : N);
  char nm[128];
  snprintf(nm, sizeof nm, "%s M=%lld K=%lld N=%lld ta=%d tb=%d", what, (long long)M, (long long)K, (long long)N, ta,
           tb);
  oc_check(nm, 2, in, b_mm, (void *)(intptr_t)f, NULL);
}

/* CPU plan run twice on the same data with the given thread count: bitwise identical results */
static void check_determinism(int threads, int na, const int64_t *sa, int nb, const int64_t *sb, int f) {
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  pv_tensor *a = pv_input(g, "a", PV_F32, na, sa), *b = pv_input(g, "b", PV_F32, nb, sb);
  pv_tensor *y = pv_matmul(g, a, b, f & 1, (f >> 1) & 1);
  CHECK(y != NULL, "determinism: build: %s", pv_graph_error(g));
  if (!y) goto out;
  pv_mark_output(y);
  pv_plan *p = NULL;
  pv_plan_options o = {"cpu", threads, -1, 0};
  CHECK(pv_plan_compile(g, &o, &p) == PV_OK, "determinism: compile: %s", pv_last_error(ctx));
  if (!p) goto out;
  int64_t n1 = pv_tensor_numel(a), n2 = pv_tensor_numel(b), ny = pv_tensor_numel(y);
  float *da = malloc(sizeof(float) * (size_t)n1), *db = malloc(sizeof(float) * (size_t)n2);
  float *y1 = malloc(sizeof(float) * (size_t)ny), *y2 = malloc(sizeof(float) * (size_t)ny);
  for (int64_t i = 0; i < n1; i++)
    da[i] = (float)sin(0.37 * (double)i);
  for (int64_t i = 0; i < n2; i++)
    db[i] = (float)cos(0.11 * (double)i);
  int ok = pv_plan_write(p, a, PV_F32, da, n1) == PV_OK && pv_plan_write(p, b, PV_F32, db, n2) == PV_OK &&
           pv_plan_run(p) == PV_OK && pv_plan_read(p, y, PV_F32, y1, ny) == PV_OK && pv_plan_run(p) == PV_OK &&
           pv_plan_read(p, y, PV_F32, y2, ny) == PV_OK;
  CHECK(ok, "determinism: run: %s", pv_last_error(ctx));
  CHECK(ok && memcmp(y1, y2, sizeof(float) * (size_t)ny) == 0, "determinism: %d threads: two runs differ", threads);
  free(da);
  free(db);
  free(y1);
  free(y2);
  pv_plan_free(p);
out:
  pv_graph_free(g);
  pv_context_free(ctx);
}

/* builds a bad matmul; the sticky error must name the op and both shapes */
static void check_error(const char *what, int na, const int64_t *sa, int nb, const int64_t *sb, int f, const char *sha,
                        const char *shb, pv_status want) {
  pv_context *ctx = pv_context_new();
  pv_graph *g = pv_graph_new(ctx);
  pv_tensor *a = pv_input(g, "a", PV_F32, na, sa), *b = pv_input(g, "b", PV_F32, nb, sb);
  pv_tensor *y = pv_matmul(g, a, b, f & 1, (f >> 1) & 1);
  const char *e = pv_graph_error(g);
  CHECK(y == NULL, "%s: bad matmul was accepted", what);
  CHECK(pv_graph_status(g) == want, "%s: status %s, expected %s", what, pv_status_name(pv_graph_status(g)),
        pv_status_name(want));
  CHECK(strstr(e, "matmul") && strstr(e, sha) && strstr(e, shb), "%s: error message lacks op or shapes: '%s'", what, e);
  CHECK(pv_add(g, a, a) == NULL, "%s: the error is not sticky", what);
  printf("ok   %s: %s\n", what, e);
  pv_graph_free(g);
  pv_context_free(ctx);
}

int main(void) {
  static const int64_t b3[1] = {3}, b1[1] = {1}, b4[1] = {4}, b23[2] = {2, 3};
  /* 2-D, all four transpose combinations, odd sizes */
  for (int f = 0; f < 4; f++)
    check_mm("2-D", 0, NULL, 0, NULL, 7, 13, 5, f);
  {
    /* [1,9]x[9,1]: opcheck reads input 1's reference gradient after input 0's finite-difference probes, which
     * leave the last probed element of input 0 shifted by -fd_h in the reference plan; with so few elements
     * that bias (~fd_h relative) exceeds the default fd_tol, so probe with a smaller step here. */
    oc_opts o = {0};
    o.fd_h = 1e-8;
    oc_input v[2] = {IN(2, 1, 9), IN(2, 9, 1)};
    oc_check("2-D vector-like [1,9]x[9,1]", 2, v, b_mm, NULL, &o);
  }
  check_mm("2-D K=1 outer product", 0, NULL, 0, NULL, 6, 1, 4, 0);
  /* batched 3-D x 3-D */
  for (int f = 0; f < 4; f++)
    check_mm("batched 3-D", 1, b3, 1, b3, 7, 13, 5, f);
  /* 2-D weight b broadcast against 3-D a (Linear layer: one big GEMM; ta=1 takes the batched path) */
  for (int f = 0; f < 4; f++)
    check_mm("3-D a, 2-D b", 1, b4, 0, NULL, 7, 13, 5, f);
  /* 3-D b of batch 1 against a batch of 3 */
  for (int f = 0; f < 4; f++)
    check_mm("b batch 1 vs 3", 1, b3, 1, b1, 7, 13, 5, f);
  /* 2-D a against batched b */
  check_mm("2-D a, 3-D b", 0, NULL, 1, b3, 7, 13, 5, 0);
  check_mm("2-D a, 3-D b", 0, NULL, 1, b3, 7, 13, 5, 3);
  /* 4-D attention-like: [B,H,T,D] x [B,H,T,D]ᵀ, then scores x v */
  {
    oc_input q[2] = {IN(4, 2, 3, 6, 4), IN(4, 2, 3, 6, 4)};
    oc_check("4-D q·kᵀ [2,3,6,4]", 2, q, b_mm, (void *)(intptr_t)2, NULL);
    oc_input qkv[3] = {IN(4, 2, 3, 6, 4), IN(4, 2, 3, 6, 4), IN(4, 2, 3, 6, 4)};
    oc_check("4-D (q·kᵀ)·v", 3, qkv, b_attn, NULL, NULL);
  }
  /* both sides broadcast in different batch axes: [2,1,M,K] x [1,3,K,N] */
  {
    static const int64_t s21[2] = {2, 1}, s13[2] = {1, 3};
    check_mm("4-D two-sided broadcast", 2, s21, 2, s13, 6, 4, 5, 0);
    check_mm("4-D two-sided broadcast", 2, s21, 2, s13, 6, 4, 5, 3);
    check_mm("4-D batch vs 2-D b", 2, b23, 0, NULL, 6, 4, 5, 2);
  }
  /* b broadcast over trailing batch axes only (grouped-query attention) */
  {
    static const int64_t s23[2] = {2, 3}, s21[2] = {2, 1}, s223[3] = {2, 2, 3}, s221[3] = {2, 2, 1};
    static const int64_t s2x3x1x1[4] = {2, 3, 1, 1}, s2x3x2x2[4] = {2, 3, 2, 2};
    for (int f = 0; f < 4; f++)
      check_mm("4-D b [2,1] vs a [2,3]", 2, s23, 2, s21, 6, 4, 5, f);
    check_mm("5-D b [2,2,1] vs a [2,2,3] (GQA scores)", 3, s223, 3, s221, 6, 4, 6, 2);
    check_mm("5-D b [2,2,1] vs a [2,2,3] (GQA p·v)", 3, s223, 3, s221, 6, 6, 4, 0);
    check_mm("4-D a [2,3] vs 3-D b [3] (leading broadcast: no fold)", 2, s23, 1, b3, 6, 4, 5, 0);
    for (int f = 0; f < 4; f++)
      check_mm("6-D a [2,3,2,2] vs b [2,3,1,1]", 4, s2x3x2x2, 4, s2x3x1x1, 3, 4, 5, f);
  }
  /* a == b: gradient accumulation of both uses */
  {
    oc_input x2[1] = {IN(2, 7, 13)};
    oc_check("self x·xᵀ [7,13]", 1, x2, b_self, (void *)(intptr_t)2, NULL);
    oc_check("self xᵀ·x [7,13]", 1, x2, b_self, (void *)(intptr_t)1, NULL);
    oc_input x3[1] = {IN(3, 3, 5, 6)};
    oc_check("self batched x·xᵀ [3,5,6]", 1, x3, b_self, (void *)(intptr_t)2, NULL);
    oc_input sq[1] = {IN(2, 6, 6)};
    oc_check("self x·x [6,6]", 1, sq, b_self, (void *)(intptr_t)0, NULL);
  }
  /* a small MLP: a weight used by two Linear layers' chain (weights [N, K], trans_b) */
  {
    oc_input m[3] = {IN(3, 2, 5, 8), IN(2, 7, 8), IN(2, 3, 7)};
    oc_check("mlp 3-D x [N,K] weights", 3, m, b_mlp, NULL, NULL);
  }
  /* larger sizes, so OpenBLAS actually threads; fewer finite-difference probes */
  {
    oc_opts o = {0};
    o.fd_max = 8;
    o.fwd_tol = 5e-5;
    oc_input big[2] = {IN(3, 2, 96, 130), IN(2, 130, 72)};
    oc_check("larger 3-D x 2-D [2,96,130]x[130,72]", 2, big, b_mm, NULL, &o);
    oc_input bb[2] = {IN(3, 5, 40, 64), IN(3, 5, 48, 64)};
    oc_check("larger batched tb [5,40,64]x[5,48,64]ᵀ", 2, bb, b_mm, (void *)(intptr_t)2, &o);
  }
  /* thread counts: 1 (serial), 3 (batch 3 fanned out over 3 pool threads), 4 (batch 3 < 4 threads: GEMM loop) */
  {
    static const char *thr[] = {"1", "3", "4"};
    for (int i = 0; i < 3; i++) {
      setenv("PIVOT_THREADS", thr[i], 1);
      char nm[64];
      snprintf(nm, sizeof nm, "threads=%s batched", thr[i]);
      check_mm(nm, 1, b3, 1, b3, 9, 11, 10, 1);
      snprintf(nm, sizeof nm, "threads=%s 3-D a, 2-D b", thr[i]);
      check_mm(nm, 1, b3, 0, NULL, 9, 11, 10, 2);
    }
    unsetenv("PIVOT_THREADS");
  }
  /* determinism for a given thread count (one GEMM, batched fan-out, batched loop) */
  {
    int64_t a3[3] = {4, 64, 96}, w[2] = {80, 96}, b3d[3] = {4, 96, 80};
    check_determinism(2, 3, a3, 2, w, 2);
    check_determinism(2, 3, a3, 3, b3d, 0);
    check_determinism(8, 3, a3, 3, b3d, 0);
    printf("ok   determinism\n");
  }
  /* errors */
  {
    int64_t s23[2] = {2, 3}, s45[2] = {4, 5}, s234[3] = {2, 3, 4}, s546[3] = {5, 4, 6}, s3[1] = {3}, s32[2] = {3, 2};
    check_error("inner dimension mismatch", 2, s23, 2, s45, 0, "[2, 3]", "[4, 5]", PV_ERR_SHAPE);
    check_error("inner dimension mismatch with trans_b", 2, s23, 2, s32, 2, "[2, 3]", "[3, 2]", PV_ERR_SHAPE);
    check_error("batch mismatch", 3, s234, 3, s546, 0, "[2, 3, 4]", "[5, 4, 6]", PV_ERR_SHAPE);
    check_error("1-D input", 1, s3, 2, s32, 0, "[3]", "[3, 2]", PV_ERR_SHAPE);
    /* a wrong dtype */
    pv_context *ctx = pv_context_new();
    pv_graph *g = pv_graph_new(ctx);
    pv_tensor *a = pv_input(g, "a", PV_I32, 2, s23), *b = pv_input(g, "b", PV_F32, 2, s32);
    CHECK(pv_matmul(g, a, b, 0, 0) == NULL && pv_graph_status(g) == PV_ERR_DTYPE && strstr(pv_graph_error(g), "matmul"),
          "i32 input: status %s, error '%s'", pv_status_name(pv_graph_status(g)), pv_graph_error(g));
    pv_graph_free(g);
    g = pv_graph_new(ctx);
    CHECK(pv_matmul(g, NULL, NULL, 0, 0) == NULL && pv_graph_status(g) == PV_ERR_NULL, "NULL input accepted");
    CHECK(pv_matmul(NULL, NULL, NULL, 0, 0) == NULL, "NULL graph accepted");
    pv_graph_free(g);
    pv_context_free(ctx);
  }
  return pv_t_finish();
}
