/* test_safetensors.c: round trips in every dtype, metadata, atomic saves, loading variables, the HF fixture,
 * and a set of malformed files that must each give a clean error (no crash). */
#include "internal.h"
#include "testutil.h"
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static char *tpath(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", pv_t_tmpdir(), name);
  return b;
}

/* Writes a file by hand: 8-byte header length hlen (little endian), then header, then ndata bytes 0..ndata-1. */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t ndata) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  unsigned char l[8];
  for (int i = 0; i < 8; i++) l[i] = (unsigned char)(hlen >> (8 * i));
  fwrite(l, 1, 8, f);
  fwrite(header, 1, strlen(header), f);
  for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
  fclose(f);
}

static void write_header_file(const char *path, const char *header, size_t ndata) {
  write_raw(path, strlen(header), header, ndata);
}

/* Opens a bad file: expects status want, no handle, and every needle in the message (and the path). */
static void expect_bad(pv_context *ctx, const char *path, pv_status want, const char *n1, const char *n2) {
  pv_safetensors *st = (pv_safetensors *)(uintptr_t)1;
  pv_clear_error(ctx);
  pv_status s = pv_st_open(ctx, path, &st);
  const char *msg = pv_last_error(ctx);
  CHECK(s == want, "%s: status %s, want %s (%s)", path, pv_status_name(s), pv_status_name(want), msg);
  CHECK(st == NULL, "%s: handle not NULL on error", path);
  CHECK(strstr(msg, path) != NULL, "%s: message does not name the path: %s", path, msg);
  CHECK(!n1 || strstr(msg, n1), "%s: message lacks '%s': %s", path, n1, msg);
  CHECK(!n2 || strstr(msg, n2), "%s: message lacks '%s': %s", path, n2, msg);
  if (s == PV_OK) pv_st_close(st);
}

static int count_tmp_files(void) {
  DIR *d = opendir(pv_t_tmpdir());
  int n = 0;
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static void test_roundtrip(pv_context *ctx) {
  const char *path = tpath("rt.safetensors");
  float f32[6] = {0.5f, -2.0f, 1.5f, 3.0f, 0.0f, 1024.0f};
  double f64[6] = {0.1, -1e300, 3.141592653589793, 0.0, -0.0, 1e-300};
  int32_t i32[5] = {0, -1, 2147483647, -2147483647 - 1, 12345};
  int64_t i64[4] = {0, -1, (int64_t)1 << 50, INT64_MIN};
  float scalar = 42.25f;
  const char *names[] = {"w.f32", "w.f16", "w.bf16", "w.f64", "ids.i32", "ids.i64", "scalar", "empty"};
  pv_dtype dtypes[] = {PV_F32, PV_F16, PV_BF16, PV_F64, PV_I32, PV_I64, PV_F32, PV_F16};
  pv_dtype srcs[] = {PV_F32, PV_F32, PV_F32, PV_F64, PV_I32, PV_I64, PV_F32, PV_F32};
  int ndims[] = {2, 2, 1, 1, 1, 2, 0, 2};
  int64_t s23[] = {2, 3}, s6[] = {6}, s5[] = {5}, s22[] = {2, 2}, s03[] = {0, 3};
  const int64_t *shapes[] = {s23, s23, s6, s6, s5, s22, NULL, s03};
  const void *datas[] = {f32, f32, f32, f64, i32, i64, &scalar, NULL};
  const char *meta = "{\"format\":\"pt\",\"step\":\"12\"}";
  pv_status s = pv_st_save(ctx, path, 8, names, dtypes, ndims, shapes, srcs, datas, meta);
  CHECK(s == PV_OK, "save: %s", pv_last_error(ctx));
  CHECK(count_tmp_files() == 0, "temporary file left behind");

  /* the data starts at a multiple of 8 */
  FILE *f = fopen(path, "rb");
  unsigned char l[8] = {0};
  CHECK(f && fread(l, 1, 8, f) == 8, "reread length");
  if (f) fclose(f);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | l[i];
  CHECK((8 + hlen) % 8 == 0, "header length %llu not padded", (unsigned long long)hlen);

  pv_safetensors *st = NULL;
  s = pv_st_open(ctx, path, &st);
  CHECK(s == PV_OK && st, "open: %s", pv_last_error(ctx));
  if (!st) return;
  CHECK(pv_st_count(st) == 8, "count %d", pv_st_count(st));
  for (int i = 0; i < 8 && i < pv_st_count(st); i++) {
    CHECK(strcmp(pv_st_name(st, i), names[i]) == 0, "name %d: %s", i, pv_st_name(st, i));
    CHECK(pv_st_find(st, names[i]) == i, "find %s", names[i]);
    CHECK(pv_st_dtype(st, i) == dtypes[i], "dtype %d", i);
    CHECK(pv_st_ndim(st, i) == ndims[i], "ndim %d", i);
    for (int d = 0; d < ndims[i]; d++) CHECK(pv_st_dim(st, i, d) == shapes[i][d], "dim %d %d", i, d);
  }
  CHECK(pv_st_find(st, "nope") == -1, "find missing");
  CHECK(pv_st_name(st, 8) == NULL && pv_st_name(st, -1) == NULL, "name out of range");
  CHECK(pv_st_dim(st, 0, -1) == 3, "negative dim index");
  CHECK(pv_st_metadata(st) && strcmp(pv_st_metadata(st), meta) == 0, "metadata %s",
        pv_st_metadata(st) ? pv_st_metadata(st) : "(null)");

  float fo[6];
  for (int t = 0; t < 3; t++) {
    memset(fo, 0xff, sizeof fo);
    s = pv_st_read(st, t, PV_F32, fo, 6);
    CHECK(s == PV_OK, "read %s: %s", names[t], pv_last_error(ctx));
    CHECK(memcmp(fo, f32, sizeof f32) == 0, "%s values differ", names[t]);
  }
  uint16_t h[6];
  CHECK(pv_st_read(st, 1, PV_F16, h, 6) == PV_OK, "read f16 native");
  for (int i = 0; i < 6; i++) CHECK(h[i] == pv__f32_to_f16(f32[i]), "f16 bits %d", i);
  CHECK(pv_st_read(st, 2, PV_BF16, h, 6) == PV_OK, "read bf16 native");
  for (int i = 0; i < 6; i++) CHECK(h[i] == pv__f32_to_bf16(f32[i]), "bf16 bits %d", i);
  double d6[6];
  CHECK(pv_st_read(st, 3, PV_F64, d6, 6) == PV_OK, "read f64");
  CHECK(memcmp(d6, f64, sizeof f64) == 0, "f64 values differ");
  CHECK(pv_st_read(st, 0, PV_F64, d6, 6) == PV_OK, "read f32 as f64");
  for (int i = 0; i < 6; i++) CHECK(d6[i] == (double)f32[i], "f32->f64 %d", i);
  int32_t io[5];
  CHECK(pv_st_read(st, 4, PV_I32, io, 5) == PV_OK, "read i32");
  CHECK(memcmp(io, i32, sizeof i32) == 0, "i32 values differ");
  int64_t lo[5];
  CHECK(pv_st_read(st, 4, PV_I64, lo, 5) == PV_OK, "read i32 as i64");
  for (int i = 0; i < 5; i++) CHECK(lo[i] == i32[i], "i32->i64 %d", i);
  CHECK(pv_st_read(st, 5, PV_I64, lo, 4) == PV_OK, "read i64");
  CHECK(memcmp(lo, i64, sizeof i64) == 0, "i64 values differ");
  float sc = 0;
  CHECK(pv_st_read(st, 6, PV_F32, &sc, 1) == PV_OK && sc == 42.25f, "scalar %g", (double)sc);
  CHECK(pv_st_numel(st, 6) == 1 && pv_st_ndim(st, 6) == 0, "scalar shape");
  CHECK(pv_st_numel(st, 7) == 0, "empty numel");
  CHECK(pv_st_read(st, 7, PV_F32, NULL, 0) == PV_OK, "read empty: %s", pv_last_error(ctx));

  /* read errors */
  s = pv_st_read(st, 0, PV_I32, io, 6);
  CHECK(s == PV_ERR_DTYPE && strstr(pv_last_error(ctx), "w.f32"), "float->int: %s", pv_last_error(ctx));
  s = pv_st_read(st, 4, PV_F32, fo, 5);
  CHECK(s == PV_ERR_DTYPE && strstr(pv_last_error(ctx), "ids.i32"), "int->float: %s", pv_last_error(ctx));
  s = pv_st_read(st, 0, PV_F32, fo, 5);
  CHECK(s == PV_ERR_SHAPE && strstr(pv_last_error(ctx), "w.f32"), "count mismatch: %s", pv_last_error(ctx));
  CHECK(pv_st_read(st, 99, PV_F32, fo, 6) == PV_ERR_INVALID, "index out of range");
  CHECK(pv_st_read(NULL, 0, PV_F32, fo, 6) == PV_ERR_NULL, "NULL handle");
  pv_st_close(st);

  /* rewrite the same path atomically, without metadata */
  s = pv_st_save(ctx, path, 1, names, dtypes, ndims, shapes, srcs, datas, NULL);
  CHECK(s == PV_OK, "resave: %s", pv_last_error(ctx));
  CHECK(pv_st_open(ctx, path, &st) == PV_OK, "reopen: %s", pv_last_error(ctx));
  if (st) {
    CHECK(pv_st_count(st) == 1 && pv_st_metadata(st) == NULL, "resaved content");
    pv_st_close(st);
  }
  CHECK(count_tmp_files() == 0, "temporary file left behind");

  /* save errors */
  const char *dup[] = {"a", "a"};
  s = pv_st_save(ctx, tpath("dup.safetensors"), 2, dup, dtypes, ndims, shapes, srcs, datas, NULL);
  CHECK(s == PV_ERR_INVALID && strstr(pv_last_error(ctx), "duplicate"), "duplicate names: %s", pv_last_error(ctx));
  const char *emp[] = {""};
  s = pv_st_save(ctx, tpath("emp.safetensors"), 1, emp, dtypes, ndims, shapes, srcs, datas, NULL);
  CHECK(s == PV_ERR_INVALID, "empty name: %s", pv_last_error(ctx));
  s = pv_st_save(ctx, tpath("m.safetensors"), 1, names, dtypes, ndims, shapes, srcs, datas, "{\"a\":1}");
  CHECK(s == PV_ERR_INVALID && strstr(pv_last_error(ctx), "metadata"), "non-string metadata: %s", pv_last_error(ctx));
  s = pv_st_save(ctx, tpath("m.safetensors"), 1, names, dtypes, ndims, shapes, srcs, datas, "[1]");
  CHECK(s == PV_ERR_INVALID, "metadata not an object");
  pv_dtype bad_src[] = {PV_I32};
  s = pv_st_save(ctx, tpath("m.safetensors"), 1, names, dtypes, ndims, shapes, bad_src, datas, NULL);
  CHECK(s == PV_ERR_DTYPE, "int data as float: %s", pv_last_error(ctx));
  const char *nodir = "/nonexistent_pivot_dir/x.safetensors";
  s = pv_st_save(ctx, nodir, 1, names, dtypes, ndims, shapes, srcs, datas, NULL);
  CHECK(s == PV_ERR_IO && strstr(pv_last_error(ctx), nodir), "unwritable path: %s", pv_last_error(ctx));
  CHECK(count_tmp_files() == 0, "temporary file left behind");
}

static void test_vars(pv_context *ctx) {
  const char *path = tpath("vars.safetensors");
  pv_var *w = NULL, *ids = NULL;
  int64_t s23[] = {2, 3}, s4[] = {4};
  CHECK(pv_var_new(ctx, "layer.w", PV_F32, 2, s23, &w) == PV_OK, "var new");
  CHECK(pv_var_new(ctx, "layer.ids", PV_I64, 1, s4, &ids) == PV_OK, "var new");
  if (!w || !ids) return;
  float wv[6] = {1, -2, 0.5f, 4, -0.125f, 8};
  int64_t iv[4] = {7, -7, (int64_t)1 << 40, 0};
  pv_var_write(w, PV_F32, wv, 6);
  pv_var_write(ids, PV_I64, iv, 4);
  pv_var *vs[] = {w, ids};
  pv_status s = pv_st_save_vars(ctx, path, 2, vs, NULL, PV_BF16, "{\"kind\":\"vars\"}");
  CHECK(s == PV_OK, "save_vars: %s", pv_last_error(ctx));

  pv_context *c2 = pv_context_new();
  pv_safetensors *st = NULL;
  CHECK(pv_st_open(c2, path, &st) == PV_OK, "open vars: %s", pv_last_error(c2));
  if (!st) {
    pv_context_free(c2);
    return;
  }
  int iw = pv_st_find(st, "layer.w"), ii = pv_st_find(st, "layer.ids");
  CHECK(iw >= 0 && ii >= 0, "var names");
  CHECK(pv_st_dtype(st, iw) == PV_BF16 && pv_st_dtype(st, ii) == PV_I64, "var dtypes");
  pv_var *w2 = NULL, *ids2 = NULL, *bad = NULL;
  pv_var_new(c2, "w", PV_F32, 2, s23, &w2);
  pv_var_new(c2, "ids", PV_I32, 1, s4, &ids2);
  uint64_t ver = w2->host_version;
  CHECK(pv_st_load_var(st, iw, w2) == PV_OK, "load w: %s", pv_last_error(c2));
  CHECK(w2->host_version > ver, "host_version not bumped");
  CHECK(pv_st_load_var(st, ii, ids2) == PV_OK, "load ids: %s", pv_last_error(c2));
  float wo[6];
  int32_t io[4];
  pv_var_read(w2, PV_F32, wo, 6);
  pv_var_read(ids2, PV_I32, io, 4);
  CHECK(memcmp(wo, wv, sizeof wv) == 0, "loaded w differs");
  CHECK(io[0] == 7 && io[1] == -7 && io[3] == 0, "loaded ids differ");

  int64_t s32[] = {3, 2};
  pv_var_new(c2, "wt", PV_F32, 2, s32, &bad);
  s = pv_st_load_var(st, iw, bad);
  const char *msg = pv_last_error(c2);
  CHECK(s == PV_ERR_SHAPE, "shape mismatch status %s", pv_status_name(s));
  CHECK(strstr(msg, "layer.w") && strstr(msg, "[2, 3]") && strstr(msg, "[3, 2]"), "shape mismatch message: %s", msg);
  s = pv_st_load_var(st, iw, ids2);
  CHECK(s == PV_ERR_DTYPE || s == PV_ERR_SHAPE, "float tensor into int var: %s", pv_status_name(s));
  pv_st_close(st);
  pv_context_free(c2);

  /* explicit names */
  const char *nm[] = {"a", "b"};
  CHECK(pv_st_save_vars(ctx, path, 2, vs, nm, PV_F32, NULL) == PV_OK, "save_vars named: %s", pv_last_error(ctx));
  CHECK(pv_st_open(ctx, path, &st) == PV_OK, "open");
  if (st) {
    CHECK(pv_st_find(st, "a") == 0 && pv_st_find(st, "b") == 1 && pv_st_dtype(st, 0) == PV_F32, "named vars");
    pv_st_close(st);
  }
}

static void test_bad_files(pv_context *ctx) {
  const char *p;
  p = tpath("truncated.safetensors"); /* 16 floats promised, 32 bytes present */
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}", 32);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "out of range (data size 32)");

  p = tpath("hlen_eof.safetensors");
  write_raw(p, 1000, "{}", 10);
  expect_bad(ctx, p, PV_ERR_FORMAT, "header length 1000", "past end");

  p = tpath("hlen_huge.safetensors");
  write_raw(p, UINT64_MAX, "{}", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "past end", NULL);

  p = tpath("badjson.safetensors");
  write_header_file(p, "{\"a\": {\"dtype\": ", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "invalid JSON", NULL);

  p = tpath("garbage.safetensors");
  write_header_file(p, "{} x", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "invalid JSON", NULL);

  p = tpath("notobject.safetensors");
  write_header_file(p, "[1, 2]", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "not an object", NULL);

  p = tpath("range.safetensors");
  write_header_file(p, "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[25],\"data_offsets\":[0,100]}}", 64);
  expect_bad(ctx, p, PV_ERR_FORMAT, "tensor 'a.weight': data_offsets [0, 100] out of range (data size 64)", NULL);

  p = tpath("overlap.safetensors");
  write_header_file(p,
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                    24);
  expect_bad(ctx, p, PV_ERR_FORMAT, "overlap", "'b'");

  p = tpath("mismatch.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16);
  expect_bad(ctx, p, PV_ERR_FORMAT, "shape/size mismatch", "'a'");

  p = tpath("dtype.safetensors");
  write_header_file(p, "{\"flag\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'flag'", "BOOL");

  p = tpath("negshape.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "shape");

  p = tpath("fracshape.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "shape");

  p = tpath("bigshape.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "shape");

  p = tpath("manydims.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "dimensions");

  p = tpath("beginend.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "begin > end");

  p = tpath("offsets3.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "data_offsets");

  p = tpath("nodtype.safetensors");
  write_header_file(p, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "dtype");

  p = tpath("noshape.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "shape");

  p = tpath("nooffsets.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", "data_offsets");

  p = tpath("entry.safetensors");
  write_header_file(p, "{\"a\":5}", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "'a'", NULL);

  p = tpath("dupname.safetensors");
  write_header_file(p,
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8);
  expect_bad(ctx, p, PV_ERR_FORMAT, "duplicate", "'a'");

  p = tpath("meta.safetensors");
  write_header_file(p, "{\"__metadata__\":[1]}", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "__metadata__", NULL);

  p = tpath("short.safetensors");
  {
    FILE *f = fopen(p, "wb");
    if (f) {
      fwrite("\x02\x00\x00\x00\x00", 1, 5, f);
      fclose(f);
    }
  }
  expect_bad(ctx, p, PV_ERR_FORMAT, "shorter than", NULL);

  p = tpath("empty.safetensors");
  {
    FILE *f = fopen(p, "wb");
    if (f) fclose(f);
  }
  expect_bad(ctx, p, PV_ERR_FORMAT, "shorter than", NULL);

  p = tpath("zero_header.safetensors");
  write_raw(p, 0, "", 0);
  expect_bad(ctx, p, PV_ERR_FORMAT, "invalid JSON", NULL);

  expect_bad(ctx, tpath("missing.safetensors"), PV_ERR_IO, "cannot open", NULL);
  expect_bad(ctx, pv_t_tmpdir(), PV_ERR_IO, NULL, NULL);

  /* valid edge cases: empty header object, padded header, empty tensor anywhere */
  pv_safetensors *st = NULL;
  p = tpath("ok_empty.safetensors");
  write_header_file(p, "{}      ", 0);
  CHECK(pv_st_open(ctx, p, &st) == PV_OK && pv_st_count(st) == 0, "empty header: %s", pv_last_error(ctx));
  pv_st_close(st);
  st = NULL;
  p = tpath("ok_zero.safetensors");
  write_header_file(p,
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"z\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[4,4]}}",
                    8);
  CHECK(pv_st_open(ctx, p, &st) == PV_OK && pv_st_count(st) == 2, "zero-size tensor: %s", pv_last_error(ctx));
  pv_st_close(st);

  /* unaligned data (header of odd length) converts through memcpy */
  st = NULL;
  p = tpath("odd.safetensors");
  write_header_file(p, "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[4,12]}}   ", 12);
  CHECK(pv_st_open(ctx, p, &st) == PV_OK, "odd header: %s", pv_last_error(ctx));
  if (st) {
    float a[2];
    int64_t b[2];
    CHECK(pv_st_read(st, 0, PV_F32, a, 2) == PV_OK, "read unaligned f16");
    CHECK(pv_st_read(st, 1, PV_I64, b, 2) == PV_OK, "read unaligned i32");
    CHECK(b[0] == 0x07060504 && b[1] == 0x0b0a0908, "unaligned i32 values %lld %lld", (long long)b[0],
          (long long)b[1]);
    pv_st_close(st);
  }
}

/* Every truncation and a set of byte corruptions of a valid file: open must fail or succeed cleanly. */
static void test_fuzz(pv_context *ctx) {
  const char *src = tpath("fuzzsrc.safetensors"), *dst = tpath("fuzz.safetensors");
  float a[6] = {1, 2, 3, 4, 5, 6};
  int64_t b[3] = {-1, 0, 1};
  const char *names[] = {"a", "b", "c"};
  pv_dtype dt[] = {PV_BF16, PV_I64, PV_F16}, sd[] = {PV_F32, PV_I64, PV_F32};
  int nd[] = {2, 1, 0};
  int64_t s23[] = {2, 3}, s3[] = {3};
  const int64_t *sh[] = {s23, s3, NULL};
  const void *da[] = {a, b, a};
  CHECK(pv_st_save(ctx, src, 3, names, dt, nd, sh, sd, da, "{\"format\":\"pt\"}") == PV_OK, "fuzz source: %s",
        pv_last_error(ctx));
  FILE *f = fopen(src, "rb");
  CHECK(f != NULL, "fuzz source");
  if (!f) return;
  static unsigned char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  int crashed_not = 0;
  for (size_t len = 0; len < n; len++) {
    f = fopen(dst, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    pv_safetensors *st = NULL;
    pv_status s = pv_st_open(ctx, dst, &st);
    if (s == PV_OK) pv_st_close(st);
    else crashed_not += (st == NULL && pv_last_error(ctx)[0] != 0);
  }
  CHECK(crashed_not == (int)n, "truncations: %d of %zu failed cleanly", crashed_not, n);
  uint64_t rng = 12345;
  unsigned char mod[4096];
  for (int it = 0; it < 2000; it++) {
    memcpy(mod, buf, n);
    for (int k = 0; k < 3; k++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      size_t pos = (size_t)(rng >> 33) % (n < 400 ? n : 400);
      mod[pos] = (unsigned char)(rng >> 17);
    }
    f = fopen(dst, "wb");
    fwrite(mod, 1, n, f);
    fclose(f);
    pv_safetensors *st = NULL;
    if (pv_st_open(ctx, dst, &st) == PV_OK) {
      for (int i = 0; i < pv_st_count(st); i++) {
        int64_t ne = pv_st_numel(st, i);
        if (ne > 1024) continue;
        double out[1024];
        int64_t l[1024];
        if (pv_st_read(st, i, PV_F64, out, ne) != PV_OK) pv_st_read(st, i, PV_I64, l, ne);
      }
      pv_st_close(st);
    } else
      CHECK(st == NULL, "handle after failed open");
  }
}

static void test_fixture(pv_context *ctx) {
  char path[1024];
  snprintf(path, sizeof path, "%s/hf/siglip/model.safetensors", pv_t_fixtures());
  pv_safetensors *st = NULL;
  pv_status s = pv_st_open(ctx, path, &st);
  CHECK(s == PV_OK && st, "fixture %s: %s", path, pv_last_error(ctx));
  if (!st) return;
  CHECK(pv_st_count(st) > 0, "fixture has no tensors");
  const char *meta = pv_st_metadata(st);
  CHECK(meta && strstr(meta, "\"format\""), "fixture metadata: %s", meta ? meta : "(null)");
  int64_t total = 0;
  for (int i = 0; i < pv_st_count(st); i++) {
    int64_t ne = pv_st_numel(st, i);
    total += ne;
    if (!pv__is_float(pv_st_dtype(st, i))) continue;
    float *buf = malloc(sizeof(float) * (size_t)(ne ? ne : 1));
    s = pv_st_read(st, i, PV_F32, buf, ne);
    CHECK(s == PV_OK, "fixture read %s: %s", pv_st_name(st, i), pv_last_error(ctx));
    int finite = 1;
    for (int64_t k = 0; k < ne; k++) finite &= buf[k] == buf[k] && buf[k] - buf[k] == 0;
    CHECK(finite, "fixture tensor %s has non-finite values", pv_st_name(st, i));
    free(buf);
  }
  CHECK(total > 0, "fixture holds no elements");
  pv_st_close(st);
}

/* Removes the files of this test's temporary directory and the directory itself. */
static void cleanup_tmpdir(void) {
  DIR *d = opendir(pv_t_tmpdir());
  if (!d) return;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", pv_t_tmpdir(), e->d_name);
      remove(path);
    }
  closedir(d);
  remove(pv_t_tmpdir());
}

int main(void) {
  pv_context *ctx = pv_context_new();
  CHECK(ctx != NULL, "context");
  if (!ctx) return pv_t_finish();
  test_roundtrip(ctx);
  test_vars(ctx);
  test_bad_files(ctx);
  test_fuzz(ctx);
  test_fixture(ctx);
  CHECK(pv_st_open(NULL, "x", NULL) == PV_ERR_NULL, "NULL ctx");
  pv_st_close(NULL);
  pv_context_free(ctx);
  cleanup_tmpdir();
  return pv_t_finish();
}
