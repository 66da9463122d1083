/* Context, errors, variables, dtype conversion and the seeded generator. */
#include "internal.h"
#include <math.h>
#include <unistd.h>

#define PV_VERSION_STR "0.1.0"

const char *pv_version(void) { return PV_VERSION_STR; }

extern const char pv__header_bytes[]; /* generated at build time from runtime/include/pivot.h */
const char *pv_header_text(void) { return pv__header_bytes; }

const char *pv_status_name(pv_status s) {
  static const char *names[] = {"PV_OK",        "PV_ERR_INVALID",  "PV_ERR_NULL",   "PV_ERR_SHAPE",
                                "PV_ERR_DTYPE", "PV_ERR_STATE",    "PV_ERR_IO",     "PV_ERR_FORMAT",
                                "PV_ERR_NOMEM", "PV_ERR_UNSUPPORTED", "PV_ERR_BACKEND", "PV_ERR_NOT_FOUND"};
  if ((int)s < 0 || (int)s >= (int)(sizeof names / sizeof names[0])) return "PV_ERR_UNKNOWN";
  return names[s];
}

const char *pv_dtype_name(pv_dtype t) {
  switch (t) {
  case PV_F32: return "f32";
  case PV_F16: return "f16";
  case PV_BF16: return "bf16";
  case PV_I32: return "i32";
  case PV_I64: return "i64";
  case PV_F64: return "f64";
  }
  return "invalid";
}

size_t pv_dtype_size(pv_dtype t) {
  switch (t) {
  case PV_F32: case PV_I32: return 4;
  case PV_F16: case PV_BF16: return 2;
  case PV_I64: case PV_F64: return 8;
  }
  return 0;
}

int pv__is_float(pv_dtype t) { return t == PV_F32 || t == PV_F16 || t == PV_BF16 || t == PV_F64; }
int pv__is_int(pv_dtype t) { return t == PV_I32 || t == PV_I64; }

pv_status pv__err(pv_context *ctx, pv_status st, const char *fmt, ...) {
  if (ctx) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
  }
  return st;
}

const char *pv_last_error(const pv_context *ctx) { return ctx ? ctx->err : "context is NULL"; }
void pv_clear_error(pv_context *ctx) {
  if (ctx) ctx->err[0] = 0;
}

void *pv__aligned_alloc(size_t bytes) {
  void *p = NULL;
  if (bytes == 0) bytes = 64;
  bytes = (bytes + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, bytes) != 0) return NULL;
  memset(p, 0, bytes);
  return p;
}
void pv__aligned_free(void *p) { free(p); }

const char *pv__shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t k = 0;
  if (cap == 0) return buf;
  k += (size_t)snprintf(buf + k, cap - k, "[");
  for (int i = 0; i < ndim && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
  return buf;
}

/* ------------------------------------------------------------ context */
pv_context *pv_context_new(void) {
  pv_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return NULL;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  ctx->threads = n > 0 ? (int)n : 1;
  const char *e = getenv("PIVOT_THREADS");
  if (e && atoi(e) > 0) ctx->threads = atoi(e);
  pv_set_seed(ctx, 0);
  return ctx;
}

void pv_context_free(pv_context *ctx) {
  if (!ctx) return;
  if (ctx->vk_free) ctx->vk_free(ctx);
  for (int i = 0; i < ctx->nvars; i++) {
    pv__aligned_free(ctx->vars[i]->data);
    free(ctx->vars[i]->name);
    free(ctx->vars[i]);
  }
  free(ctx->vars);
  free(ctx);
}

pv_status pv_set_threads(pv_context *ctx, int n) {
  if (!ctx) return PV_ERR_NULL;
  if (n < 1 || n > 256) return pv__err(ctx, PV_ERR_INVALID, "pv_set_threads: thread count %d out of range 1..256", n);
  ctx->threads = n;
  return PV_OK;
}
int pv_get_threads(const pv_context *ctx) { return ctx ? ctx->threads : 0; }

/* splitmix64 seeding, xoroshiro128+ stream */
static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
pv_status pv_set_seed(pv_context *ctx, uint64_t seed) {
  if (!ctx) return PV_ERR_NULL;
  uint64_t s = seed;
  ctx->rng[0] = splitmix(&s);
  ctx->rng[1] = splitmix(&s);
  return PV_OK;
}
static uint64_t rng_next(pv_context *ctx) {
  uint64_t s0 = ctx->rng[0], s1 = ctx->rng[1], r = s0 + s1;
  s1 ^= s0;
  ctx->rng[0] = ((s0 << 55) | (s0 >> 9)) ^ s1 ^ (s1 << 14);
  ctx->rng[1] = (s1 << 36) | (s1 >> 28);
  return r;
}
double pv__rng_uniform(pv_context *ctx) { return (double)(rng_next(ctx) >> 11) * (1.0 / 9007199254740992.0); }
double pv__rng_normal(pv_context *ctx) {
  double u1 = pv__rng_uniform(ctx), u2 = pv__rng_uniform(ctx);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ------------------------------------------------------------ dtype conversion */
float pv__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else { /* subnormal */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      man &= 0x3ff;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
uint16_t pv__f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = (int32_t)((x >> 23) & 0xff);
  uint32_t man = x & 0x7fffff;
  if (exp == 255) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
  exp = exp - 127 + 15;
  if (exp >= 31) return (uint16_t)(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return (uint16_t)sign;
    man |= 0x800000;
    uint32_t shift = (uint32_t)(14 - exp);
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)h;
}
float pv__bf16_to_f32(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}
uint16_t pv__f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

static double load_d(pv_dtype t, const void *p, int64_t i) {
  switch (t) {
  case PV_F32: return ((const float *)p)[i];
  case PV_F16: return pv__f16_to_f32(((const uint16_t *)p)[i]);
  case PV_BF16: return pv__bf16_to_f32(((const uint16_t *)p)[i]);
  case PV_I32: return ((const int32_t *)p)[i];
  case PV_I64: return (double)((const int64_t *)p)[i];
  case PV_F64: return ((const double *)p)[i];
  }
  return 0;
}
static void store_d(pv_dtype t, void *p, int64_t i, double v) {
  switch (t) {
  case PV_F32: ((float *)p)[i] = (float)v; break;
  case PV_F16: ((uint16_t *)p)[i] = pv__f32_to_f16((float)v); break;
  case PV_BF16: ((uint16_t *)p)[i] = pv__f32_to_bf16((float)v); break;
  case PV_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case PV_I64: ((int64_t *)p)[i] = (int64_t)v; break;
  case PV_F64: ((double *)p)[i] = v; break;
  }
}

void pv__convert(pv_dtype dt, void *dst, pv_dtype st, const void *src, int64_t n) {
  if (dt == st) {
    memcpy(dst, src, (size_t)n * pv_dtype_size(dt));
    return;
  }
  if (dt == PV_F32 && st == PV_F16) {
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = pv__f16_to_f32(((const uint16_t *)src)[i]);
  } else if (dt == PV_F32 && st == PV_BF16) {
    for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = pv__bf16_to_f32(((const uint16_t *)src)[i]);
  } else if (dt == PV_I64 && st == PV_I32) {
    for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = ((const int32_t *)src)[i];
  } else if (dt == PV_I32 && st == PV_I64) {
    for (int64_t i = 0; i < n; i++) ((int32_t *)dst)[i] = (int32_t)((const int64_t *)src)[i];
  } else {
    for (int64_t i = 0; i < n; i++) store_d(dt, dst, i, load_d(st, src, i));
  }
}

/* ------------------------------------------------------------ variables */
pv_status pv_var_new(pv_context *ctx, const char *name, pv_dtype dtype, int ndim, const int64_t *shape,
                     pv_var **out) {
  if (out) *out = NULL;
  if (!ctx) return PV_ERR_NULL;
  if (!name || !out || (ndim > 0 && !shape)) return pv__err(ctx, PV_ERR_NULL, "pv_var_new: NULL argument");
  if (pv_dtype_size(dtype) == 0) return pv__err(ctx, PV_ERR_DTYPE, "pv_var_new '%s': invalid dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > PV_MAX_DIMS)
    return pv__err(ctx, PV_ERR_SHAPE, "pv_var_new '%s': ndim %d out of range 0..%d", name, ndim, PV_MAX_DIMS);
  if (pv_var_find(ctx, name)) return pv__err(ctx, PV_ERR_INVALID, "pv_var_new: a variable named '%s' exists", name);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return pv__err(ctx, PV_ERR_SHAPE, "pv_var_new '%s': negative dimension %lld", name, (long long)shape[i]);
    numel *= shape[i];
  }
  pv_var *v = calloc(1, sizeof *v);
  if (!v) return pv__err(ctx, PV_ERR_NOMEM, "pv_var_new '%s': out of memory", name);
  v->ctx = ctx;
  v->name = strdup(name);
  v->dtype = dtype;
  v->ndim = ndim;
  for (int i = 0; i < ndim; i++) v->shape[i] = shape[i];
  v->numel = numel;
  v->data = pv__aligned_alloc((size_t)numel * pv_dtype_size(dtype));
  if (!v->data || !v->name) {
    free(v->name);
    pv__aligned_free(v->data);
    free(v);
    return pv__err(ctx, PV_ERR_NOMEM, "pv_var_new '%s': out of memory for %lld elements", name, (long long)numel);
  }
  if (ctx->nvars == ctx->cap_vars) {
    int nc = ctx->cap_vars ? ctx->cap_vars * 2 : 64;
    pv_var **nv = realloc(ctx->vars, sizeof *nv * (size_t)nc);
    if (!nv) {
      free(v->name);
      pv__aligned_free(v->data);
      free(v);
      return pv__err(ctx, PV_ERR_NOMEM, "pv_var_new: out of memory");
    }
    ctx->vars = nv;
    ctx->cap_vars = nc;
  }
  v->index = ctx->nvars;
  ctx->vars[ctx->nvars++] = v;
  v->host_version = 1;
  *out = v;
  return PV_OK;
}

pv_var *pv_var_find(pv_context *ctx, const char *name) {
  if (!ctx || !name) return NULL;
  for (int i = 0; i < ctx->nvars; i++)
    if (strcmp(ctx->vars[i]->name, name) == 0) return ctx->vars[i];
  return NULL;
}

pv_status pv_var_free(pv_var *v) {
  if (!v) return PV_ERR_NULL;
  pv_context *ctx = v->ctx;
  int k = v->index;
  if (ctx->vk_free && v->dev) { /* the Vulkan backend releases device copies lazily with the context */ }
  for (int i = k + 1; i < ctx->nvars; i++) {
    ctx->vars[i - 1] = ctx->vars[i];
    ctx->vars[i - 1]->index = i - 1;
  }
  ctx->nvars--;
  pv__aligned_free(v->data);
  free(v->name);
  free(v);
  return PV_OK;
}

int pv_var_count(const pv_context *ctx) { return ctx ? ctx->nvars : 0; }
pv_var *pv_var_at(const pv_context *ctx, int i) { return (ctx && i >= 0 && i < ctx->nvars) ? ctx->vars[i] : NULL; }
const char *pv_var_name(const pv_var *v) { return v ? v->name : ""; }
pv_dtype pv_var_dtype(const pv_var *v) { return v ? v->dtype : PV_F32; }
int pv_var_ndim(const pv_var *v) { return v ? v->ndim : 0; }
int64_t pv_var_dim(const pv_var *v, int i) {
  if (!v) return 0;
  if (i < 0) i += v->ndim;
  return (i >= 0 && i < v->ndim) ? v->shape[i] : 0;
}
int64_t pv_var_numel(const pv_var *v) { return v ? v->numel : 0; }

static pv_status var_sync(pv_var *v) {
  if (v->dev_version > v->host_version && v->ctx->vk_sync_var) return v->ctx->vk_sync_var(v->ctx, v);
  return PV_OK;
}

pv_status pv_var_write(pv_var *v, pv_dtype src_dtype, const void *data, int64_t count) {
  if (!v) return PV_ERR_NULL;
  if (!data) return pv__err(v->ctx, PV_ERR_NULL, "pv_var_write '%s': data is NULL", v->name);
  if (pv_dtype_size(src_dtype) == 0) return pv__err(v->ctx, PV_ERR_DTYPE, "pv_var_write '%s': invalid dtype", v->name);
  if (count != v->numel)
    return pv__err(v->ctx, PV_ERR_SHAPE, "pv_var_write '%s': %lld elements given, variable has %lld", v->name,
                   (long long)count, (long long)v->numel);
  if (pv__is_float(src_dtype) != pv__is_float(v->dtype) && !(v->dtype == PV_F32 || v->dtype == PV_F64))
    return pv__err(v->ctx, PV_ERR_DTYPE, "pv_var_write '%s': cannot write %s data into a %s variable", v->name,
                   pv_dtype_name(src_dtype), pv_dtype_name(v->dtype));
  pv__convert(v->dtype, v->data, src_dtype, data, count);
  v->host_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
  return PV_OK;
}

pv_status pv_var_read(pv_var *v, pv_dtype dst_dtype, void *out, int64_t count) {
  if (!v) return PV_ERR_NULL;
  if (!out) return pv__err(v->ctx, PV_ERR_NULL, "pv_var_read '%s': out is NULL", v->name);
  if (pv_dtype_size(dst_dtype) == 0) return pv__err(v->ctx, PV_ERR_DTYPE, "pv_var_read '%s': invalid dtype", v->name);
  if (count != v->numel)
    return pv__err(v->ctx, PV_ERR_SHAPE, "pv_var_read '%s': buffer of %lld elements, variable has %lld", v->name,
                   (long long)count, (long long)v->numel);
  pv_status st = var_sync(v);
  if (st) return st;
  pv__convert(dst_dtype, out, v->dtype, v->data, count);
  return PV_OK;
}

static void var_touch(pv_var *v) { v->host_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1; }

pv_status pv_var_fill(pv_var *v, double value) {
  if (!v) return PV_ERR_NULL;
  for (int64_t i = 0; i < v->numel; i++) store_d(v->dtype, v->data, i, value);
  var_touch(v);
  return PV_OK;
}
pv_status pv_var_init_normal(pv_var *v, double mean, double std) {
  if (!v) return PV_ERR_NULL;
  for (int64_t i = 0; i < v->numel; i++) store_d(v->dtype, v->data, i, mean + std * pv__rng_normal(v->ctx));
  var_touch(v);
  return PV_OK;
}
pv_status pv_var_init_uniform(pv_var *v, double lo, double hi) {
  if (!v) return PV_ERR_NULL;
  for (int64_t i = 0; i < v->numel; i++) store_d(v->dtype, v->data, i, lo + (hi - lo) * pv__rng_uniform(v->ctx));
  var_touch(v);
  return PV_OK;
}
