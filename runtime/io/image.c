/* image.c: image files through stb_image / stb_image_write.
 *  - pv_image_load / pv_image_from_rgb8: decode (PNG, JPEG, BMP), convert to RGB, bicubic resize exactly as Pillow's
 *    Image.resize(size, BICUBIC) on an 8-bit image (separable Keys a=-0.5 kernel, support widened by the downscale
 *    factor, 22-bit fixed-point weights, two passes each rounded and clamped to uint8; the horizontal pass first unless
 *    the height shrinks more than twice as much as the width, as Pillow 13 does (older Pillow always ran the horizontal
 *    pass first: +-1 in a few pixels for such sizes), then normalise (x/255 - mean) / std into CHW f32. Checked
 *    bit-exact against Pillow 13.0 on 300 random sizes (1..90 px in, 1..224 px out).
 *  - pv_mask_load: one-channel PNG label masks (grey 1/2/4/8/16-bit or palette indices), resized with Pillow's NEAREST
 *    (src = floor((dst + 0.5) * in / out), x accumulated as Pillow does).
 *  - pv_png_write: encode into memory, write a temporary file in the same folder, fsync, rename (atomic). */
#include "internal.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* stb, private to this file (static functions: no symbol clashes with a host program that has its own copy). */
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
/* stb declares (static) functions that its STBI_ONLY_* options leave undefined; GCC reports those at the end of the
 * file, outside any push/pop region, so this one is ignored file-wide. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include "stb_image.h"
#include "stb_image_write.h"
#pragma GCC diagnostic pop

#define IMG_MAX_SIZE 16384 /* largest output side */
#define PIL_PRECISION_BITS (32 - 8 - 2)

/* ------------------------------------------------------------ reading files */

static pv_status read_file(pv_context *ctx, const char *path, unsigned char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return pv__err(ctx, PV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  unsigned char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (n == cap) {
      unsigned char *nb = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory (file too large)", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  int saved = errno;
  fclose(f);
  if (bad) {
    free(buf);
    return pv__err(ctx, PV_ERR_IO, "%s: read error: %s", path, strerror(saved));
  }
  if (n == 0) {
    free(buf);
    return pv__err(ctx, PV_ERR_FORMAT, "%s: empty file, not an image", path);
  }
  *data = buf;
  *len = n;
  return PV_OK;
}

static pv_status decode_error(pv_context *ctx, const char *path) {
  const char *why = stbi_failure_reason();
  return pv__err(ctx, PV_ERR_FORMAT, "%s: cannot decode image: %s (truncated, corrupt or unsupported data)", path,
                 why ? why : "unknown error");
}

pv_status pv_image_info(pv_context *ctx, const char *path, int *width, int *height, int *channels) {
  if (!ctx) return PV_ERR_NULL;
  if (!path) return pv__err(ctx, PV_ERR_NULL, "pv_image_info: path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) return pv__err(ctx, PV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  int w = 0, h = 0, c = 0;
  int ok = stbi_info_from_file(f, &w, &h, &c);
  fclose(f);
  if (!ok) return decode_error(ctx, path);
  if (width) *width = w;
  if (height) *height = h;
  if (channels) *channels = c;
  return PV_OK;
}

/* ------------------------------------------------------------ Pillow-compatible bicubic resize (8-bit) */

static double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Fixed-point coefficients of one pass: for output i, bounds[2i] = first input, bounds[2i+1] = count, and
 * kk[i*ksize .. +count] the weights. Returns ksize, 0 when out of memory. */
static int precompute(int in_size, int out_size, int **boundsp, int32_t **kkp) {
  double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  double *pre = malloc((size_t)out_size * ksize * sizeof(double));
  int32_t *kk = malloc((size_t)out_size * ksize * sizeof(int32_t));
  int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
  if (!pre || !kk || !bounds) {
    free(pre);
    free(kk);
    free(bounds);
    return 0;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = pre + (size_t)xx * ksize;
    int x = 0;
    for (; x < xmax; x++) {
      double w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (x = 0; x < xmax; x++)
      if (ww != 0.0) k[x] /= ww;
    for (; x < ksize; x++)
      k[x] = 0;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  for (size_t i = 0; i < (size_t)out_size * ksize; i++)
    kk[i] = pre[i] < 0 ? (int32_t)(-0.5 + pre[i] * (1 << PIL_PRECISION_BITS))
                       : (int32_t)(0.5 + pre[i] * (1 << PIL_PRECISION_BITS));
  free(pre);
  *boundsp = bounds;
  *kkp = kk;
  return ksize;
}

static inline uint8_t clip8(int32_t v) {
  if (v < 0) return 0;
  v >>= PIL_PRECISION_BITS;
  return v > 255 ? 255 : (uint8_t)v;
}

/* Resamples along x: in [h, win, c] -> out [h, wout, c]. */
static void pass_h(const uint8_t *in, int h, int win, int c, uint8_t *out, int wout, int ksize, const int *bounds,
                   const int32_t *kk) {
  for (int y = 0; y < h; y++) {
    const uint8_t *row = in + (size_t)y * win * c;
    uint8_t *orow = out + (size_t)y * wout * c;
    for (int xx = 0; xx < wout; xx++) {
      int xmin = bounds[xx * 2], n = bounds[xx * 2 + 1];
      const int32_t *k = kk + (size_t)xx * ksize;
      for (int ch = 0; ch < c; ch++) {
        int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
        for (int x = 0; x < n; x++)
          ss += row[(size_t)(x + xmin) * c + ch] * k[x];
        orow[(size_t)xx * c + ch] = clip8(ss);
      }
    }
  }
}

/* Resamples along y: in [hin, w, c] -> out [hout, w, c]. */
static void pass_v(const uint8_t *in, int w, int c, uint8_t *out, int hout, int ksize, const int *bounds,
                   const int32_t *kk) {
  size_t stride = (size_t)w * c;
  for (int yy = 0; yy < hout; yy++) {
    int ymin = bounds[yy * 2], n = bounds[yy * 2 + 1];
    const int32_t *k = kk + (size_t)yy * ksize;
    uint8_t *orow = out + (size_t)yy * stride;
    for (size_t i = 0; i < stride; i++) {
      int32_t ss = 1 << (PIL_PRECISION_BITS - 1);
      for (int y = 0; y < n; y++)
        ss += in[(size_t)(y + ymin) * stride + i] * k[y];
      orow[i] = clip8(ss);
    }
  }
}

/* Pillow's Image.resize((wout, hout), BICUBIC) of an 8-bit image with c interleaved channels.
 * out must hold wout*hout*c bytes. Returns 0 when out of memory. */
static int resize_bicubic_u8(const uint8_t *in, int win, int hin, int c, uint8_t *out, int wout, int hout) {
  int need_h = win != wout, need_v = hin != hout;
  if (!need_h && !need_v) {
    memcpy(out, in, (size_t)win * hin * c);
    return 1;
  }
  int *bh = NULL, *bv = NULL;
  int32_t *kh = NULL, *kv = NULL;
  uint8_t *tmp = NULL;
  int ok = 0;
  int ksh = need_h ? precompute(win, wout, &bh, &kh) : 1;
  int ksv = need_v ? precompute(hin, hout, &bv, &kv) : 1;
  if (!ksh || !ksv) goto done;
  if (need_h && need_v && hout < hin && hin - hout > (win - wout) * 2) {
    /* Pillow >= 13 runs the vertical pass first when the height shrinks more than twice as much as the width */
    tmp = malloc((size_t)win * hout * c);
    if (!tmp) goto done;
    pass_v(in, win, c, tmp, hout, ksv, bv, kv);
    pass_h(tmp, hout, win, c, out, wout, ksh, bh, kh);
  } else if (need_h && need_v) {
    tmp = malloc((size_t)wout * hin * c);
    if (!tmp) goto done;
    pass_h(in, hin, win, c, tmp, wout, ksh, bh, kh);
    pass_v(tmp, wout, c, out, hout, ksv, bv, kv);
  } else if (need_h) {
    pass_h(in, hin, win, c, out, wout, ksh, bh, kh);
  } else {
    pass_v(in, win, c, out, hout, ksv, bv, kv);
  }
  ok = 1;
done:
  free(bh);
  free(bv);
  free(kh);
  free(kv);
  free(tmp);
  return ok;
}

static pv_status check_norm(pv_context *ctx, const char *what, const float *mean, const float *std) {
  for (int c = 0; c < 3; c++) {
    if (mean && !isfinite(mean[c])) return pv__err(ctx, PV_ERR_INVALID, "%s: mean[%d] is not finite", what, c);
    if (std && (!isfinite(std[c]) || std[c] == 0.0f))
      return pv__err(ctx, PV_ERR_INVALID, "%s: std[%d] = %g must be finite and nonzero", what, c, (double)std[c]);
  }
  return PV_OK;
}

/* Resizes rgb [h, w, 3] to size x size and writes normalised CHW floats. */
static pv_status rgb_to_chw(pv_context *ctx, const char *what, const uint8_t *rgb, int w, int h, int size,
                            const float *mean, const float *std, float *out) {
  size_t plane = (size_t)size * size;
  uint8_t *res = malloc(plane * 3);
  if (!res) return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", what);
  if (!resize_bicubic_u8(rgb, w, h, 3, res, size, size)) {
    free(res);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", what);
  }
  for (int c = 0; c < 3; c++) {
    float m = mean ? mean[c] : 0.5f, s = std ? std[c] : 0.5f;
    float *o = out + plane * c;
    for (size_t i = 0; i < plane; i++)
      o[i] = ((float)res[i * 3 + c] / 255.0f - m) / s;
  }
  free(res);
  return PV_OK;
}

pv_status pv_image_from_rgb8(pv_context *ctx, const uint8_t *rgb, int width, int height, int size, const float *mean,
                             const float *std, float *out) {
  if (!ctx) return PV_ERR_NULL;
  if (!rgb || !out) return pv__err(ctx, PV_ERR_NULL, "pv_image_from_rgb8: %s is NULL", rgb ? "out" : "rgb");
  if (width < 1 || height < 1 || width > (1 << 24) || height > (1 << 24))
    return pv__err(ctx, PV_ERR_INVALID, "pv_image_from_rgb8: invalid image size %dx%d", width, height);
  if (size < 1 || size > IMG_MAX_SIZE)
    return pv__err(ctx, PV_ERR_INVALID, "pv_image_from_rgb8: output size %d out of range 1..%d", size, IMG_MAX_SIZE);
  pv_status s = check_norm(ctx, "pv_image_from_rgb8", mean, std);
  if (s) return s;
  return rgb_to_chw(ctx, "pv_image_from_rgb8", rgb, width, height, size, mean, std, out);
}

pv_status pv_image_load(pv_context *ctx, const char *path, int size, const float *mean, const float *std, float *out) {
  if (!ctx) return PV_ERR_NULL;
  if (!path || !out) return pv__err(ctx, PV_ERR_NULL, "pv_image_load: %s is NULL", path ? "out" : "path");
  if (size < 1 || size > IMG_MAX_SIZE)
    return pv__err(ctx, PV_ERR_INVALID, "%s: output size %d out of range 1..%d", path, size, IMG_MAX_SIZE);
  pv_status s = check_norm(ctx, path, mean, std);
  if (s) return s;
  unsigned char *data;
  size_t len;
  if ((s = read_file(ctx, path, &data, &len))) return s;
  if (len > INT_MAX) {
    free(data);
    return pv__err(ctx, PV_ERR_FORMAT, "%s: file too large (%zu bytes)", path, len);
  }
  int w = 0, h = 0, n = 0;
  uint8_t *rgb = stbi_load_from_memory(data, (int)len, &w, &h, &n, 3);
  free(data);
  if (!rgb) return decode_error(ctx, path);
  s = rgb_to_chw(ctx, path, rgb, w, h, size, mean, std, out);
  stbi_image_free(rgb);
  return s;
}

/* ------------------------------------------------------------ label masks */

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *png_mode_name(int color_type) {
  switch (color_type) {
  case 0: return "L (grey)";
  case 2: return "RGB";
  case 3: return "P (palette)";
  case 4: return "LA (grey with alpha)";
  case 6: return "RGBA";
  default: return "unknown";
  }
}

/* For a palette PNG: a copy whose IHDR says grey of the same bit depth, without PLTE and tRNS, so that stb decodes
 * the raw indices (stb does not check CRCs). NULL when out of memory or malformed (then *bad is set). */
static unsigned char *palette_as_grey(const unsigned char *d, size_t len, size_t *olen, int *bad) {
  unsigned char *o = malloc(len);
  *bad = 0;
  if (!o) return NULL;
  memcpy(o, d, 8);
  size_t p = 8, q = 8;
  while (p + 12 <= len) {
    uint32_t clen = be32(d + p);
    if (clen > len - p - 12) break; /* truncated chunk: copy the rest, stb reports it */
    const unsigned char *type = d + p + 4;
    size_t total = 12 + (size_t)clen;
    if (!memcmp(type, "PLTE", 4) || !memcmp(type, "tRNS", 4)) {
      p += total;
      continue;
    }
    memcpy(o + q, d + p, total);
    if (!memcmp(type, "IHDR", 4) && clen >= 13) o[q + 8 + 9] = 0; /* colour type byte */
    p += total;
    q += total;
  }
  if (p < len) {
    memcpy(o + q, d + p, len - p);
    q += len - p;
  }
  *olen = q;
  return o;
}

pv_status pv_mask_load(pv_context *ctx, const char *path, int size, int32_t *out) {
  if (!ctx) return PV_ERR_NULL;
  if (!path || !out) return pv__err(ctx, PV_ERR_NULL, "pv_mask_load: %s is NULL", path ? "out" : "path");
  if (size < 1 || size > IMG_MAX_SIZE)
    return pv__err(ctx, PV_ERR_INVALID, "%s: mask size %d out of range 1..%d", path, size, IMG_MAX_SIZE);
  unsigned char *data;
  size_t len;
  pv_status s = read_file(ctx, path, &data, &len);
  if (s) return s;
  static const unsigned char sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (len < 8 + 8 + 13 || memcmp(data, sig, 8) != 0 || memcmp(data + 12, "IHDR", 4) != 0 || len > INT_MAX) {
    free(data);
    return pv__err(ctx, PV_ERR_FORMAT, "%s: not a PNG file (a label mask must be a one-channel PNG)", path);
  }
  int depth = data[8 + 8 + 8], ctype = data[8 + 8 + 9];
  if (ctype != 0 && ctype != 3) {
    free(data);
    return pv__err(ctx, PV_ERR_FORMAT,
                   "%s: wrong image mode %s for a label mask: it must have one channel (grey or palette indices)", path,
                   png_mode_name(ctype));
  }
  if (ctype == 3) {
    size_t nlen = 0;
    int bad = 0;
    unsigned char *g = palette_as_grey(data, len, &nlen, &bad);
    free(data);
    if (!g) return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
    data = g;
    len = nlen;
  }
  int w = 0, h = 0, n = 0;
  void *pix;
  int is16 = depth == 16;
  if (is16)
    pix = stbi_load_16_from_memory(data, (int)len, &w, &h, &n, 1);
  else
    pix = stbi_load_from_memory(data, (int)len, &w, &h, &n, 1);
  free(data);
  if (!pix) return decode_error(ctx, path);
  /* stb scales grey of depth < 8 to 0..255: undo it so values are the stored labels/indices */
  int scale = depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1;
  /* Pillow NEAREST (ImagingScaleAffine): source coordinates accumulate (dst + 0.5) * in / out step by step */
  int *xin = malloc((size_t)size * sizeof(int));
  if (!xin) {
    stbi_image_free(pix);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
  }
  double ax = (double)w / size, ay = (double)h / size, xo = ax * 0.5, yo = ay * 0.5;
  for (int x = 0; x < size; x++, xo += ax) {
    int v = (int)xo;
    xin[x] = v < 0 ? 0 : v >= w ? w - 1 : v;
  }
  for (int y = 0; y < size; y++, yo += ay) {
    int yi = (int)yo;
    if (yi >= h) yi = h - 1;
    for (int x = 0; x < size; x++) {
      size_t src = (size_t)yi * w + xin[x];
      int32_t v = is16 ? ((const uint16_t *)pix)[src] : ((const uint8_t *)pix)[src];
      out[(size_t)y * size + x] = v / scale;
    }
  }
  free(xin);
  stbi_image_free(pix);
  return PV_OK;
}

/* ------------------------------------------------------------ writing PNGs */

typedef struct membuf {
  unsigned char *p;
  size_t n, cap;
  int failed;
} membuf;

static void membuf_write(void *ctx, void *data, int size) {
  membuf *m = ctx;
  if (m->failed || size <= 0) return;
  if (m->n + (size_t)size > m->cap) {
    size_t nc = m->cap ? m->cap : 4096;
    while (nc < m->n + (size_t)size)
      nc *= 2;
    unsigned char *np = realloc(m->p, nc);
    if (!np) {
      m->failed = 1;
      return;
    }
    m->p = np;
    m->cap = nc;
  }
  memcpy(m->p + m->n, data, (size_t)size);
  m->n += (size_t)size;
}

pv_status pv_png_write(pv_context *ctx, const char *path, int width, int height, int channels, const uint8_t *data) {
  if (!ctx) return PV_ERR_NULL;
  if (!path || !data) return pv__err(ctx, PV_ERR_NULL, "pv_png_write: %s is NULL", path ? "data" : "path");
  if (channels != 1 && channels != 3 && channels != 4)
    return pv__err(ctx, PV_ERR_INVALID, "%s: pv_png_write: channels %d must be 1, 3 or 4", path, channels);
  if (width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20) ||
      (int64_t)width * height * channels > INT_MAX / 2)
    return pv__err(ctx, PV_ERR_INVALID, "%s: pv_png_write: invalid image size %dx%d", path, width, height);
  membuf m = {0};
  int ok = stbi_write_png_to_func(membuf_write, &m, width, height, channels, data, width * channels);
  if (!ok || m.failed) {
    free(m.p);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: cannot encode PNG (out of memory)", path);
  }
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(m.p);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    pv_status s = pv__err(ctx, PV_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(tmp);
    free(m.p);
    return s;
  }
  (void)fchmod(fd, 0644); /* mkstemp creates 0600; umask() would be process-wide and racy */
  size_t off = 0;
  int err = 0;
  while (off < m.n) {
    ssize_t w = write(fd, m.p + off, m.n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    off += (size_t)w;
  }
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  free(m.p);
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    free(tmp);
    return pv__err(ctx, PV_ERR_IO, "%s: cannot write PNG: %s", path, strerror(err));
  }
  free(tmp);
  return PV_OK;
}
