/* safetensors.c: reading (mmap, header fully validated at open) and atomic writing of .safetensors files.
 * Format: 8-byte little-endian header length N, N bytes of JSON header, then the tensor data; each header entry
 * is {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the data section. */
#include "internal.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_CHUNK 1024                    /* elements per conversion chunk */
#define ST_MAX_INT 9007199254740992.0    /* 2^53: larger JSON numbers are not exact doubles */

typedef struct st_entry {
  char *name;
  pv_dtype dtype;
  int ndim;
  int64_t shape[PV_MAX_DIMS];
  int64_t numel;
  int64_t begin, end; /* byte offsets in the data section */
} st_entry;

struct pv_safetensors {
  pv_context *ctx;
  char *path;
  unsigned char *map; /* the whole file, read-only */
  size_t map_size;
  const unsigned char *data; /* map + 8 + header length */
  int64_t data_size;
  int n;
  st_entry *e;        /* in file order */
  st_entry **byname;  /* sorted by name, for pv_st_find */
  char *metadata;     /* unformatted JSON of __metadata__ (cJSON allocation), or NULL */
};

static const struct {
  const char *name;
  pv_dtype dtype;
} st_dtypes[] = {{"F32", PV_F32}, {"F16", PV_F16}, {"BF16", PV_BF16},
                 {"F64", PV_F64}, {"I32", PV_I32}, {"I64", PV_I64}};

static int dtype_from_name(const char *s, pv_dtype *out) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(s, st_dtypes[i].name) == 0) {
      *out = st_dtypes[i].dtype;
      return 1;
    }
  return 0;
}

static const char *dtype_file_name(pv_dtype t) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (st_dtypes[i].dtype == t) return st_dtypes[i].name;
  return NULL;
}

/* Converts n elements from src (any alignment) into dst (aligned for dt). */
static void convert_unaligned(pv_dtype dt, void *dst, pv_dtype srct, const unsigned char *src, int64_t n) {
  size_t ssz = pv_dtype_size(srct), dsz = pv_dtype_size(dt);
  if (n <= 0) return;
  if (dt == srct) {
    memcpy(dst, src, (size_t)n * ssz);
    return;
  }
  _Alignas(64) unsigned char buf[ST_CHUNK * 8];
  for (int64_t off = 0; off < n; off += ST_CHUNK) {
    int64_t k = n - off < ST_CHUNK ? n - off : ST_CHUNK;
    memcpy(buf, src + (size_t)off * ssz, (size_t)k * ssz);
    pv__convert(dt, (unsigned char *)dst + (size_t)off * dsz, srct, buf, k);
  }
}

/* ------------------------------------------------------------ reading */
static void st_free(pv_safetensors *st) {
  if (!st) return;
  if (st->map) munmap(st->map, st->map_size);
  for (int i = 0; i < st->n; i++) free(st->e[i].name);
  free(st->e);
  free(st->byname);
  if (st->metadata) cJSON_free(st->metadata);
  free(st->path);
  free(st);
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *j, int64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= ST_MAX_INT)) return 0;
  int64_t i = (int64_t)v;
  if ((double)i != v) return 0;
  *out = i;
  return 1;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static int cmp_range(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Parses and validates one header entry into e. */
static pv_status parse_entry(pv_safetensors *st, const cJSON *item, st_entry *e) {
  pv_context *ctx = st->ctx;
  const char *p = st->path, *nm = item->string;
  char sbuf[256];
  if (!cJSON_IsObject(item)) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", p, nm);
  e->name = strdup(nm);
  if (!e->name) return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", p);

  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  if (!dt) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", p, nm);
  if (!cJSON_IsString(dt)) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", p, nm);
  if (!dtype_from_name(dt->valuestring, &e->dtype))
    return pv__err(ctx, PV_ERR_FORMAT,
                   "%s: tensor '%s': unsupported dtype '%s' (supported: F32, F16, BF16, F64, I32, I64)", p, nm,
                   dt->valuestring);

  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
  if (!sh) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", p, nm);
  if (!cJSON_IsArray(sh)) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", p, nm);
  int nd = cJSON_GetArraySize(sh);
  if (nd > PV_MAX_DIMS)
    return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"shape\" has %d dimensions (at most %d supported)", p, nm,
                   nd, PV_MAX_DIMS);
  e->ndim = nd;
  e->numel = 1;
  int k = 0;
  const int64_t lim = INT64_MAX / 8;
  for (const cJSON *d = sh->child; d; d = d->next, k++) {
    if (!json_uint(d, &e->shape[k]))
      return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"shape\" dimension %d is not a non-negative integer", p,
                     nm, k);
    if (e->shape[k] > 0 && e->numel > lim / e->shape[k])
      return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"shape\" element count overflows", p, nm);
    e->numel *= e->shape[k];
  }

  const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!of) return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", p, nm);
  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &e->begin) ||
      !json_uint(of->child->next, &e->end))
    return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end] of non-negative integers",
                   p, nm);
  if (e->begin > e->end)
    return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] has begin > end", p, nm,
                   (long long)e->begin, (long long)e->end);
  if (e->end > st->data_size)
    return pv__err(ctx, PV_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] out of range (data size %lld)", p,
                   nm, (long long)e->begin, (long long)e->end, (long long)st->data_size);
  int64_t need = e->numel * (int64_t)pv_dtype_size(e->dtype);
  if (e->end - e->begin != need)
    return pv__err(ctx, PV_ERR_FORMAT,
                   "%s: tensor '%s': shape/size mismatch: shape %s of %s needs %lld bytes, data_offsets [%lld, %lld] "
                   "hold %lld",
                   p, nm, pv__shape_str(sbuf, sizeof sbuf, e->ndim, e->shape), dt->valuestring, (long long)need,
                   (long long)e->begin, (long long)e->end, (long long)(e->end - e->begin));
  return PV_OK;
}

/* Parses the header JSON (hdr, len bytes, NUL-terminated copy) and fills st. */
static pv_status parse_header(pv_safetensors *st, const char *hdr, size_t len) {
  pv_context *ctx = st->ctx;
  const char *p = st->path, *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(hdr, len, &end, 0);
  if (!root) {
    long long at = (end && end >= hdr && end <= hdr + len) ? (long long)(end - hdr) : -1;
    return pv__err(ctx, PV_ERR_FORMAT, "%s: invalid JSON header (error near byte %lld of %zu)", p, at, len);
  }
  for (const char *c = end; c && c < hdr + len; c++)
    if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
      cJSON_Delete(root);
      return pv__err(ctx, PV_ERR_FORMAT, "%s: invalid JSON header: unexpected data at byte %lld after the object", p,
                     (long long)(c - hdr));
    }
  pv_status s = PV_OK;
  if (!cJSON_IsObject(root)) {
    s = pv__err(ctx, PV_ERR_FORMAT, "%s: invalid header: the JSON is not an object", p);
    goto done;
  }
  int cap = cJSON_GetArraySize(root);
  st->e = calloc((size_t)cap + 1, sizeof *st->e);
  st->byname = calloc((size_t)cap + 1, sizeof *st->byname);
  if (!st->e || !st->byname) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory for %d header entries", p, cap);
    goto done;
  }
  int have_meta = 0;
  for (const cJSON *it = root->child; it; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) {
      if (have_meta++) {
        s = pv__err(ctx, PV_ERR_FORMAT, "%s: duplicate \"__metadata__\"", p);
        goto done;
      }
      if (!cJSON_IsObject(it)) {
        s = pv__err(ctx, PV_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", p);
        goto done;
      }
      st->metadata = cJSON_PrintUnformatted(it);
      if (!st->metadata) {
        s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", p);
        goto done;
      }
      continue;
    }
    st_entry *e = &st->e[st->n++];
    if ((s = parse_entry(st, it, e)) != PV_OK) goto done;
  }
  /* duplicate names */
  for (int i = 0; i < st->n; i++) st->byname[i] = &st->e[i];
  qsort(st->byname, (size_t)st->n, sizeof *st->byname, cmp_name);
  for (int i = 1; i < st->n; i++)
    if (strcmp(st->byname[i - 1]->name, st->byname[i]->name) == 0) {
      s = pv__err(ctx, PV_ERR_FORMAT, "%s: duplicate tensor name '%s'", p, st->byname[i]->name);
      goto done;
    }
  /* overlapping data (empty ranges hold no bytes and cannot overlap) */
  st_entry **r = calloc((size_t)st->n + 1, sizeof *r);
  if (!r) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", p);
    goto done;
  }
  int nr = 0;
  for (int i = 0; i < st->n; i++)
    if (st->e[i].end > st->e[i].begin) r[nr++] = &st->e[i];
  qsort(r, (size_t)nr, sizeof *r, cmp_range);
  for (int i = 1; i < nr; i++)
    if (r[i]->begin < r[i - 1]->end) {
      s = pv__err(ctx, PV_ERR_FORMAT, "%s: tensors '%s' data_offsets [%lld, %lld] and '%s' [%lld, %lld] overlap", p,
                  r[i - 1]->name, (long long)r[i - 1]->begin, (long long)r[i - 1]->end, r[i]->name,
                  (long long)r[i]->begin, (long long)r[i]->end);
      break;
    }
  free(r);
done:
  cJSON_Delete(root);
  return s;
}

pv_status pv_st_open(pv_context *ctx, const char *path, pv_safetensors **out) {
  if (out) *out = NULL;
  if (!ctx) return PV_ERR_NULL;
  if (!path || !out) return pv__err(ctx, PV_ERR_NULL, "pv_st_open: NULL argument");
  pv_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
  }
  st->ctx = ctx;
  pv_status s = PV_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  if (!S_ISREG(sb.st_mode)) {
    s = pv__err(ctx, PV_ERR_IO, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  if (sb.st_size < 8) {
    s = pv__err(ctx, PV_ERR_FORMAT, "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                (long long)sb.st_size);
    close(fd);
    goto fail;
  }
  if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
    s = pv__err(ctx, PV_ERR_IO, "%s: file too large to map", path);
    close(fd);
    goto fail;
  }
  void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int merr = errno;
  close(fd);
  if (m == MAP_FAILED) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot mmap: %s", path, strerror(merr));
    goto fail;
  }
  st->map = m;
  st->map_size = (size_t)sb.st_size;

  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | st->map[i];
  if (hlen > (uint64_t)sb.st_size - 8) {
    s = pv__err(ctx, PV_ERR_FORMAT, "%s: header length %llu past end of file (file size %lld)", path,
                (unsigned long long)hlen, (long long)sb.st_size);
    goto fail;
  }
  st->data = st->map + 8 + hlen;
  st->data_size = (int64_t)sb.st_size - 8 - (int64_t)hlen;
  /* parse a NUL-terminated copy so the JSON parser never reads past the header */
  char *hdr = malloc((size_t)hlen + 1);
  if (!hdr) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hlen);
    goto fail;
  }
  memcpy(hdr, st->map + 8, (size_t)hlen);
  hdr[hlen] = 0;
  s = parse_header(st, hdr, (size_t)hlen);
  free(hdr);
  if (s != PV_OK) goto fail;
  *out = st;
  return PV_OK;
fail:
  st_free(st);
  return s;
}

void pv_st_close(pv_safetensors *st) { st_free(st); }

int pv_st_count(const pv_safetensors *st) { return st ? st->n : 0; }

static const st_entry *entry(const pv_safetensors *st, int i) { return (st && i >= 0 && i < st->n) ? &st->e[i] : NULL; }

const char *pv_st_name(const pv_safetensors *st, int i) {
  const st_entry *e = entry(st, i);
  return e ? e->name : NULL;
}

int pv_st_find(const pv_safetensors *st, const char *name) {
  if (!st || !name || st->n == 0) return -1;
  st_entry key = {.name = (char *)name}, *kp = &key;
  st_entry **hit = bsearch(&kp, st->byname, (size_t)st->n, sizeof *st->byname, cmp_name);
  return hit ? (int)(*hit - st->e) : -1;
}

pv_dtype pv_st_dtype(const pv_safetensors *st, int i) {
  const st_entry *e = entry(st, i);
  return e ? e->dtype : PV_F32;
}

int pv_st_ndim(const pv_safetensors *st, int i) {
  const st_entry *e = entry(st, i);
  return e ? e->ndim : 0;
}

int64_t pv_st_dim(const pv_safetensors *st, int i, int d) {
  const st_entry *e = entry(st, i);
  if (!e) return 0;
  if (d < 0) d += e->ndim;
  return (d >= 0 && d < e->ndim) ? e->shape[d] : 0;
}

int64_t pv_st_numel(const pv_safetensors *st, int i) {
  const st_entry *e = entry(st, i);
  return e ? e->numel : 0;
}

const char *pv_st_metadata(const pv_safetensors *st) { return st ? st->metadata : NULL; }

/* Common checks of pv_st_read / pv_st_load_var. */
static pv_status check_read(pv_safetensors *st, int i, pv_dtype dst, const char *fn) {
  if (i < 0 || i >= st->n)
    return pv__err(st->ctx, PV_ERR_INVALID, "%s: %s: tensor index %d out of range 0..%d", st->path, fn, i, st->n - 1);
  const st_entry *e = &st->e[i];
  if (pv_dtype_size(dst) == 0)
    return pv__err(st->ctx, PV_ERR_DTYPE, "%s: %s: tensor '%s': invalid destination dtype %d", st->path, fn, e->name,
                   (int)dst);
  if (pv__is_float(dst) != pv__is_float(e->dtype))
    return pv__err(st->ctx, PV_ERR_DTYPE, "%s: %s: tensor '%s': cannot convert %s data to %s", st->path, fn, e->name,
                   dtype_file_name(e->dtype), pv_dtype_name(dst));
  return PV_OK;
}

pv_status pv_st_read(pv_safetensors *st, int i, pv_dtype dst_dtype, void *out, int64_t count) {
  if (!st) return PV_ERR_NULL;
  pv_status s = check_read(st, i, dst_dtype, "pv_st_read");
  if (s) return s;
  const st_entry *e = &st->e[i];
  if (count != e->numel)
    return pv__err(st->ctx, PV_ERR_SHAPE, "%s: pv_st_read: tensor '%s': buffer of %lld elements, tensor has %lld",
                   st->path, e->name, (long long)count, (long long)e->numel);
  if (!out && count > 0)
    return pv__err(st->ctx, PV_ERR_NULL, "%s: pv_st_read: tensor '%s': out is NULL", st->path, e->name);
  convert_unaligned(dst_dtype, out, e->dtype, st->data + e->begin, e->numel);
  return PV_OK;
}

pv_status pv_st_load_var(pv_safetensors *st, int i, pv_var *v) {
  if (!st) return PV_ERR_NULL;
  if (!v) return pv__err(st->ctx, PV_ERR_NULL, "%s: pv_st_load_var: variable is NULL", st->path);
  pv_status s = check_read(st, i, v->dtype, "pv_st_load_var");
  if (s) return s;
  const st_entry *e = &st->e[i];
  int same = e->ndim == v->ndim;
  for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == v->shape[d];
  if (!same) {
    char a[256], b[256];
    return pv__err(st->ctx, PV_ERR_SHAPE, "%s: tensor '%s': file shape %s does not match variable '%s' shape %s",
                   st->path, e->name, pv__shape_str(a, sizeof a, e->ndim, e->shape), v->name,
                   pv__shape_str(b, sizeof b, v->ndim, v->shape));
  }
  convert_unaligned(v->dtype, v->data, e->dtype, st->data + e->begin, e->numel);
  v->host_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
  return PV_OK;
}

/* ------------------------------------------------------------ writing */
static cJSON *json_int_array(int n, const int64_t *vals) {
  cJSON *a = cJSON_CreateArray();
  char buf[32];
  for (int i = 0; a && i < n; i++) {
    snprintf(buf, sizeof buf, "%lld", (long long)vals[i]); /* raw: exact for any int64 */
    cJSON *x = cJSON_CreateRaw(buf);
    if (!x) {
      cJSON_Delete(a);
      return NULL;
    }
    cJSON_AddItemToArray(a, x);
  }
  return a;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Validates the arguments of pv_st_save and builds the header text, padded with spaces so that the data (after
 * the 8-byte length prefix) starts at a multiple of 8. On success *hdr is malloc'd, *hlen is its padded length
 * and *nbytes the data size. */
static pv_status build_header(pv_context *ctx, const char *path, int n, const char *const *names,
                              const pv_dtype *dtypes, const int *ndims, const int64_t *const *shapes,
                              const pv_dtype *srct, const void *const *datas, const char *metadata,
                              int64_t *nbytes, char **hdr, size_t *hlen) {
  pv_status s = PV_OK;
  cJSON *root = cJSON_CreateObject();
  const char **sorted = malloc(sizeof *sorted * ((size_t)n + 1));
  if (!root || !sorted) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  if (metadata) {
    cJSON *m = cJSON_ParseWithOpts(metadata, NULL, 1); /* 1: nothing may follow the object */
    if (!cJSON_IsObject(m)) {
      cJSON_Delete(m);
      s = pv__err(ctx, PV_ERR_INVALID, "%s: metadata is not a JSON object", path);
      goto done;
    }
    for (const cJSON *it = m->child; it; it = it->next)
      if (!cJSON_IsString(it)) {
        s = pv__err(ctx, PV_ERR_INVALID, "%s: metadata value of '%s' is not a string", path, it->string);
        cJSON_Delete(m);
        goto done;
      }
    cJSON_AddItemToObject(root, "__metadata__", m);
  }
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    const char *nm = names[i];
    if (!nm || !nm[0]) {
      s = pv__err(ctx, PV_ERR_INVALID, "%s: tensor %d has an empty name", path, i);
      goto done;
    }
    if (strcmp(nm, "__metadata__") == 0) {
      s = pv__err(ctx, PV_ERR_INVALID, "%s: tensor %d: the name '__metadata__' is reserved", path, i);
      goto done;
    }
    sorted[i] = nm;
    const char *fname = dtype_file_name(dtypes[i]);
    if (!fname || pv_dtype_size(srct[i]) == 0) {
      s = pv__err(ctx, PV_ERR_DTYPE, "%s: tensor '%s': invalid dtype", path, nm);
      goto done;
    }
    if (pv__is_float(dtypes[i]) != pv__is_float(srct[i])) {
      s = pv__err(ctx, PV_ERR_DTYPE, "%s: tensor '%s': cannot store %s data as %s", path, nm,
                  pv_dtype_name(srct[i]), fname);
      goto done;
    }
    if (ndims[i] < 0 || ndims[i] > PV_MAX_DIMS || (ndims[i] > 0 && !shapes[i])) {
      s = pv__err(ctx, PV_ERR_SHAPE, "%s: tensor '%s': invalid ndim %d or NULL shape", path, nm, ndims[i]);
      goto done;
    }
    int64_t numel = 1;
    for (int d = 0; d < ndims[i]; d++) {
      int64_t x = shapes[i][d];
      if (x < 0 || (x > 0 && numel > (INT64_MAX / 8) / x)) {
        s = pv__err(ctx, PV_ERR_SHAPE, "%s: tensor '%s': invalid dimension %lld", path, nm, (long long)x);
        goto done;
      }
      numel *= x;
    }
    if (numel > 0 && !datas[i]) {
      s = pv__err(ctx, PV_ERR_NULL, "%s: tensor '%s': data is NULL", path, nm);
      goto done;
    }
    int64_t bytes = numel * (int64_t)pv_dtype_size(dtypes[i]);
    if (off > INT64_MAX / 2 - bytes) {
      s = pv__err(ctx, PV_ERR_INVALID, "%s: total data size overflows", path);
      goto done;
    }
    int64_t range[2] = {off, off + bytes};
    off += bytes;
    cJSON *e = cJSON_CreateObject(), *sh = json_int_array(ndims[i], shapes[i]), *ro = json_int_array(2, range);
    cJSON *dt = cJSON_CreateString(fname);
    if (e) cJSON_AddItemToObject(root, nm, e);
    if (!e || !sh || !ro || !dt) {
      cJSON_Delete(sh);
      cJSON_Delete(ro);
      cJSON_Delete(dt);
      s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
      goto done;
    }
    cJSON_AddItemToObject(e, "dtype", dt);
    cJSON_AddItemToObject(e, "shape", sh);
    cJSON_AddItemToObject(e, "data_offsets", ro);
  }
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
  for (int i = 1; i < n; i++)
    if (strcmp(sorted[i - 1], sorted[i]) == 0) {
      s = pv__err(ctx, PV_ERR_INVALID, "%s: duplicate tensor name '%s'", path, sorted[i]);
      goto done;
    }
  char *txt = cJSON_PrintUnformatted(root);
  if (!txt) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  size_t len = strlen(txt), padded = len + (8 - (8 + len) % 8) % 8;
  char *h = malloc(padded);
  if (!h) {
    cJSON_free(txt);
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  memcpy(h, txt, len);
  memset(h + len, ' ', padded - len);
  cJSON_free(txt);
  *hdr = h;
  *hlen = padded;
  *nbytes = off;
done:
  cJSON_Delete(root);
  free(sorted);
  return s;
}

/* Writes the data of tensor i converted to its file dtype. Returns 0 on a write error. */
static int write_data(FILE *f, pv_dtype dt, pv_dtype srct, const void *data, int64_t numel) {
  if (numel <= 0) return 1;
  size_t ssz = pv_dtype_size(srct), dsz = pv_dtype_size(dt);
  if (dt == srct) return fwrite(data, dsz, (size_t)numel, f) == (size_t)numel;
  _Alignas(64) unsigned char out[ST_CHUNK * 8];
  for (int64_t off = 0; off < numel; off += ST_CHUNK) {
    int64_t k = numel - off < ST_CHUNK ? numel - off : ST_CHUNK;
    convert_unaligned(dt, out, srct, (const unsigned char *)data + (size_t)off * ssz, k);
    if (fwrite(out, dsz, (size_t)k, f) != (size_t)k) return 0;
  }
  return 1;
}

static void fsync_dir(const char *path) {
  char *dir = strdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  const char *d = ".";
  if (slash == dir) d = "/";
  else if (slash) {
    *slash = 0;
    d = dir;
  }
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

pv_status pv_st_save(pv_context *ctx, const char *path, int n, const char *const *names, const pv_dtype *dtypes,
                     const int *ndims, const int64_t *const *shapes, const pv_dtype *src_dtypes,
                     const void *const *datas, const char *metadata) {
  if (!ctx) return PV_ERR_NULL;
  if (!path) return pv__err(ctx, PV_ERR_NULL, "pv_st_save: path is NULL");
  if (n < 0) return pv__err(ctx, PV_ERR_INVALID, "%s: pv_st_save: negative tensor count %d", path, n);
  if (n > 0 && (!names || !dtypes || !ndims || !shapes || !datas))
    return pv__err(ctx, PV_ERR_NULL, "%s: pv_st_save: NULL array argument", path);
  const pv_dtype *srct = src_dtypes ? src_dtypes : dtypes;
  char *hdr = NULL;
  size_t hlen = 0;
  int64_t nbytes = 0;
  pv_status s = build_header(ctx, path, n, names, dtypes, ndims, shapes, srct, datas, metadata, &nbytes, &hdr, &hlen);
  if (s) return s;

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(hdr);
    return pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
    free(tmp);
    free(hdr);
    return s;
  }
  (void)fchmod(fd, 0644);
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot open temporary file: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen;
  for (int i = 0; ok && i < n; i++) {
    int64_t numel = 1;
    for (int d = 0; d < ndims[i]; d++) numel *= shapes[i][d];
    ok = write_data(f, dtypes[i], srct[i], datas[i], numel);
  }
  if (ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
  int err = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  if (!ok) {
    s = pv__err(ctx, PV_ERR_IO, "%s: write failed: %s", path, strerror(err));
    goto fail;
  }
  if (rename(tmp, path) != 0) {
    s = pv__err(ctx, PV_ERR_IO, "%s: cannot rename temporary file into place: %s", path, strerror(errno));
    goto fail;
  }
  fsync_dir(path);
  free(tmp);
  free(hdr);
  return PV_OK;
fail:
  unlink(tmp);
  free(tmp);
  free(hdr);
  return s;
}

pv_status pv_st_save_vars(pv_context *ctx, const char *path, int n, pv_var *const *vars, const char *const *names,
                          pv_dtype file_dtype, const char *metadata) {
  if (!ctx) return PV_ERR_NULL;
  if (!path) return pv__err(ctx, PV_ERR_NULL, "pv_st_save_vars: path is NULL");
  if (n < 0) return pv__err(ctx, PV_ERR_INVALID, "%s: pv_st_save_vars: negative count %d", path, n);
  if (n > 0 && !vars) return pv__err(ctx, PV_ERR_NULL, "%s: pv_st_save_vars: vars is NULL", path);
  if (!pv__is_float(file_dtype))
    return pv__err(ctx, PV_ERR_DTYPE, "%s: pv_st_save_vars: file dtype %s is not a float dtype", path,
                   pv_dtype_name(file_dtype));
  size_t m = (size_t)n + 1;
  const char **nm = malloc(m * sizeof *nm);
  pv_dtype *dt = malloc(m * sizeof *dt), *sd = malloc(m * sizeof *sd);
  int *nd = malloc(m * sizeof *nd);
  const int64_t **sh = malloc(m * sizeof *sh);
  const void **da = malloc(m * sizeof *da);
  pv_status s = PV_OK;
  if (!nm || !dt || !sd || !nd || !sh || !da) {
    s = pv__err(ctx, PV_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    pv_var *v = vars[i];
    if (!v) {
      s = pv__err(ctx, PV_ERR_NULL, "%s: pv_st_save_vars: variable %d is NULL", path, i);
      goto done;
    }
    if (v->dev_version > v->host_version && v->ctx->vk_sync_var) { /* device copy is newer */
      if ((s = v->ctx->vk_sync_var(v->ctx, v)) != PV_OK) goto done;
    }
    nm[i] = names ? names[i] : v->name;
    dt[i] = pv__is_float(v->dtype) ? file_dtype : v->dtype;
    sd[i] = v->dtype;
    nd[i] = v->ndim;
    sh[i] = v->shape;
    da[i] = v->data;
  }
  s = pv_st_save(ctx, path, n, nm, dt, nd, sh, sd, da, metadata);
done:
  free(nm);
  free(dt);
  free(sd);
  free(nd);
  free(sh);
  free(da);
  return s;
}
