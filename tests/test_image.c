/* test_image.c: image files (runtime/io/image.c): PNG/JPEG reading, Pillow-compatible bicubic resize, label masks,
 * atomic PNG writing, and errors on missing, truncated and malformed files. */
#include "pivot.h"
#include "testutil.h"
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static char g_path[1024];
static const char *tmp(const char *name) {
  snprintf(g_path, sizeof g_path, "%s/%s", pv_t_tmpdir(), name);
  return g_path;
}

static int names_file(pv_context *ctx, const char *path) { return strstr(pv_last_error(ctx), path) != NULL; }

/* Loads path with mean 0, std 1 and converts back to 8-bit HWC. */
static pv_status load_u8(pv_context *ctx, const char *path, int size, uint8_t *out) {
  static const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  float *f = malloc((size_t)size * size * 3 * sizeof(float));
  pv_status s = pv_image_load(ctx, path, size, mean, std, f);
  if (s == PV_OK)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < size * size; i++)
        out[i * 3 + c] = (uint8_t)lrintf(f[c * size * size + i] * 255.0f);
  free(f);
  return s;
}

static void from_rgb_u8(pv_context *ctx, const uint8_t *rgb, int w, int h, int size, uint8_t *out) {
  static const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  float *f = malloc((size_t)size * size * 3 * sizeof(float));
  pv_status s = pv_image_from_rgb8(ctx, rgb, w, h, size, mean, std, f);
  CHECK(s == PV_OK, "from_rgb8 %dx%d -> %d: %s", w, h, size, pv_last_error(ctx));
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < size * size; i++)
      out[i * 3 + c] = (uint8_t)lrintf(f[c * size * size + i] * 255.0f);
  free(f);
}

static void test_roundtrip(pv_context *ctx) {
  enum { N = 6 };
  uint8_t rgb[N * N * 3], grey[N * N], rgba[N * N * 4], back[N * N * 3];
  for (int i = 0; i < N * N; i++) {
    for (int c = 0; c < 3; c++)
      rgb[i * 3 + c] = (uint8_t)(i * 7 + c * 80);
    grey[i] = (uint8_t)(i * 5 + 3);
    for (int c = 0; c < 4; c++)
      rgba[i * 4 + c] = (uint8_t)(i * 3 + c * 60);
  }
  const char *p = tmp("rgb.png");
  CHECK(pv_png_write(ctx, p, N, N, 3, rgb) == PV_OK, "write rgb: %s", pv_last_error(ctx));
  int w = 0, h = 0, ch = 0;
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && w == N && h == N && ch == 3, "info rgb %d %d %d", w, h, ch);
  CHECK(load_u8(ctx, p, N, back) == PV_OK && !memcmp(back, rgb, sizeof rgb), "rgb roundtrip: %s", pv_last_error(ctx));
  p = tmp("grey.png");
  CHECK(pv_png_write(ctx, p, N, N, 1, grey) == PV_OK, "write grey: %s", pv_last_error(ctx));
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && ch == 1, "info grey channels %d", ch);
  CHECK(load_u8(ctx, p, N, back) == PV_OK, "load grey: %s", pv_last_error(ctx));
  int ok = 1;
  for (int i = 0; i < N * N; i++)
    ok &= back[i * 3] == grey[i] && back[i * 3 + 1] == grey[i] && back[i * 3 + 2] == grey[i];
  CHECK(ok, "grey replicated into RGB");
  p = tmp("rgba.png");
  CHECK(pv_png_write(ctx, p, N, N, 4, rgba) == PV_OK, "write rgba: %s", pv_last_error(ctx));
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && ch == 4, "info rgba channels %d", ch);
  CHECK(load_u8(ctx, p, N, back) == PV_OK, "load rgba: %s", pv_last_error(ctx));
  ok = 1;
  for (int i = 0; i < N * N; i++)
    for (int c = 0; c < 3; c++)
      ok &= back[i * 3 + c] == rgba[i * 4 + c];
  CHECK(ok, "alpha dropped");
  /* overwrite in place (atomic rename over an existing file) */
  p = tmp("rgb.png");
  CHECK(pv_png_write(ctx, p, N, N, 1, grey) == PV_OK, "overwrite: %s", pv_last_error(ctx));
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && ch == 1, "overwritten file is the new one");
  /* default normalisation (mean 0.5, std 0.5) and explicit ones */
  float f[N * N * 3];
  p = tmp("rgb2.png");
  pv_png_write(ctx, p, N, N, 3, rgb);
  CHECK(pv_image_load(ctx, p, N, NULL, NULL, f) == PV_OK, "load default norm");
  ok = 1;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < N * N; i++)
      ok &= fabsf(f[c * N * N + i] - (rgb[i * 3 + c] / 255.0f - 0.5f) / 0.5f) < 1e-6f;
  CHECK(ok, "default mean/std 0.5");
  const float mean[3] = {0.1f, 0.2f, 0.3f}, std[3] = {0.5f, 0.25f, 2.0f};
  CHECK(pv_image_load(ctx, p, N, mean, std, f) == PV_OK, "load custom norm");
  ok = 1;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < N * N; i++)
      ok &= fabsf(f[c * N * N + i] - (rgb[i * 3 + c] / 255.0f - mean[c]) / std[c]) < 1e-5f;
  CHECK(ok, "custom mean/std, CHW layout");
  const float zero_std[3] = {1, 0, 1};
  CHECK(pv_image_load(ctx, p, N, NULL, zero_std, f) == PV_ERR_INVALID, "std 0 rejected");
}

static void test_resize(pv_context *ctx) {
  /* a constant image stays constant */
  enum { W = 17, H = 9 };
  uint8_t c[W * H * 3];
  for (int i = 0; i < W * H; i++)
    c[i * 3] = 100, c[i * 3 + 1] = 150, c[i * 3 + 2] = 200;
  const char *p = tmp("const.png");
  pv_png_write(ctx, p, W, H, 3, c);
  int sizes[3] = {8, 40, 3};
  for (int s = 0; s < 3; s++) {
    int n = sizes[s];
    uint8_t *o = malloc((size_t)n * n * 3);
    CHECK(load_u8(ctx, p, n, o) == PV_OK, "load const -> %d", n);
    int ok = 1;
    for (int i = 0; i < n * n; i++)
      ok &= o[i * 3] == 100 && o[i * 3 + 1] == 150 && o[i * 3 + 2] == 200;
    CHECK(ok, "constant image resized to %d stays constant", n);
    free(o);
  }
  /* a horizontal gradient stays monotone along x and constant along y, up and down */
  enum { G = 16 };
  uint8_t g[G * G * 3];
  for (int y = 0; y < G; y++)
    for (int x = 0; x < G; x++)
      for (int k = 0; k < 3; k++)
        g[(y * G + x) * 3 + k] = (uint8_t)(x * 16 + k);
  p = tmp("grad.png");
  pv_png_write(ctx, p, G, G, 3, g);
  int gs[2] = {32, 8};
  for (int s = 0; s < 2; s++) {
    int n = gs[s];
    uint8_t *o = malloc((size_t)n * n * 3);
    CHECK(load_u8(ctx, p, n, o) == PV_OK, "load gradient -> %d", n);
    int mono = 1, flat = 1;
    for (int y = 0; y < n; y++)
      for (int x = 0; x < n; x++)
        for (int k = 0; k < 3; k++) {
          if (x > 0 && o[(y * n + x) * 3 + k] < o[(y * n + x - 1) * 3 + k]) mono = 0;
          if (o[(y * n + x) * 3 + k] != o[x * 3 + k]) flat = 0;
        }
    CHECK(mono && flat, "gradient %d -> %d: monotone %d, constant along y %d", G, n, mono, flat);
    CHECK(o[0] < 24 && o[(n - 1) * 3] > 220, "gradient ends %d %d", o[0], o[(n - 1) * 3]);
    free(o);
  }
}

/* Expected values from Pillow 13.0: Image.fromarray(a).resize((s, s), Image.BICUBIC) where
 * a[y, x, c] = (x*37 + y*91 + c*53 + (x*y*7) % 13) % 256; sum, a position-weighted checksum, first 12 and last 6
 * bytes of the HWC result. */
static void test_pil_bicubic(pv_context *ctx) {
  static const struct {
    int w, h, s;
    long sum, chk;
    int first[12], last[6];
  } ref[] = {
      {7, 5, 4, 6038, 148275, {28, 90, 148, 103, 140, 163, 162, 169, 179, 172, 111, 76}, {98, 74, 97, 97, 96, 154}},
      {7, 5, 12, 54221, 805717, {0, 41, 94, 1, 54, 106, 25, 78, 131, 48, 99, 168}, {59, 138, 190, 73, 151, 204}},
      {40,
       30,
       16,
       97904,
       637342,
       {83, 129, 147, 151, 123, 140, 117, 117, 124, 101, 132, 151},
       {101, 132, 162, 167, 120, 107}},
      {33,
       47,
       32,
       391980,
       130649,
       {27, 80, 145, 68, 132, 180, 115, 162, 122, 157, 109, 167},
       {195, 82, 128, 62, 112, 71}},
      {5,
       9,
       3,
       3388,
       47184,
       {96, 124, 138, 105, 123, 127, 151, 111, 150, 128, 147, 147},
       {125, 97, 113, 123, 136, 122}},
  };
  for (size_t t = 0; t < sizeof ref / sizeof ref[0]; t++) {
    int w = ref[t].w, h = ref[t].h, s = ref[t].s;
    uint8_t *a = malloc((size_t)w * h * 3), *o = malloc((size_t)s * s * 3);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++)
          a[(y * w + x) * 3 + c] = (uint8_t)((x * 37 + y * 91 + c * 53 + (x * y * 7) % 13) % 256);
    from_rgb_u8(ctx, a, w, h, s, o);
    long n = (long)s * s * 3, sum = 0, chk = 0;
    for (long i = 0; i < n; i++) {
      sum += o[i];
      chk = (chk + (long)o[i] * (i + 1) % 1000003) % 1000003;
    }
    int first = 1, last = 1;
    for (int i = 0; i < 12; i++)
      first &= o[i] == ref[t].first[i];
    for (int i = 0; i < 6; i++)
      last &= o[n - 6 + i] == ref[t].last[i];
    CHECK(sum == ref[t].sum && chk == ref[t].chk && first && last,
          "bicubic %dx%d -> %d differs from Pillow: sum %ld (want %ld), checksum %ld (want %ld), first %d, last %d", w,
          h, s, sum, ref[t].sum, chk, ref[t].chk, first, last);
    free(a);
    free(o);
  }
}

/* A 16x16 baseline JPEG (quality 95, no chroma subsampling) made by Pillow: left half (200, 60, 30), right half
 * (30, 60, 200). Embedded rather than written with stbi_write_jpg, whose bit writer shifts into the sign bit (UBSan).
 */
static const unsigned char jpeg16[] = {
    255, 216, 255, 224, 0,  16, 74,  70,  73, 70,  0,  1,   1,   0,   0,   1,   0,   1,   0,  0,   255, 219, 0,
    67,  0,   2,   1,   1,  1,  1,   1,   2,  1,   1,  1,   2,   2,   2,   2,   2,   4,   3,  2,   2,   2,   2,
    5,   4,   4,   3,   4,  6,  5,   6,   6,  6,   5,  6,   6,   6,   7,   9,   8,   6,   7,  9,   7,   6,   6,
    8,   11,  8,   9,   10, 10, 10,  10,  10, 6,   8,  11,  12,  11,  10,  12,  9,   10,  10, 10,  255, 219, 0,
    67,  1,   2,   2,   2,  2,  2,   2,   5,  3,   3,  5,   10,  7,   6,   7,   10,  10,  10, 10,  10,  10,  10,
    10,  10,  10,  10,  10, 10, 10,  10,  10, 10,  10, 10,  10,  10,  10,  10,  10,  10,  10, 10,  10,  10,  10,
    10,  10,  10,  10,  10, 10, 10,  10,  10, 10,  10, 10,  10,  10,  10,  10,  10,  10,  10, 10,  255, 192, 0,
    17,  8,   0,   16,  0,  16, 3,   1,   17, 0,   2,  17,  1,   3,   17,  1,   255, 196, 0,  20,  0,   1,   0,
    0,   0,   0,   0,   0,  0,  0,   0,   0,  0,   0,  0,   0,   0,   7,   255, 196, 0,   20, 16,  1,   0,   0,
    0,   0,   0,   0,   0,  0,  0,   0,   0,  0,   0,  0,   0,   0,   255, 196, 0,   21,  1,  1,   1,   0,   0,
    0,   0,   0,   0,   0,  0,  0,   0,   0,  0,   0,  0,   9,   8,   255, 196, 0,   20,  17, 1,   0,   0,   0,
    0,   0,   0,   0,   0,  0,  0,   0,   0,  0,   0,  0,   0,   255, 218, 0,   12,  3,   1,  0,   2,   17,  3,
    17,  0,   63,  0,   7,  76, 100, 128, 6,  114, 3,  185, 240, 27,  152, 128, 25,  200, 14, 239, 255, 217};

static void test_jpeg(pv_context *ctx) {
  uint8_t back[8 * 8 * 3];
  const char *p = tmp("img.jpg");
  FILE *f = fopen(p, "wb");
  CHECK(f && fwrite(jpeg16, 1, sizeof jpeg16, f) == sizeof jpeg16, "write jpeg fixture");
  fclose(f);
  int w = 0, h = 0, ch = 0;
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && w == 16 && h == 16 && ch == 3, "jpeg info %d %d %d", w, h, ch);
  CHECK(load_u8(ctx, p, 8, back) == PV_OK, "load jpeg: %s", pv_last_error(ctx));
  int ok = 1;
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++) {
      const uint8_t *q = back + (y * 8 + x) * 3;
      if (x < 3) ok &= abs(q[0] - 200) <= 6 && abs(q[1] - 60) <= 6 && abs(q[2] - 30) <= 6;
      if (x > 4) ok &= abs(q[0] - 30) <= 6 && abs(q[1] - 60) <= 6 && abs(q[2] - 200) <= 6;
    }
  CHECK(ok, "jpeg colours: left (%d %d %d), right (%d %d %d)", back[0], back[1], back[2], back[21], back[22], back[23]);
  /* a JPEG cut anywhere never crashes; stb fills a JPEG cut inside its entropy-coded data, so only a cut header
   * must be an error */
  const char *cut = tmp("cut.jpg");
  float out[8 * 8 * 3];
  int header_errors = 0, headers = 0;
  for (size_t n = 0; n < sizeof jpeg16; n++) {
    f = fopen(cut, "wb");
    fwrite(jpeg16, 1, n, f);
    fclose(f);
    pv_status s = pv_image_load(ctx, cut, 8, NULL, NULL, out);
    if (n < 100) headers++, header_errors += s == PV_ERR_FORMAT && strstr(pv_last_error(ctx), cut) != NULL;
  }
  CHECK(header_errors == headers, "JPEG cut in its header: %d of %d are errors naming the file", header_errors,
        headers);
}

static long file_size(const char *p) {
  FILE *f = fopen(p, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

static void test_errors(pv_context *ctx) {
  float out[4 * 4 * 3];
  int32_t m[16];
  const char *missing = tmp("no_such_file.png");
  CHECK(pv_image_load(ctx, missing, 4, NULL, NULL, out) == PV_ERR_IO && names_file(ctx, missing), "missing: %s",
        pv_last_error(ctx));
  CHECK(pv_image_info(ctx, missing, NULL, NULL, NULL) == PV_ERR_IO && names_file(ctx, missing), "info missing");
  CHECK(pv_mask_load(ctx, missing, 4, m) == PV_ERR_IO && names_file(ctx, missing), "mask missing");
  /* a text file named .png */
  char text[1024];
  snprintf(text, sizeof text, "%s", tmp("notes.png"));
  FILE *f = fopen(text, "w");
  fputs("this is not an image, just some text\n", f);
  fclose(f);
  CHECK(pv_image_load(ctx, text, 4, NULL, NULL, out) == PV_ERR_FORMAT && names_file(ctx, text), "text as png: %s",
        pv_last_error(ctx));
  CHECK(pv_image_info(ctx, text, NULL, NULL, NULL) == PV_ERR_FORMAT && names_file(ctx, text), "info text");
  CHECK(pv_mask_load(ctx, text, 4, m) == PV_ERR_FORMAT && names_file(ctx, text), "mask text: %s", pv_last_error(ctx));
  /* an empty file */
  snprintf(text, sizeof text, "%s", tmp("empty.png"));
  fclose(fopen(text, "w"));
  CHECK(pv_image_load(ctx, text, 4, NULL, NULL, out) == PV_ERR_FORMAT && names_file(ctx, text), "empty: %s",
        pv_last_error(ctx));
  /* argument checks */
  CHECK(pv_image_load(ctx, text, 0, NULL, NULL, out) == PV_ERR_INVALID, "size 0");
  CHECK(pv_image_load(ctx, NULL, 4, NULL, NULL, out) == PV_ERR_NULL, "NULL path");
  CHECK(pv_image_load(NULL, text, 4, NULL, NULL, out) == PV_ERR_NULL, "NULL ctx");
  uint8_t px[12] = {0};
  CHECK(pv_image_from_rgb8(ctx, px, 0, 2, 4, NULL, NULL, out) == PV_ERR_INVALID, "from_rgb8 width 0");
  CHECK(pv_png_write(ctx, tmp("x.png"), 2, 2, 2, px) == PV_ERR_INVALID, "png_write channels 2");
  CHECK(pv_png_write(ctx, tmp("x.png"), 0, 2, 3, px) == PV_ERR_INVALID, "png_write width 0");
  const char *nodir = tmp("no_such_dir/x.png");
  CHECK(pv_png_write(ctx, nodir, 2, 2, 3, px) == PV_ERR_IO && names_file(ctx, nodir), "png_write bad dir: %s",
        pv_last_error(ctx));

  /* a PNG truncated at every length never crashes; cut anywhere before the final IEND chunk it is an error */
  enum { N = 24 };
  uint8_t noisy[N * N * 3];
  uint32_t s = 12345;
  for (int i = 0; i < N * N * 3; i++)
    s = s * 1664525u + 1013904223u, noisy[i] = (uint8_t)(s >> 24);
  char full[1024], cut[1024];
  snprintf(full, sizeof full, "%s", tmp("full.png"));
  snprintf(cut, sizeof cut, "%s", tmp("truncated.png"));
  pv_png_write(ctx, full, N, N, 3, noisy);
  long len = file_size(full);
  uint8_t *bytes = malloc((size_t)len);
  f = fopen(full, "rb");
  CHECK(f && fread(bytes, 1, (size_t)len, f) == (size_t)len, "read back %ld bytes", len);
  fclose(f);
  int errors = 0, named = 0, tested = 0, mask_errors = 0;
  for (long n = 0; n < len; n++) {
    f = fopen(cut, "wb");
    fwrite(bytes, 1, (size_t)n, f);
    fclose(f);
    pv_status st = pv_image_load(ctx, cut, 4, NULL, NULL, out);
    int32_t mm[16];
    pv_status sm = pv_mask_load(ctx, cut, 4, mm);
    if (n < len - 12) { /* the last 12 bytes are the IEND chunk, which stb does not need */
      tested++;
      errors += st != PV_OK;
      named += st != PV_OK && names_file(ctx, cut);
      mask_errors += sm != PV_OK;
    }
  }
  CHECK(errors == tested && named == tested && mask_errors == tested,
        "truncated PNG (%ld bytes) cut at %d lengths: %d errors, %d name the file, %d mask errors", len, tested, errors,
        named, mask_errors);
  f = fopen(cut, "wb");
  fwrite(bytes, 1, (size_t)(len / 2), f);
  fclose(f);
  CHECK(pv_image_load(ctx, cut, 4, NULL, NULL, out) == PV_ERR_FORMAT, "half a PNG is a format error");
  printf("truncated PNG message: %s\n", pv_last_error(ctx));
  /* corrupted bytes inside the data: any status, no crash */
  for (long i = 40; i < len - 12; i += 17) {
    uint8_t save = bytes[i];
    bytes[i] ^= 0x5a;
    f = fopen(cut, "wb");
    fwrite(bytes, 1, (size_t)len, f);
    fclose(f);
    bytes[i] = save;
    pv_image_load(ctx, cut, 4, NULL, NULL, out);
  }
  CHECK(1, "corrupted PNGs did not crash");
  free(bytes);
  /* no temporary files are left behind */
  DIR *d = opendir(pv_t_tmpdir());
  int leftovers = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    leftovers += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  CHECK(leftovers == 0, "%d temporary files left", leftovers);
}

/* ------------------------------------------------------------ hand-made PNGs (palette, 16-bit) */

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return c ^ 0xffffffffu;
}
static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static size_t chunk(uint8_t *o, const char *type, const uint8_t *data, uint32_t n) {
  put32(o, n);
  memcpy(o + 4, type, 4);
  if (n) memcpy(o + 8, data, n);
  put32(o + 8 + n, crc32_png(o + 4, n + 4));
  return 12 + n;
}
/* Writes a PNG with raw (unfiltered) rows of rowbytes each, stored in an uncompressed zlib stream. */
static void write_raw_png(const char *path, int w, int h, int depth, int ctype, const uint8_t *rows, int rowbytes,
                          const uint8_t *plte, int nplte, const uint8_t *trns, int ntrns) {
  size_t raw_n = (size_t)h * (rowbytes + 1);
  uint8_t *raw = malloc(raw_n);
  for (int y = 0; y < h; y++)
    raw[y * (rowbytes + 1)] = 0, memcpy(raw + y * (rowbytes + 1) + 1, rows + y * rowbytes, rowbytes);
  uint8_t *z = malloc(raw_n + 64);
  size_t zn = 0;
  z[zn++] = 0x78, z[zn++] = 0x01;
  z[zn++] = 1; /* final stored block */
  z[zn++] = (uint8_t)raw_n, z[zn++] = (uint8_t)(raw_n >> 8), z[zn++] = (uint8_t)~raw_n,
  z[zn++] = (uint8_t)(~raw_n >> 8);
  memcpy(z + zn, raw, raw_n);
  zn += raw_n;
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < raw_n; i++)
    a = (a + raw[i]) % 65521, b = (b + a) % 65521;
  put32(z + zn, b << 16 | a);
  zn += 4;
  uint8_t *png = malloc(zn + 2048);
  size_t n = 0;
  static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  memcpy(png, sig, 8);
  n = 8;
  uint8_t ihdr[13];
  put32(ihdr, (uint32_t)w), put32(ihdr + 4, (uint32_t)h);
  ihdr[8] = (uint8_t)depth, ihdr[9] = (uint8_t)ctype, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
  n += chunk(png + n, "IHDR", ihdr, 13);
  if (plte) n += chunk(png + n, "PLTE", plte, (uint32_t)nplte * 3);
  if (trns) n += chunk(png + n, "tRNS", trns, (uint32_t)ntrns);
  n += chunk(png + n, "IDAT", z, (uint32_t)zn);
  n += chunk(png + n, "IEND", NULL, 0);
  FILE *f = fopen(path, "wb");
  fwrite(png, 1, n, f);
  fclose(f);
  free(raw), free(z), free(png);
}

static void test_masks(pv_context *ctx) {
  /* grey masks: Pillow NEAREST references, Image.fromarray(m).resize((s, s), Image.NEAREST) with
   * m[y, x] = (x*3 + y*11) % 23: sum, checksum, first 12 values */
  static const struct {
    int w, h, s;
    long sum, chk;
    int first[12];
  } ref[] = {
      {7, 5, 4, 174, 1612, {0, 6, 12, 18, 11, 17, 0, 6, 10, 16, 22, 5}},
      {7, 5, 12, 1612, 122463, {0, 0, 3, 6, 6, 9, 9, 12, 12, 15, 18, 18}},
      {20, 30, 30, 9856, 437065, {0, 3, 3, 6, 6, 9, 12, 15, 15, 18, 21, 21}},
      {30, 20, 45, 22308, 814678, {0, 3, 3, 6, 6, 9, 12, 15, 15, 18, 21, 21}},
      {64, 64, 33, 12060, 531415, {0, 6, 12, 18, 1, 7, 13, 19, 2, 8, 14, 20}},
  };
  for (size_t t = 0; t < sizeof ref / sizeof ref[0]; t++) {
    int w = ref[t].w, h = ref[t].h, s = ref[t].s;
    uint8_t *m = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        m[y * w + x] = (uint8_t)((x * 3 + y * 11) % 23);
    const char *p = tmp("mask.png");
    pv_png_write(ctx, p, w, h, 1, m);
    int32_t *o = malloc((size_t)s * s * sizeof(int32_t));
    CHECK(pv_mask_load(ctx, p, s, o) == PV_OK, "mask load: %s", pv_last_error(ctx));
    long sum = 0, chk = 0;
    int first = 1, labels_ok = 1;
    for (long i = 0; i < (long)s * s; i++) {
      sum += o[i];
      chk = (chk + (long)o[i] * (i + 1) % 1000003) % 1000003;
      int found = 0; /* nearest neighbour invents no label */
      for (int j = 0; j < w * h && !found; j++)
        found = m[j] == o[i];
      labels_ok &= found;
    }
    for (int i = 0; i < 12; i++)
      first &= o[i] == ref[t].first[i];
    CHECK(sum == ref[t].sum && chk == ref[t].chk && first && labels_ok,
          "nearest %dx%d -> %d differs from Pillow: sum %ld (want %ld), checksum %ld (want %ld), first %d, labels %d",
          w, h, s, sum, ref[t].sum, chk, ref[t].chk, first, labels_ok);
    free(m);
    free(o);
  }
  /* a colour PNG is a wrong image mode */
  uint8_t rgb[4 * 4 * 3] = {0};
  const char *p = tmp("colour_mask.png");
  pv_png_write(ctx, p, 4, 4, 3, rgb);
  int32_t o[64];
  CHECK(pv_mask_load(ctx, p, 4, o) == PV_ERR_FORMAT && names_file(ctx, p) && strstr(pv_last_error(ctx), "mode") &&
            strstr(pv_last_error(ctx), "RGB"),
        "RGB mask: %s", pv_last_error(ctx));
  pv_png_write(ctx, p, 2, 2, 4, rgb);
  CHECK(pv_mask_load(ctx, p, 4, o) == PV_ERR_FORMAT && strstr(pv_last_error(ctx), "RGBA"), "RGBA mask: %s",
        pv_last_error(ctx));
  /* a JPEG is not a mask */
  CHECK(pv_mask_load(ctx, tmp("img.jpg"), 4, o) == PV_ERR_FORMAT, "jpeg mask: %s", pv_last_error(ctx));

  /* palette masks give the indices, not the colours (8-bit with tRNS, and 4-bit) */
  uint8_t plte[16 * 3];
  for (int i = 0; i < 16; i++)
    plte[i * 3] = (uint8_t)(i * 16), plte[i * 3 + 1] = (uint8_t)(255 - i * 16), plte[i * 3 + 2] = 7;
  uint8_t idx[4 * 4], trns[3] = {0, 128, 255};
  for (int i = 0; i < 16; i++)
    idx[i] = (uint8_t)((i * 5) % 16);
  p = tmp("palette8.png");
  write_raw_png(p, 4, 4, 8, 3, idx, 4, plte, 16, trns, 3);
  int w = 0, h = 0, ch = 0;
  CHECK(pv_image_info(ctx, p, &w, &h, &ch) == PV_OK && w == 4 && h == 4, "hand-made palette PNG reads: %s",
        pv_last_error(ctx));
  CHECK(pv_mask_load(ctx, p, 4, o) == PV_OK, "palette mask: %s", pv_last_error(ctx));
  int ok = 1;
  for (int i = 0; i < 16; i++)
    ok &= o[i] == idx[i];
  CHECK(ok, "8-bit palette indices (%d %d %d %d)", o[0], o[1], o[2], o[3]);
  uint8_t packed[4 * 2];
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x += 2)
      packed[y * 2 + x / 2] = (uint8_t)(idx[y * 4 + x] << 4 | idx[y * 4 + x + 1]);
  p = tmp("palette4.png");
  write_raw_png(p, 4, 4, 4, 3, packed, 2, plte, 16, NULL, 0);
  CHECK(pv_mask_load(ctx, p, 8, o) == PV_OK, "4-bit palette mask: %s", pv_last_error(ctx));
  ok = 1;
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++)
      ok &= o[y * 8 + x] == idx[(y / 2) * 4 + x / 2];
  CHECK(ok, "4-bit palette indices, upscaled x2 nearest");
  /* 4-bit grey keeps its stored values (not stb's 0..255 scaling); 16-bit grey keeps values above 255 */
  p = tmp("grey4.png");
  write_raw_png(p, 4, 4, 4, 0, packed, 2, NULL, 0, NULL, 0);
  CHECK(pv_mask_load(ctx, p, 4, o) == PV_OK, "4-bit grey mask: %s", pv_last_error(ctx));
  ok = 1;
  for (int i = 0; i < 16; i++)
    ok &= o[i] == idx[i];
  CHECK(ok, "4-bit grey values");
  uint8_t g16[4 * 4 * 2];
  for (int i = 0; i < 16; i++)
    g16[i * 2] = (uint8_t)(i + 1), g16[i * 2 + 1] = (uint8_t)i; /* value 256*(i+1) + i */
  p = tmp("grey16.png");
  write_raw_png(p, 4, 4, 16, 0, g16, 8, NULL, 0, NULL, 0);
  CHECK(pv_mask_load(ctx, p, 4, o) == PV_OK, "16-bit grey mask: %s", pv_last_error(ctx));
  ok = 1;
  for (int i = 0; i < 16; i++)
    ok &= o[i] == 256 * (i + 1) + i;
  CHECK(ok, "16-bit grey values (%d)", o[1]);
}

int main(void) {
  pv_context *ctx = pv_context_new();
  test_roundtrip(ctx);
  test_resize(ctx);
  test_pil_bicubic(ctx);
  test_jpeg(ctx);
  test_errors(ctx);
  test_masks(ctx);
  pv_context_free(ctx);
  return pv_t_finish();
}
