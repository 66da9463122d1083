/* Rotary position embedding, HF rotate-half convention (transformers' Qwen2 apply_rotary_pos_emb).
 *  x [B, T, H, D] f32, pos [B, T] or [T] (i32/i64, no gradient), R = rot_dims (even, <= D), half = R/2.
 *  inv_freq[i] = theta^(-2i/R), a = pos[b, t] * inv_freq[i] (negated when inverse), for i < half:
 *    y[.., i]        = x[.., i] cos a - x[.., i + half] sin a
 *    y[.., i + half] = x[.., i + half] cos a + x[.., i] sin a
 *  channels >= R pass through. The rotation is orthogonal, so dx = rope(dy) with the negated angle
 *  (inverse = !inverse).
 *  CPU kernel: float32 like transformers (inv_freq = 1 / theta^(float(2i) / R), freqs = float(pos) * inv_freq,
 *  cos/sin in float32; with pos [T] each thread computes them once per position, in a scratch table).
 *  Reference kernel: everything in double. */
#include "common.h"
#include "../runtime/cpu/vmath.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  double theta;
  int rot_dims; /* resolved in the shape rule (<= 0 means D) */
  int inverse;
} rope_p;

static pv_tensor *rope_node(pv_graph *g, pv_tensor *x, pv_tensor *pos, double theta, int rot_dims, int inverse);

static pv_status rope_shape(pv_tensor *t) {
  rope_p *p = PV_PARAMS(rope_p, t);
  if (!pv_need_f32(t, 0) || !pv_need_ids(t, 1)) return t->graph->st;
  pv_tensor *x = t->src[0], *pos = t->src[1];
  char b1[128], b2[128];
  if (x->ndim != 4) return PV_FAIL(t, PV_ERR_SHAPE, "rope: x %s must be [B, T, H, D]", PV_SHAPESTR(b1, x));
  int ok = (pos->ndim == 2 && pos->shape[0] == x->shape[0] && pos->shape[1] == x->shape[1]) ||
           (pos->ndim == 1 && pos->shape[0] == x->shape[1]);
  if (!ok)
    return PV_FAIL(t, PV_ERR_SHAPE, "rope: pos %s must be [B, T] or [T] for x %s [B, T, H, D]", PV_SHAPESTR(b1, pos),
                   PV_SHAPESTR(b2, x));
  int64_t D = x->shape[3];
  if (p->rot_dims <= 0) {
    if (D > INT32_MAX) return PV_FAIL(t, PV_ERR_SHAPE, "rope: head dimension of x %s too large", PV_SHAPESTR(b1, x));
    p->rot_dims = (int)D;
  }
  if (p->rot_dims % 2 || p->rot_dims > D)
    return PV_FAIL(t, PV_ERR_SHAPE, "rope: rot_dims %d must be even and <= D for x %s", p->rot_dims,
                   PV_SHAPESTR(b1, x));
  if (!(p->theta > 0) || !isfinite(p->theta))
    return PV_FAIL(t, PV_ERR_INVALID, "rope: theta %g must be positive", p->theta);
  pv__set_shape(t, PV_F32, 4, x->shape);
  return PV_OK;
}

#define ROPE_CHUNK 64
/* inv[k] = 1 / theta^(2(i0 + k) / R) for k < n (float32, as transformers) */
static void rope_inv_freq(float *inv, float theta, int R, int i0, int n) {
  for (int k = 0; k < n; k++)
    inv[k] = 1.0f / powf(theta, (float)(2 * (i0 + k)) / (float)R);
}
static void rope_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  const rope_p *p = PV_CPARAMS(rope_p, t);
  const pv_tensor *pos_t = t->src[1];
  int64_t B = t->shape[0], T = t->shape[1], H = t->shape[2], D = t->shape[3];
  int R = p->rot_dims, half = R / 2;
  const float *x = a->src[0];
  float *y = a->dst;
  float theta = (float)p->theta, sgn = p->inverse ? -1.0f : 1.0f;
  float inv[ROPE_CHUNK], cs[ROPE_CHUNK], sn[ROPE_CHUNK];
  int one_chunk = half <= ROPE_CHUNK; /* then the frequencies are computed once */
  if (one_chunk) rope_inv_freq(inv, theta, R, 0, half);
  /* pos [T] with one chunk: this thread's cos/sin table [T][2][half] in scratch, filled on a position's first row */
  float *tab =
      pos_t->ndim == 1 && one_chunk ? (float *)a->scratch + (size_t)a->ith * (size_t)T * 2 * (size_t)half : NULL;
  int64_t r0, r1;
  pv_split(B * T, a->ith, a->nth, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) { /* r = b * T + t */
    int64_t pid = pos_t->ndim == 1 ? r % T : r;
    float pf = (float)pv_id_at(pos_t->dtype, a->src[1], pid);
    const float *xr = x + r * H * D;
    float *yr = y + r * H * D;
    for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
      int n = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
      const float *c = cs, *s = sn;
      if (tab && r - r0 >= T) { /* row r - T had the same position */
        c = tab + pid * 2 * half;
        s = c + half;
      } else {
        if (!one_chunk) rope_inv_freq(inv, theta, R, i0, n);
        for (int k = 0; k < n; k++) {
          float f = pf * inv[k];
          cs[k] = cosf(f);
          sn[k] = sgn * sinf(f);
        }
        if (tab) {
          memcpy(tab + pid * 2 * half, cs, sizeof(float) * (size_t)n);
          memcpy(tab + pid * 2 * half + half, sn, sizeof(float) * (size_t)n);
        }
      }
      /* y[i] = x[i] cos - x[i + half] sin, y[i + half] = x[i + half] cos + x[i] sin (in place safe) */
      pv__vm_rope_pairs(xr + i0, yr + i0, c, s, n, half, H, D);
    }
    if (R < D && yr != xr)
      for (int64_t h = 0; h < H; h++)
        for (int64_t c = R; c < D; c++) yr[h * D + c] = xr[h * D + c];
  }
}
static size_t rope_scratch(const pv_tensor *t, int nth) {
  const rope_p *p = PV_CPARAMS(rope_p, t);
  if (t->src[1]->ndim != 1 || p->rot_dims / 2 > ROPE_CHUNK) return 0;
  return (size_t)nth * (size_t)t->shape[1] * (size_t)p->rot_dims * sizeof(float);
}

static void rope_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)w, (void)err;
  const rope_p *p = PV_CPARAMS(rope_p, t);
  const pv_tensor *pos_t = t->src[1];
  int64_t B = t->shape[0], T = t->shape[1], H = t->shape[2], D = t->shape[3];
  int R = p->rot_dims, half = R / 2;
  for (int64_t b = 0; b < B; b++)
    for (int64_t tt = 0; tt < T; tt++) {
      double pos = s[1][pos_t->ndim == 1 ? tt : b * T + tt];
      for (int64_t h = 0; h < H; h++) {
        const double *xh = s[0] + ((b * T + tt) * H + h) * D;
        double *yh = y + ((b * T + tt) * H + h) * D;
        for (int i = 0; i < half; i++) {
          double ang = pos * pow(p->theta, -2.0 * i / (double)R);
          if (p->inverse) ang = -ang;
          double c = cos(ang), sn = sin(ang), x1 = xh[i], x2 = xh[i + half];
          yh[i] = x1 * c - x2 * sn;
          yh[i + half] = x2 * c + x1 * sn;
        }
        for (int64_t c = R; c < D; c++) yh[c] = xh[c];
      }
    }
}

static pv_status rope_backward(pv_graph *g, pv_tensor *t, pv_tensor *dy, const int *need, pv_tensor **dsrc) {
  (void)need;
  const rope_p *p = PV_CPARAMS(rope_p, t);
  dsrc[0] = rope_node(g, dy, t->src[1], p->theta, p->rot_dims, !p->inverse);
  return g->st;
}

/* Vulkan (shaders/rope.comp): one invocation per rotated channel pair or passed-through channel; the angle is
 * computed in float32 like the CPU kernel, with correctly rounded divisions and an exact range reduction so that
 * long positions agree with cosf / sinf. log2(theta) (of theta rounded to float, as the CPU uses) goes in as two
 * floats. */
static int rope_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  const rope_p *p = PV_CPARAMS(rope_p, t);
  const pv_tensor *pos = t->src[1];
  int64_t B = t->shape[0], T = t->shape[1], H = t->shape[2], D = t->shape[3], half = p->rot_dims / 2;
  int64_t n = B * T * H * (D - half);
  if (t->numel > UINT32_MAX || n > UINT32_MAX || 2 * pos->numel > UINT32_MAX) return 0;
  double l2 = log2((double)(float)p->theta);
  float lh = (float)l2, ll = (float)(l2 - (double)lh);
  int bind[3] = {-1, 0, 1};
  pv_vk_begin(d, "rope", 3, bind);
  pv_vk_push(d, (uint32_t)n);
  pv_vk_push(d, (uint32_t)T);
  pv_vk_push(d, (uint32_t)H);
  pv_vk_push(d, (uint32_t)D);
  pv_vk_push(d, (uint32_t)half);
  pv_vk_push(d, (uint32_t)p->rot_dims);
  pv_vk_push(d, pos->dtype == PV_I64 ? 1u : 0u);
  pv_vk_push(d, pos->ndim == 2 ? 1u : 0u);
  pv_vk_push(d, p->inverse ? 1u : 0u);
  pv_vk_pushf(d, lh);
  pv_vk_pushf(d, ll);
  pv_vk_grid(d, n, PV_VK_WG);
  d->work = (double)n * 60.0;
  return 1;
}

const pv_op_def pv_op_rope = {.name = "rope", .min_src = 2, .max_src = 2, .flags = PV_OPF_INPLACE, .nodiff = 2u,
                              .shape = rope_shape, .backward = rope_backward, .cpu = rope_cpu,
                              .cpu_scratch = rope_scratch, .ref = rope_ref, .vk = rope_vk};

static pv_tensor *rope_node(pv_graph *g, pv_tensor *x, pv_tensor *pos, double theta, int rot_dims, int inverse) {
  rope_p p = {theta, rot_dims, inverse};
  pv_tensor *s[2] = {x, pos};
  return pv__node(g, PV_OP_ROPE, 2, s, &p, sizeof p);
}

pv_tensor *pv_rope(pv_graph *g, pv_tensor *x, pv_tensor *pos, double theta, int rot_dims) {
  return rope_node(g, x, pos, theta, rot_dims, 0);
}
