/* world.c: the built-in world, a procedural dataset of simple scenes.
 *
 * A scene is a few objects (shape, colour, size) on a grid x grid lattice of cells, over a (textured) background,
 * with per-pixel noise. Scene `index` of stream `seed` is a pure function of (seed, index, config): three
 * splitmix64 streams (layout, background, pixel noise) are seeded from a hash of (seed, index), so scenes do not
 * depend on the order in which they are generated, and switching texture or noise keeps the same objects.
 *
 * Shapes are rasterised once per world into alpha masks (8x8 supersampling) for each (shape, size); an object's
 * box is pixel-aligned (integer corner, integer side), so squares, bars and crosses have crisp edges and the mask
 * does not depend on the position. A pixel belongs to an object when the mask's alpha is >= 1/2; the instance map
 * holds the topmost such object. No libm function is called (only integer and IEEE + - * /), so scenes do not depend
 * on the maths library.
 *
 * Pixels: a grey-brown background tone (45..115, with a warm tint), on textured worlds modulated by low-contrast
 * stripes, a checkerboard or smooth blotches (amplitude 8..22 levels); objects are alpha-blended in their colour (8
 * base colours, +-12 levels of jitter per channel and object); then every channel of every pixel gets uniform noise in
 * [-noise, +noise] * 255 before rounding to 8 bits. The f32 image is (rgb/255 - 0.5) / 0.5 of those 8-bit values.
 *
 * Sizes (side of the object's box, c = image_size / grid): small 0.55c (at least 5 px where the cell allows),
 * medium 0.75c, large 0.95c, each at most the cell (floor(c)). At 32 px with grid 3 that is 6, 8 and 10 px
 * (1.5, 2 and 2.5 patches of 4 px); at 64 px 12, 16 and 20 px.
 * Without occlusion an object's box stays inside its cell, so objects never overlap. With occlusion the box may
 * reach a third of its side into neighbouring cells (the image border clamps it); the generator re-draws the
 * positions (up to 8 times, then falls back to in-cell positions) until every object keeps at least half of its
 * pixels visible, so counts and attributes stay answerable. */
#include "internal.h"

#define W_NSHAPES 8
#define W_NCOLORS 8
#define W_NSIZES 3
#define W_SS 8            /* supersampling per axis for the masks */
#define W_RETRIES 8       /* placement re-draws with occlusion */
#define W_MIN_VISIBLE 0.5 /* fraction of an object's pixels that must stay visible */
#define W_COLOR_JITTER 12 /* +- per channel */

static const char *const shape_names[W_NSHAPES] = {"circle", "square", "triangle", "diamond",
                                                   "cross",  "ring",   "star",     "bar"};
static const char *const color_names[W_NCOLORS] = {"red",    "green",  "blue", "yellow",
                                                   "purple", "orange", "cyan", "white"};
static const int color_rgb[W_NCOLORS][3] = {{220, 40, 40},  {40, 180, 60},  {50, 90, 235},  {235, 215, 45},
                                            {155, 65, 205}, {245, 135, 25}, {40, 205, 215}, {240, 240, 240}};
static const char *const size_names[W_NSIZES] = {"small", "medium", "large"};

typedef struct w_mask {
  int d;                  /* side */
  uint8_t *alpha;         /* d*d coverage, 0..255 */
  int bx0, by0, bx1, by1; /* box of the pixels with alpha >= 128, relative to the object's corner */
  int pixels;             /* pixels with alpha >= 128 */
} w_mask;

struct pv_world {
  pv_context *ctx;
  pv_world_config cfg;
  int dsize[W_NSIZES];
  int cb[9]; /* cell boundaries in pixels: cell i spans [cb[i], cb[i+1]) */
  w_mask mask[W_NSHAPES][W_NSIZES];
};

/* ------------------------------------------------------------ random numbers */

typedef struct w_rng {
  uint64_t s;
} w_rng;

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static uint64_t rng_next(w_rng *r) {
  r->s += 0x9e3779b97f4a7c15ULL;
  return mix64(r->s);
}
static int rng_below(w_rng *r, int n) { /* uniform in [0, n), n >= 1 */
  return (int)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}
static int rng_range(w_rng *r, int lo, int hi) { /* uniform in [lo, hi] */
  return hi <= lo ? lo : lo + rng_below(r, hi - lo + 1);
}
static float rng_unit(w_rng *r) { /* [0, 1) */
  return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f);
}
static w_rng rng_stream(uint64_t seed, int64_t index, uint64_t stream) {
  w_rng r;
  r.s = mix64(mix64(seed ^ 0x5851f42d4c957f2dULL) ^ mix64((uint64_t)index + 0x14057b7ef767814fULL) ^
              (stream * 0xd1b54a32d192ed03ULL));
  return r;
}

/* ------------------------------------------------------------ shapes: u, v in [-1, 1], v pointing down */

static const float star_xy[10][2] = {{0.0f, -1.0f},
                                     {0.29389263f, -0.40450850f},
                                     {0.95105652f, -0.30901699f},
                                     {0.47552826f, 0.15450850f},
                                     {0.58778525f, 0.80901699f},
                                     {0.0f, 0.5f},
                                     {-0.58778525f, 0.80901699f},
                                     {-0.47552826f, 0.15450850f},
                                     {-0.95105652f, -0.30901699f},
                                     {-0.29389263f, -0.40450850f}};

static int inside_star(float u, float v) {
  /* the star spans v in [-1, 0.809]: centre it and scale it to fill the box */
  u = u / 1.05f;
  v = v / 1.05f - 0.09549150f;
  int in = 0;
  for (int i = 0, j = 9; i < 10; j = i++) {
    float xi = star_xy[i][0], yi = star_xy[i][1], xj = star_xy[j][0], yj = star_xy[j][1];
    if ((yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi) in = !in;
  }
  return in;
}

static int inside(int shape, float u, float v) {
  float au = u < 0 ? -u : u, av = v < 0 ? -v : v, r2 = u * u + v * v;
  switch (shape) {
  case 0: return r2 <= 1.0f;                                                 /* circle */
  case 1: return au <= 1.0f && av <= 1.0f;                                   /* square */
  case 2: return v <= 1.0f && au <= (v + 1.0f) * 0.5f;                       /* triangle, apex up */
  case 3: return au + av <= 1.0f;                                            /* diamond */
  case 4: return (au <= 0.34f && av <= 1.0f) || (av <= 0.34f && au <= 1.0f); /* cross (plus) */
  case 5: return r2 <= 1.0f && r2 >= 0.25f;                                  /* ring, hole of half the diameter */
  case 6: return inside_star(u, v);                                          /* five-pointed star */
  case 7: return au <= 1.0f && av <= 0.4f;                                   /* horizontal bar */
  default: return 0;
  }
}

static int make_mask(w_mask *m, int shape, int d) {
  m->d = d;
  m->alpha = malloc((size_t)d * d);
  if (!m->alpha) return 0;
  m->bx0 = d, m->by0 = d, m->bx1 = 0, m->by1 = 0, m->pixels = 0;
  float r = 0.5f * (float)d;
  for (int y = 0; y < d; y++)
    for (int x = 0; x < d; x++) {
      int n = 0;
      for (int sy = 0; sy < W_SS; sy++)
        for (int sx = 0; sx < W_SS; sx++) {
          float px = (float)x + ((float)sx + 0.5f) / W_SS, py = (float)y + ((float)sy + 0.5f) / W_SS;
          n += inside(shape, (px - r) / r, (py - r) / r);
        }
      int a = (n * 255 + W_SS * W_SS / 2) / (W_SS * W_SS);
      m->alpha[y * d + x] = (uint8_t)a;
      if (a >= 128) {
        m->pixels++;
        if (x < m->bx0) m->bx0 = x;
        if (y < m->by0) m->by0 = y;
        if (x + 1 > m->bx1) m->bx1 = x + 1;
        if (y + 1 > m->by1) m->by1 = y + 1;
      }
    }
  if (!m->pixels) m->bx0 = 0, m->by0 = 0, m->bx1 = d, m->by1 = d;
  return 1;
}

/* ------------------------------------------------------------ the world */

static int iround(double x) { return (int)(x + 0.5); }
static int iclamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

void pv_world_free(pv_world *w) {
  if (!w) return;
  for (int s = 0; s < W_NSHAPES; s++)
    for (int z = 0; z < W_NSIZES; z++)
      free(w->mask[s][z].alpha);
  free(w);
}

pv_status pv_world_new(pv_context *ctx, const pv_world_config *cfg, pv_world **out) {
  if (!ctx) return PV_ERR_NULL;
  if (!cfg || !out) return pv__err(ctx, PV_ERR_NULL, "pv_world_new: %s is NULL", cfg ? "out" : "cfg");
  *out = NULL;
  if (cfg->image_size < 8 || cfg->image_size > 1024)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: image_size %d out of range 8..1024", cfg->image_size);
  if (cfg->grid < 1 || cfg->grid > 8)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: grid %d out of range 1..8", cfg->grid);
  int cells = cfg->grid * cfg->grid;
  if (cfg->min_objects < 0 || cfg->min_objects > cells)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: min_objects %d out of range 0..%d (grid*grid)", cfg->min_objects,
                   cells);
  if (cfg->max_objects < cfg->min_objects || cfg->max_objects > cells)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: max_objects %d out of range %d..%d (min_objects..grid*grid)",
                   cfg->max_objects, cfg->min_objects, cells);
  if (!(cfg->noise >= 0.0f && cfg->noise <= 1.0f))
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: noise %g out of range 0..1", (double)cfg->noise);
  if (cfg->allow_occlusion != 0 && cfg->allow_occlusion != 1)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: allow_occlusion %d must be 0 or 1", cfg->allow_occlusion);
  if (cfg->textured != 0 && cfg->textured != 1)
    return pv__err(ctx, PV_ERR_INVALID, "pv_world_new: textured %d must be 0 or 1", cfg->textured);
  pv_world *w = calloc(1, sizeof *w);
  if (!w) return pv__err(ctx, PV_ERR_NOMEM, "pv_world_new: out of memory");
  w->ctx = ctx;
  w->cfg = *cfg;
  int S = cfg->image_size, g = cfg->grid;
  for (int i = 0; i <= g; i++)
    w->cb[i] = i * S / g;
  double c = (double)S / g;
  int ci = S / g;
  w->dsize[0] = iclamp(iround(0.55 * c), ci < 5 ? ci : 5, ci);
  w->dsize[1] = iclamp(iround(0.75 * c), w->dsize[0] + 1 < ci ? w->dsize[0] + 1 : ci, ci);
  w->dsize[2] = iclamp(iround(0.95 * c), w->dsize[1] + 1 < ci ? w->dsize[1] + 1 : ci, ci);
  for (int s = 0; s < W_NSHAPES; s++)
    for (int z = 0; z < W_NSIZES; z++)
      if (!make_mask(&w->mask[s][z], s, w->dsize[z])) {
        pv_world_free(w);
        return pv__err(ctx, PV_ERR_NOMEM, "pv_world_new: out of memory");
      }
  *out = w;
  return PV_OK;
}

int pv_world_count(const pv_world *w, const char *attribute) {
  if (!w || !attribute) return 0;
  if (!strcmp(attribute, "shape")) return W_NSHAPES;
  if (!strcmp(attribute, "color")) return W_NCOLORS;
  if (!strcmp(attribute, "size")) return W_NSIZES;
  return 0;
}

const char *pv_world_name(const pv_world *w, const char *attribute, int i) {
  if (!w || !attribute || i < 0) return NULL;
  if (!strcmp(attribute, "shape")) return i < W_NSHAPES ? shape_names[i] : NULL;
  if (!strcmp(attribute, "color")) return i < W_NCOLORS ? color_names[i] : NULL;
  if (!strcmp(attribute, "size")) return i < W_NSIZES ? size_names[i] : NULL;
  return NULL;
}

/* ------------------------------------------------------------ scenes */

typedef struct w_obj {
  int shape, color, size, cell;
  int x0, y0; /* corner of the box (pixels) */
  int rgb[3];
  int own, visible;
} w_obj;

/* Draws the corner of object o: inside its cell, or (occlusion) up to a third of its side beyond it. */
static void place(const pv_world *w, w_obj *o, w_rng *r, int occlude) {
  int S = w->cfg.image_size, g = w->cfg.grid, d = w->dsize[o->size];
  int cx = o->cell % g, cy = o->cell / g;
  int lo[2] = {w->cb[cx], w->cb[cy]}, hi[2] = {w->cb[cx + 1] - d, w->cb[cy + 1] - d};
  int ext = occlude ? d / 3 : 0;
  int *pos[2] = {&o->x0, &o->y0};
  for (int a = 0; a < 2; a++) {
    int l = iclamp(lo[a] - ext, 0, S - d), h = iclamp(hi[a] + ext, 0, S - d);
    *pos[a] = h < l ? l : rng_range(r, l, h);
  }
}

/* Owner map (0 background, k+1 topmost object k) and per-object pixel counts. */
static void rasterise_owner(const pv_world *w, w_obj *objs, int n, int32_t *owner) {
  int S = w->cfg.image_size;
  memset(owner, 0, (size_t)S * S * sizeof(int32_t));
  for (int k = 0; k < n; k++) {
    const w_mask *m = &w->mask[objs[k].shape][objs[k].size];
    objs[k].own = m->pixels;
    for (int y = 0; y < m->d; y++) {
      const uint8_t *a = m->alpha + (size_t)y * m->d;
      int32_t *row = owner + (size_t)(objs[k].y0 + y) * S + objs[k].x0;
      for (int x = 0; x < m->d; x++)
        if (a[x] >= 128) row[x] = k + 1;
    }
  }
  for (int k = 0; k < n; k++)
    objs[k].visible = 0;
  for (size_t i = 0; i < (size_t)S * S; i++)
    if (owner[i]) objs[owner[i] - 1].visible++;
}

static int occlusion_ok(const w_obj *objs, int n) {
  for (int k = 0; k < n; k++)
    if ((double)objs[k].visible < W_MIN_VISIBLE * objs[k].own) return 0;
  return 1;
}

static float tri_wave(float t) { /* period 1, range [-1, 1] */
  t -= (float)(int)t;
  return t < 0.5f ? 4.0f * t - 1.0f : 3.0f - 4.0f * t;
}

/* Background into img [S, S, 3] floats (0..255). */
static void background(const pv_world *w, w_rng *r, float *img) {
  int S = w->cfg.image_size;
  float base = (float)rng_range(r, 45, 115), tint = (float)rng_range(r, 0, 24);
  float tone[3] = {base + 0.6f * tint, base + 0.1f * tint, base - 0.6f * tint};
  int kind = rng_below(r, 3);
  float amp = (float)rng_range(r, 8, 22);
  float scale = (float)S / 32.0f;
  /* stripes */
  static const int dirs[4][2] = {{1, 0}, {0, 1}, {1, 1}, {1, -1}};
  int dir = rng_below(r, 4);
  float period = (float)rng_range(r, 4, 10) * scale, phase = rng_unit(r);
  /* checker */
  int cs = (int)((float)rng_range(r, 3, 8) * scale);
  if (cs < 1) cs = 1;
  int offx = rng_below(r, cs), offy = rng_below(r, cs);
  /* blotches: value noise on an L x L lattice, smoothstep-interpolated */
  enum { LMAX = 8 };
  int L = rng_range(r, 3, 6);
  float lat[LMAX + 1][LMAX + 1];
  for (int i = 0; i <= L; i++)
    for (int j = 0; j <= L; j++)
      lat[i][j] = 2.0f * rng_unit(r) - 1.0f;
  /* a second, slightly different tone for the texture's bright parts */
  float tone2[3] = {(float)rng_range(r, -6, 6), (float)rng_range(r, -6, 6), (float)rng_range(r, -6, 6)};
  int textured = w->cfg.textured;
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++) {
      float t = 0.0f;
      if (textured) {
        if (kind == 0) {
          t = tri_wave((float)(x * dirs[dir][0] + y * dirs[dir][1] + 4 * S) / period + phase);
        } else if (kind == 1) {
          t = (((x + offx) / cs + (y + offy) / cs) & 1) ? 1.0f : -1.0f;
        } else {
          float fx = (float)x * L / S, fy = (float)y * L / S;
          int ix = (int)fx, iy = (int)fy;
          float ax = fx - ix, ay = fy - iy;
          ax = ax * ax * (3 - 2 * ax);
          ay = ay * ay * (3 - 2 * ay);
          float a0 = lat[iy][ix] + (lat[iy][ix + 1] - lat[iy][ix]) * ax;
          float a1 = lat[iy + 1][ix] + (lat[iy + 1][ix + 1] - lat[iy + 1][ix]) * ax;
          t = a0 + (a1 - a0) * ay;
        }
      }
      float *p = img + ((size_t)y * S + x) * 3;
      for (int c = 0; c < 3; c++)
        p[c] = tone[c] + t * amp + (t > 0 ? t * tone2[c] : 0.0f);
    }
}

pv_status pv_world_scene(pv_world *w, uint64_t seed, int64_t index, uint8_t *rgb, float *image, int32_t *instance,
                         pv_world_object *objs, int max_objs, int *nobj) {
  if (!w) return PV_ERR_NULL;
  pv_context *ctx = w->ctx;
  if (index < 0) return pv__err(ctx, PV_ERR_INVALID, "pv_world_scene: index %lld must be >= 0", (long long)index);
  if (max_objs < 0) return pv__err(ctx, PV_ERR_INVALID, "pv_world_scene: max_objs %d must be >= 0", max_objs);
  const pv_world_config *cfg = &w->cfg;
  int S = cfg->image_size, g = cfg->grid;
  size_t npix = (size_t)S * S;
  float *img = malloc(npix * 3 * sizeof(float));
  int32_t *owner = instance ? instance : malloc(npix * sizeof(int32_t));
  if (!img || !owner) {
    free(img);
    if (owner != instance) free(owner);
    return pv__err(ctx, PV_ERR_NOMEM, "pv_world_scene: out of memory for a %dx%d scene", S, S);
  }

  /* layout */
  w_rng lr = rng_stream(seed, index, 1);
  w_obj o[64];
  int n = rng_range(&lr, cfg->min_objects, cfg->max_objects);
  int cellperm[64];
  for (int i = 0; i < g * g; i++)
    cellperm[i] = i;
  for (int k = 0; k < n; k++) { /* partial Fisher-Yates: n distinct cells */
    int j = k + rng_below(&lr, g * g - k);
    int t = cellperm[k];
    cellperm[k] = cellperm[j];
    cellperm[j] = t;
  }
  for (int k = 0; k < n; k++) {
    o[k].cell = cellperm[k];
    o[k].shape = rng_below(&lr, W_NSHAPES);
    o[k].color = rng_below(&lr, W_NCOLORS);
    o[k].size = rng_below(&lr, W_NSIZES);
    for (int c = 0; c < 3; c++)
      o[k].rgb[c] = iclamp(color_rgb[o[k].color][c] + rng_range(&lr, -W_COLOR_JITTER, W_COLOR_JITTER), 0, 255);
  }
  int occlude = cfg->allow_occlusion;
  for (int attempt = 0;; attempt++) {
    int in_cell = !occlude || attempt > W_RETRIES;
    for (int k = 0; k < n; k++)
      place(w, &o[k], &lr, !in_cell);
    rasterise_owner(w, o, n, owner);
    if (in_cell || occlusion_ok(o, n)) break;
  }

  /* pixels */
  w_rng br = rng_stream(seed, index, 2);
  background(w, &br, img);
  for (int k = 0; k < n; k++) {
    const w_mask *m = &w->mask[o[k].shape][o[k].size];
    float col[3] = {(float)o[k].rgb[0], (float)o[k].rgb[1], (float)o[k].rgb[2]};
    for (int y = 0; y < m->d; y++) {
      const uint8_t *a = m->alpha + (size_t)y * m->d;
      float *p = img + ((size_t)(o[k].y0 + y) * S + o[k].x0) * 3;
      for (int x = 0; x < m->d; x++, p += 3) {
        if (!a[x]) continue;
        float al = (float)a[x] * (1.0f / 255.0f);
        for (int c = 0; c < 3; c++)
          p[c] += (col[c] - p[c]) * al;
      }
    }
  }
  w_rng nr = rng_stream(seed, index, 3);
  float amp = cfg->noise * 255.0f * (2.0f / 65535.0f), off = cfg->noise * 255.0f;
  uint8_t *rgb8 = rgb;
  if (!rgb8 && image) rgb8 = malloc(npix * 3);
  if (rgb8 || image) {
    if (!rgb8) {
      free(img);
      if (owner != instance) free(owner);
      return pv__err(ctx, PV_ERR_NOMEM, "pv_world_scene: out of memory for a %dx%d scene", S, S);
    }
    uint64_t bits = 0;
    int left = 0;
    for (size_t i = 0; i < npix * 3; i++) {
      float v = img[i];
      if (cfg->noise > 0.0f) {
        if (!left) bits = rng_next(&nr), left = 4;
        v += (float)(bits & 0xffff) * amp - off; /* uniform in [-noise, noise] * 255 */
        bits >>= 16;
        left--;
      }
      int q = (int)(v + 0.5f);
      if (v < 0.0f) q = 0;
      rgb8[i] = (uint8_t)(q > 255 ? 255 : q);
    }
    if (image) {
      for (int c = 0; c < 3; c++) {
        float *dst = image + npix * c;
        for (size_t i = 0; i < npix; i++)
          dst[i] = ((float)rgb8[i * 3 + c] / 255.0f - 0.5f) / 0.5f;
      }
    }
    if (rgb8 != rgb) free(rgb8);
  }

  /* annotations */
  if (objs) {
    for (int k = 0; k < n && k < max_objs; k++) {
      const w_mask *m = &w->mask[o[k].shape][o[k].size];
      pv_world_object *ob = &objs[k];
      ob->shape = o[k].shape;
      ob->color = o[k].color;
      ob->size = o[k].size;
      ob->cell_x = o[k].cell % g;
      ob->cell_y = o[k].cell / g;
      ob->cx = o[k].x0 + m->d / 2;
      ob->cy = o[k].y0 + m->d / 2;
      ob->x0 = o[k].x0 + m->bx0;
      ob->y0 = o[k].y0 + m->by0;
      ob->x1 = o[k].x0 + m->bx1;
      ob->y1 = o[k].y0 + m->by1;
      ob->visible_pixels = o[k].visible;
    }
  }
  if (nobj) *nobj = n;
  free(img);
  if (owner != instance) free(owner);
  return PV_OK;
}
