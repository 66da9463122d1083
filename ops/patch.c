/* Image patches (ViT patch embedding).
 *  patchify:   x [B, C, H, W] f32 -> y [B, N, C·P·P], N = (H/P)·(W/P), patches row-major (py, px), features in
 *              (c, ky, kx) order: y[b, py·(W/P) + px, (c·P + ky)·P + kx] = x[b, c, py·P + ky, px·P + kx].
 *              A pure permutation: dx = unpatchify(dy).
 *  unpatchify: the exact inverse, [B, N, C·P·P] -> [B, C, H, W] (H, W in params); dx = patchify(dy).
 *  patch_embed (composed): Conv2d with stride = kernel = P,
 *              y [B, N, D] = patchify(x) · reshape(w [D, C, P, P], [D, C·P·P])ᵀ + b [D] (pv_matmul, trans_b). */
#include "common.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int patch;
  int64_t H, W; /* unpatchify: the image size */
} patch_p;

pv_tensor *pv_unpatchify(pv_graph *g, pv_tensor *x, int patch, int64_t H, int64_t W);

/* ------------------------------------------------------------ shape rules */
static pv_status patchify_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0)) return t->graph->st;
  const patch_p *p = PV_CPARAMS(patch_p, t);
  pv_tensor *x = t->src[0];
  char b1[128];
  if (x->ndim != 4) return PV_FAIL(t, PV_ERR_SHAPE, "patchify: x %s must be [B, C, H, W]", PV_SHAPESTR(b1, x));
  int64_t P = p->patch, H = x->shape[2], W = x->shape[3];
  if (P <= 0) return PV_FAIL(t, PV_ERR_INVALID, "patchify: patch size %d must be positive", p->patch);
  if (H % P || W % P)
    return PV_FAIL(t, PV_ERR_SHAPE, "patchify: H=%lld and W=%lld of x %s must be divisible by the patch size %d",
                   (long long)H, (long long)W, PV_SHAPESTR(b1, x), p->patch);
  int64_t sh[3] = {x->shape[0], (H / P) * (W / P), x->shape[1] * P * P};
  pv__set_shape(t, PV_F32, 3, sh);
  return PV_OK;
}

static pv_status unpatchify_shape(pv_tensor *t) {
  if (!pv_need_f32(t, 0)) return t->graph->st;
  const patch_p *p = PV_CPARAMS(patch_p, t);
  pv_tensor *x = t->src[0];
  char b1[128];
  int64_t P = p->patch, H = p->H, W = p->W;
  if (P <= 0) return PV_FAIL(t, PV_ERR_INVALID, "unpatchify: patch size %d must be positive", p->patch);
  if (H < 0 || W < 0 || H % P || W % P)
    return PV_FAIL(t, PV_ERR_SHAPE, "unpatchify: image size H=%lld W=%lld must be divisible by the patch size %d",
                   (long long)H, (long long)W, p->patch);
  if (x->ndim != 3 || x->shape[1] != (H / P) * (W / P) || x->shape[2] % (P * P))
    return PV_FAIL(t, PV_ERR_SHAPE, "unpatchify: x %s must be [B, %lld, C*%lld] for H=%lld W=%lld patch %d",
                   PV_SHAPESTR(b1, x), (long long)((H / P) * (W / P)), (long long)(P * P), (long long)H, (long long)W,
                   p->patch);
  int64_t sh[4] = {x->shape[0], x->shape[2] / (P * P), H, W};
  pv__set_shape(t, PV_F32, 4, sh);
  return PV_OK;
}

/* ------------------------------------------------------------ kernels
 * Both directions walk the same rows (b, py, px, c, ky) of P contiguous floats: img[b, c, py·P + ky, px·P ..]
 * <-> pat[b, py·NW + px, (c·P + ky)·P ..]. Each row is written by one thread. */
static void patch_dims(const pv_tensor *img, int P, int64_t *B, int64_t *C, int64_t *NH, int64_t *NW) {
  *B = img->shape[0], *C = img->shape[1], *NH = img->shape[2] / P, *NW = img->shape[3] / P;
}

static void patch_copy(const pv_tensor *img, int P, int to_patches, const float *src, float *dst, int64_t r0,
                       int64_t r1) {
  int64_t B, C, NH, NW;
  patch_dims(img, P, &B, &C, &NH, &NW);
  int64_t H = NH * P, W = NW * P;
  (void)B;
  for (int64_t r = r0; r < r1; r++) { /* r = (((b·NH + py)·NW + px)·C + c)·P + ky: the patch-side row order */
    int64_t q = r, ky = q % P;
    q /= P;
    int64_t c = q % C;
    q /= C;
    int64_t px = q % NW;
    q /= NW;
    int64_t py = q % NH, b = q / NH;
    int64_t io = ((b * C + c) * H + py * P + ky) * W + px * P, po = r * P;
    if (to_patches) memcpy(dst + po, src + io, sizeof(float) * (size_t)P);
    else memcpy(dst + io, src + po, sizeof(float) * (size_t)P);
  }
}

static void patchify_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int P = PV_CPARAMS(patch_p, t)->patch;
  int64_t r0, r1;
  pv_split(t->numel / P, a->ith, a->nth, &r0, &r1);
  patch_copy(t->src[0], P, 1, a->src[0], a->dst, r0, r1);
}
static void unpatchify_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int P = PV_CPARAMS(patch_p, t)->patch;
  int64_t r0, r1;
  pv_split(t->numel / P, a->ith, a->nth, &r0, &r1);
  patch_copy(t, P, 0, a->src[0], a->dst, r0, r1);
}

/* reference: per element, straight from the definition */
static void patch_ref_walk(const pv_tensor *img, int P, int to_patches, const double *src, double *dst) {
  int64_t B, C, NH, NW;
  patch_dims(img, P, &B, &C, &NH, &NW);
  int64_t H = NH * P, W = NW * P, F = C * P * P;
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t yy = 0; yy < H; yy++)
        for (int64_t xx = 0; xx < W; xx++) {
          int64_t io = ((b * C + c) * H + yy) * W + xx;
          int64_t n = (yy / P) * NW + xx / P, f = (c * P + yy % P) * P + xx % P;
          int64_t po = (b * NH * NW + n) * F + f;
          if (to_patches) dst[po] = src[io];
          else dst[io] = src[po];
        }
}
static void patchify_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  patch_ref_walk(t->src[0], PV_CPARAMS(patch_p, t)->patch, 1, s[0], y);
}
static void unpatchify_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  patch_ref_walk(t, PV_CPARAMS(patch_p, t)->patch, 0, s[0], y);
}

/* ------------------------------------------------------------ backward */
static pv_status patchify_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const pv_tensor *x = t->src[0];
  dsrc[0] = pv_unpatchify(g, dy, PV_CPARAMS(patch_p, t)->patch, x->shape[2], x->shape[3]);
  return g->st;
}
static pv_status unpatchify_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  dsrc[0] = pv_patchify(g, dy, PV_CPARAMS(patch_p, t)->patch);
  return g->st;
}

/* ------------------------------------------------------------ Vulkan: both directions are one strided gather
 * (shaders/gather.comp) over the output viewed as 6 dims. */
static int patch_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int to_patches = t->op == PV_OP_PATCHIFY;
  const pv_tensor *img = to_patches ? t->src[0] : t;
  int64_t P = PV_CPARAMS(patch_p, t)->patch, B, C, NH, NW;
  if (t->numel > UINT32_MAX) return 0;
  patch_dims(img, (int)P, &B, &C, &NH, &NW);
  int64_t H = NH * P, W = NW * P;
  if (to_patches) { /* y [B, NH, NW, C, P, P] <- x[b, c, py·P + ky, px·P + kx] */
    int64_t sh[6] = {B, NH, NW, C, P, P}, st[6] = {C * H * W, P * W, P, H * W, W, 1};
    return pv_vk_gather(d, 0, 6, sh, st, 0, 4);
  }
  /* y [B, C, NH, P, NW, P] <- x[b, py·NW + px, (c·P + ky)·P + kx] */
  int64_t F = C * P * P;
  int64_t sh[6] = {B, C, NH, P, NW, P}, st[6] = {NH * NW * F, P * P, NW * F, P, F, 1};
  return pv_vk_gather(d, 0, 6, sh, st, 0, 4);
}

const pv_op_def pv_op_patchify = {.name = "patchify", .min_src = 1, .max_src = 1, .shape = patchify_shape,
                                  .backward = patchify_backward, .cpu = patchify_cpu, .ref = patchify_ref,
                                  .vk = patch_vk};
const pv_op_def pv_op_unpatchify = {.name = "unpatchify", .min_src = 1, .max_src = 1, .shape = unpatchify_shape,
                                    .backward = unpatchify_backward, .cpu = unpatchify_cpu, .ref = unpatchify_ref,
                                    .vk = patch_vk};

/* ------------------------------------------------------------ builders */
pv_tensor *pv_patchify(pv_graph *g, pv_tensor *x, int patch) {
  patch_p p = {patch, 0, 0};
  return pv__node(g, PV_OP_PATCHIFY, 1, &x, &p, sizeof p);
}

/* Not yet declared in pivot.h: [B, N, C*P*P] -> [B, C, H, W], the inverse of pv_patchify. */
pv_tensor *pv_unpatchify(pv_graph *g, pv_tensor *x, int patch, int64_t H, int64_t W) {
  patch_p p = {patch, H, W};
  return pv__node(g, PV_OP_UNPATCHIFY, 1, &x, &p, sizeof p);
}

pv_tensor *pv_patch_embed(pv_graph *g, pv_tensor *x, pv_tensor *w, pv_tensor *b, int patch) {
  if (!g || g->st) return NULL;
  if (!x || !w) return pv__gerr(g, PV_ERR_NULL, "patch_embed: %s is NULL", x ? "w" : "x");
  char b1[128], b2[128];
  if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != patch || w->shape[3] != patch)
    return pv__gerr(g, PV_ERR_SHAPE, "patch_embed: x %s [B, C, H, W] and w %s must be [D, C, %d, %d]",
                    pv__shape_str(b1, sizeof b1, x->ndim, x->shape), pv__shape_str(b2, sizeof b2, w->ndim, w->shape),
                    patch, patch);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    return pv__gerr(g, PV_ERR_SHAPE, "patch_embed: bias %s must be [%lld] for w %s",
                    pv__shape_str(b1, sizeof b1, b->ndim, b->shape), (long long)w->shape[0],
                    pv__shape_str(b2, sizeof b2, w->ndim, w->shape));
  int64_t wsh[2] = {w->shape[0], w->shape[1] * w->shape[2] * w->shape[3]};
  pv_tensor *y = pv_matmul(g, pv_patchify(g, x, patch), pv_reshape(g, w, 2, wsh), 0, 1);
  return b ? pv_add(g, y, b) : y;
}
