/* tokenizer.c: byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-2 / Qwen2 format).
 * Encode: added tokens are split off the raw text (leftmost-longest), the rest is normalized (NFC etc. with
 * utf8proc), pre-tokenized (regex Split / ByteLevel with PCRE2), mapped to the GPT-2 byte alphabet and merged
 * by BPE rank. Decode: tokens back to bytes (ByteLevel decoder), then lossy UTF-8 (U+FFFD per maximal invalid
 * subpart, like Python's errors='replace'). Invalid UTF-8 input is never normalized or matched by a regex: such
 * bytes go straight to BPE. */
#include "internal.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <utf8proc.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define TOK_MAX_ID (1 << 24)   /* ids above this are rejected as malformed */
#define TOK_MAX_STEPS 8        /* pre-tokenizer steps */
#define TOK_MAX_NORM 8         /* normalizer steps */
#define TOK_CACHE_SLOTS (1u << 16)
#define TOK_CACHE_MAX_PIECE 128 /* longer pieces are not cached */

static const char *gpt2_regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ------------------------------------------------------------ small helpers */
static uint32_t hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
  return (uint32_t)(h ^ (h >> 32));
}

static uint32_t pow2_at_least(uint64_t n) {
  uint32_t c = 16;
  while (c < n && c < (1u << 30)) c <<= 1;
  return c;
}

/* Length of the UTF-8 unit at s: a whole character when *ok, else the maximal invalid subpart (>= 1 byte),
 * following Unicode's "maximal subpart" practice (as Python and Rust do). */
static size_t utf8_step(const unsigned char *s, size_t n, int *ok) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  size_t need;
  *ok = 0;
  if (c < 0x80) {
    *ok = 1;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) need = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
  } else return 1;
  for (size_t i = 1; i < need; i++) {
    if (i >= n || s[i] < lo || s[i] > hi) return i;
    lo = 0x80;
    hi = 0xBF;
  }
  *ok = 1;
  return need;
}

static uint32_t utf8_cp(const unsigned char *s, size_t k) {
  if (k == 1) return s[0];
  if (k == 2) return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
  if (k == 3) return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
  return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
         (s[3] & 0x3F);
}

/* ------------------------------------------------------------ string arena */
typedef struct arena_block {
  struct arena_block *next;
  size_t used, cap;
  char data[];
} arena_block;

static char *arena_dup(arena_block **a, const char *s, size_t n) {
  arena_block *b = *a;
  if (!b || b->cap - b->used < n + 1) {
    size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = *a;
    b->used = 0;
    b->cap = cap;
    *a = b;
  }
  char *p = b->data + b->used;
  memcpy(p, s, n);
  p[n] = 0;
  b->used += n + 1;
  return p;
}

static void arena_free(arena_block *a) {
  while (a) {
    arena_block *n = a->next;
    free(a);
    a = n;
  }
}

/* ------------------------------------------------------------ open-addressing maps */
typedef struct {
  const char *key; /* NULL: empty; points into the arena */
  uint32_t len, hash;
  int32_t val;
} str_slot;
typedef struct {
  str_slot *slots;
  uint32_t cap, n;
} strmap;

static int strmap_init(strmap *m, uint64_t expect) {
  m->cap = pow2_at_least(expect * 2);
  m->n = 0;
  m->slots = calloc(m->cap, sizeof *m->slots);
  return m->slots ? 0 : -1;
}

static int32_t *strmap_get(const strmap *m, const char *s, size_t n) {
  if (!m->slots) return NULL;
  uint32_t h = hash_bytes(s, n), mask = m->cap - 1;
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    str_slot *e = &m->slots[i];
    if (!e->key) return NULL;
    if (e->hash == h && e->len == n && memcmp(e->key, s, n) == 0) return &e->val;
  }
}

static int strmap_put(strmap *m, const char *key, size_t n, int32_t val) {
  if ((uint64_t)(m->n + 1) * 2 > m->cap) {
    strmap g;
    g.cap = m->cap * 2;
    g.n = m->n;
    g.slots = calloc(g.cap, sizeof *g.slots);
    if (!g.slots) return -1;
    for (uint32_t i = 0; i < m->cap; i++) {
      if (!m->slots[i].key) continue;
      uint32_t j = m->slots[i].hash & (g.cap - 1);
      while (g.slots[j].key) j = (j + 1) & (g.cap - 1);
      g.slots[j] = m->slots[i];
    }
    free(m->slots);
    *m = g;
  }
  uint32_t h = hash_bytes(key, n), mask = m->cap - 1, i = h & mask;
  for (;; i = (i + 1) & mask) {
    str_slot *e = &m->slots[i];
    if (!e->key) break;
    if (e->hash == h && e->len == n && memcmp(e->key, key, n) == 0) {
      e->val = val;
      return 0;
    }
  }
  m->slots[i] = (str_slot){key, (uint32_t)n, h, val};
  m->n++;
  return 0;
}

typedef struct {
  uint64_t key; /* (left id << 32) | right id; UINT64_MAX: empty */
  int32_t rank, id;
} merge_slot;

static inline uint32_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return (uint32_t)k;
}

/* ------------------------------------------------------------ the tokenizer */
enum { STEP_SPLIT, STEP_BYTELEVEL };
enum { SPLIT_ISOLATED, SPLIT_REMOVED };

typedef struct pre_step {
  int kind;
  pcre2_code *re;          /* Split pattern, or the GPT-2 regex of a ByteLevel with use_regex */
  pcre2_match_data *md;
  int behavior, invert;    /* Split */
  int add_prefix_space;    /* ByteLevel */
} pre_step;

typedef struct added_tok {
  const char *s;
  uint32_t len;
  int32_t id;
} added_tok;

typedef struct heap_ent {
  int32_t rank, pos, id;
} heap_ent;

typedef struct cache_slot {
  uint32_t used, hash, koff, klen, ioff, n;
} cache_slot;

struct pv_tokenizer {
  pv_context *ctx;
  arena_block *arena;
  strmap vocab;           /* model vocab: token -> id */
  strmap added_map;       /* added token content -> id */
  const char **id_tok;    /* id -> token (added tokens take precedence), NULL if none */
  uint32_t *id_len;
  unsigned char *id_added;
  int32_t nid, id_cap;    /* max id + 1, allocated entries */
  added_tok *added;       /* sorted by first byte, then longest first */
  int nadded;
  int added_lo[257];      /* added[added_lo[b] .. added_lo[b+1]) start with byte b */
  merge_slot *merges;
  uint32_t mcap;
  int32_t byte_id[256];   /* id of each byte's byte-level character, -1 if absent */
  int32_t unk_id;
  int fuse_unk, ignore_merges;
  utf8proc_option_t norm[TOK_MAX_NORM];
  int nnorm;
  pre_step steps[TOK_MAX_STEPS];
  int nsteps;
  int dec_bytelevel;
  unsigned char bl_enc[256][3]; /* UTF-8 of each byte's character; [2] is its length */
  int16_t bl_dec[324];          /* character -> byte, -1 if none */
  /* per-call state and scratch */
  int32_t *out;
  int64_t cap, count;
  int32_t *sym, *prv, *nxt;
  heap_ent *heap;
  size_t sym_cap;
  char *mbuf;             /* mapped piece (ignore_merges) */
  size_t mbuf_cap;
  unsigned char *dbuf;    /* decode bytes */
  size_t dbuf_cap;
  cache_slot *cache;
  uint32_t cache_n;
  char *ckeys;
  size_t ckeys_n, ckeys_cap;
  int32_t *cids;
  size_t cids_n, cids_cap;
};

static const merge_slot *merge_get(const pv_tokenizer *t, int32_t a, int32_t b) {
  if (!t->merges) return NULL;
  uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  uint32_t mask = t->mcap - 1;
  for (uint32_t i = mix64(k) & mask;; i = (i + 1) & mask) {
    const merge_slot *e = &t->merges[i];
    if (e->key == k) return e;
    if (e->key == UINT64_MAX) return NULL;
  }
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return -1;
  *p = q;
  *cap = c;
  return 0;
}

static int nomem(pv_tokenizer *t, const char *where) {
  pv__err(t->ctx, PV_ERR_NOMEM, "%s: out of memory", where);
  return -1;
}

static void emit(pv_tokenizer *t, int32_t id) {
  if (t->count < t->cap) t->out[t->count] = id;
  t->count++;
}

/* ------------------------------------------------------------ BPE */
static void heap_push(heap_ent *h, int *n, heap_ent e) {
  int i = (*n)++;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (h[p].rank < e.rank || (h[p].rank == e.rank && h[p].pos <= e.pos)) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, int *n) {
  heap_ent top = h[0], last = h[--(*n)];
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos))) c++;
    if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos <= h[c].pos)) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = last;
  return top;
}

static void push_pair(pv_tokenizer *t, int *nh, int32_t pos) {
  int32_t r = t->nxt[pos];
  if (r < 0) return;
  const merge_slot *m = merge_get(t, t->sym[pos], t->sym[r]);
  if (m) heap_push(t->heap, nh, (heap_ent){m->rank, pos, m->id});
}

static uint32_t cache_find(pv_tokenizer *t, const unsigned char *s, size_t n, uint32_t h) {
  uint32_t mask = TOK_CACHE_SLOTS - 1;
  for (uint32_t i = h & mask;; i = (i + 1) & mask) {
    cache_slot *c = &t->cache[i];
    if (!c->used) return i;
    if (c->hash == h && c->klen == n && memcmp(t->ckeys + c->koff, s, n) == 0) return i;
  }
}

/* Encodes one pre-tokenized piece (raw bytes, before the byte-level mapping). */
static int bpe_piece(pv_tokenizer *t, const unsigned char *s, size_t n) {
  if (n == 0) return 0;
  uint32_t h = 0, slot = 0;
  int cacheable = n <= TOK_CACHE_MAX_PIECE && t->cache;
  if (cacheable) {
    h = hash_bytes(s, n);
    slot = cache_find(t, s, n, h);
    cache_slot *c = &t->cache[slot];
    if (c->used) {
      for (uint32_t i = 0; i < c->n; i++) emit(t, t->cids[c->ioff + i]);
      return 0;
    }
  }
  int64_t first = t->count;
  int done = 0;
  if (t->ignore_merges) { /* a piece that is a whole vocab token is taken as is */
    if (grow((void **)&t->mbuf, &t->mbuf_cap, 2 * n, 1)) return nomem(t, "pv_tok_encode");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      memcpy(t->mbuf + k, t->bl_enc[s[i]], t->bl_enc[s[i]][2]);
      k += t->bl_enc[s[i]][2];
    }
    int32_t *id = strmap_get(&t->vocab, t->mbuf, k);
    if (id) {
      emit(t, *id);
      done = 1;
    }
  }
  if (!done) {
    if (n > t->sym_cap) {
      size_t c = t->sym_cap ? t->sym_cap : 64;
      while (c < n) c *= 2;
      int32_t *a = realloc(t->sym, c * sizeof *a);
      if (a) t->sym = a;
      int32_t *b = realloc(t->prv, c * sizeof *b);
      if (b) t->prv = b;
      int32_t *d = realloc(t->nxt, c * sizeof *d);
      if (d) t->nxt = d;
      heap_ent *e = realloc(t->heap, 3 * c * sizeof *e); /* at most m - 1 initial pairs + 2 per merge */
      if (e) t->heap = e;
      if (!a || !b || !d || !e) return nomem(t, "pv_tok_encode");
      t->sym_cap = c;
    }
    int32_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
      int32_t id = t->byte_id[s[i]];
      if (id < 0) {
        if (t->unk_id < 0) continue; /* dropped, like HF without an unk token */
        if (t->fuse_unk && last_unk) continue;
        id = t->unk_id;
        last_unk = 1;
      } else last_unk = 0;
      t->sym[m++] = id;
    }
    int nh = 0;
    for (int32_t i = 0; i < m; i++) {
      t->prv[i] = i - 1;
      t->nxt[i] = i + 1 < m ? i + 1 : -1;
    }
    for (int32_t i = 0; i + 1 < m; i++) push_pair(t, &nh, i);
    while (nh > 0) {
      heap_ent e = heap_pop(t->heap, &nh);
      int32_t r = t->nxt[e.pos];
      if (t->sym[e.pos] < 0 || r < 0) continue;
      const merge_slot *mg = merge_get(t, t->sym[e.pos], t->sym[r]);
      if (!mg || mg->id != e.id) continue;
      t->sym[e.pos] = e.id;
      t->sym[r] = -1;
      t->nxt[e.pos] = t->nxt[r];
      if (t->nxt[r] >= 0) t->prv[t->nxt[r]] = e.pos;
      if (t->prv[e.pos] >= 0) push_pair(t, &nh, t->prv[e.pos]);
      push_pair(t, &nh, e.pos);
    }
    for (int32_t i = m > 0 ? 0 : -1; i >= 0; i = t->nxt[i]) emit(t, t->sym[i]);
  }
  if (cacheable && t->count - first <= (int64_t)n) {
    uint32_t k = (uint32_t)(t->count - first);
    if (t->cache_n >= TOK_CACHE_SLOTS / 2) { /* full: start over */
      memset(t->cache, 0, TOK_CACHE_SLOTS * sizeof *t->cache);
      t->cache_n = 0;
      t->ckeys_n = t->cids_n = 0;
      slot = cache_find(t, s, n, h);
    }
    /* the ids just emitted are readable from t->out only when they all fit */
    if (t->count <= t->cap) {
      if (grow((void **)&t->ckeys, &t->ckeys_cap, t->ckeys_n + n, 1) ||
          grow((void **)&t->cids, &t->cids_cap, t->cids_n + k, sizeof *t->cids))
        return 0; /* caching is optional */
      cache_slot *c = &t->cache[slot];
      c->used = 1;
      c->hash = h;
      c->koff = (uint32_t)t->ckeys_n;
      c->klen = (uint32_t)n;
      c->ioff = (uint32_t)t->cids_n;
      c->n = k;
      memcpy(t->ckeys + t->ckeys_n, s, n);
      memcpy(t->cids + t->cids_n, t->out + first, k * sizeof *t->cids);
      t->ckeys_n += n;
      t->cids_n += k;
      t->cache_n++;
    }
  }
  return 0;
}

/* ------------------------------------------------------------ pre-tokenization */
static int run_steps(pv_tokenizer *t, int k, const char *s, size_t n);

static int split_piece(pv_tokenizer *t, int k, const char *s, size_t n, int is_match) {
  const pre_step *st = &t->steps[k];
  if (st->kind == STEP_SPLIT && st->behavior == SPLIT_REMOVED && is_match != st->invert) return 0;
  return run_steps(t, k + 1, s, n);
}

/* Splits s (valid UTF-8) by re; matches and the gaps between them go to the next step. */
static int split_regex(pv_tokenizer *t, int k, pcre2_code *re, pcre2_match_data *md, const char *s, size_t n) {
  size_t off = 0, prev = 0;
  while (off < n) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      pv__err(t->ctx, PV_ERR_INVALID, "pv_tok_encode: pre-tokenizer regex failed: %s", (const char *)msg);
      return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t st = ov[0], en = ov[1];
    if (en <= st || st < off) { /* an empty match: step over one character */
      int ok;
      size_t at = st > off ? st : off;
      if (at >= n) break;
      off = at + utf8_step((const unsigned char *)s + at, n - at, &ok);
      continue;
    }
    if (st > prev && split_piece(t, k, s + prev, st - prev, 0)) return -1;
    if (split_piece(t, k, s + st, en - st, 1)) return -1;
    prev = off = en;
  }
  if (prev < n && split_piece(t, k, s + prev, n - prev, 0)) return -1;
  return 0;
}

static int run_steps(pv_tokenizer *t, int k, const char *s, size_t n) {
  if (n == 0) return 0;
  if (k >= t->nsteps) return bpe_piece(t, (const unsigned char *)s, n);
  pre_step *st = &t->steps[k];
  if (st->kind == STEP_SPLIT) return split_regex(t, k, st->re, st->md, s, n);
  /* ByteLevel: optional prefix space, optional GPT-2 split; the byte mapping itself happens in bpe_piece */
  char *tmp = NULL;
  if (st->add_prefix_space && s[0] != ' ') {
    tmp = malloc(n + 1);
    if (!tmp) return nomem(t, "pv_tok_encode");
    tmp[0] = ' ';
    memcpy(tmp + 1, s, n);
    s = tmp;
    n++;
  }
  int r = st->re ? split_regex(t, k, st->re, st->md, s, n) : run_steps(t, k + 1, s, n);
  free(tmp);
  return r;
}

/* A segment between added tokens: valid UTF-8 runs are normalized and pre-tokenized, invalid bytes go to BPE. */
static int encode_segment(pv_tokenizer *t, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t pos = 0;
  while (pos < n) {
    size_t v = pos;
    int ok = 1;
    while (v < n) {
      size_t k = utf8_step(u + v, n - v, &ok);
      if (!ok) break;
      v += k;
    }
    if (v > pos) {
      char *norm = NULL;
      const char *p = s + pos;
      size_t len = v - pos;
      for (int i = 0; i < t->nnorm; i++) {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)len, &dst, t->norm[i]);
        if (r < 0) { /* cannot happen on valid UTF-8 except out of memory: keep the text as is */
          free(dst);
          continue;
        }
        free(norm);
        norm = (char *)dst;
        p = norm;
        len = (size_t)r;
      }
      int rc = run_steps(t, 0, p, len);
      free(norm);
      if (rc) return -1;
      pos = v;
      continue;
    }
    while (v < n) {
      size_t k = utf8_step(u + v, n - v, &ok);
      if (ok) break;
      v += k;
    }
    if (bpe_piece(t, u + pos, v - pos)) return -1;
    pos = v;
  }
  return 0;
}

int64_t pv_tok_encode(pv_tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap) {
  if (!t) return -1;
  if ((!text && len > 0) || (!ids && cap > 0)) {
    pv__err(t->ctx, PV_ERR_NULL, "pv_tok_encode: NULL %s", !text && len > 0 ? "text" : "ids");
    return -1;
  }
  if (cap < 0) {
    pv__err(t->ctx, PV_ERR_INVALID, "pv_tok_encode: negative capacity %lld", (long long)cap);
    return -1;
  }
  if (!t->cache) {
    t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache); /* optional: NULL just disables caching */
    t->cache_n = 0;
  }
  t->out = ids;
  t->cap = cap;
  t->count = 0;
  size_t pos = 0, seg = 0;
  int rc = 0;
  while (pos < len && !rc) {
    unsigned char b = (unsigned char)text[pos];
    const added_tok *hit = NULL;
    for (int i = t->added_lo[b]; i < t->added_lo[b + 1]; i++) {
      const added_tok *a = &t->added[i];
      if (a->len <= len - pos && memcmp(text + pos, a->s, a->len) == 0) {
        hit = a; /* sorted longest first */
        break;
      }
    }
    if (!hit) {
      pos++;
      continue;
    }
    rc = encode_segment(t, text + seg, pos - seg);
    emit(t, hit->id);
    pos += hit->len;
    seg = pos;
  }
  if (!rc) rc = encode_segment(t, text + seg, len - seg);
  t->out = NULL;
  return rc ? -1 : t->count;
}

/* ------------------------------------------------------------ decoding */
static int put_bytes(pv_tokenizer *t, size_t *n, const void *p, size_t k) {
  if (grow((void **)&t->dbuf, &t->dbuf_cap, *n + k, 1)) return nomem(t, "pv_tok_decode");
  memcpy(t->dbuf + *n, p, k);
  *n += k;
  return 0;
}

int64_t pv_tok_decode(pv_tokenizer *t, const int32_t *ids, int64_t n, char *out, size_t cap) {
  if (!t) return -1;
  if ((!ids && n > 0) || (!out && cap > 0)) {
    pv__err(t->ctx, PV_ERR_NULL, "pv_tok_decode: NULL %s", !ids && n > 0 ? "ids" : "out");
    return -1;
  }
  if (n < 0) {
    pv__err(t->ctx, PV_ERR_INVALID, "pv_tok_decode: negative count %lld", (long long)n);
    return -1;
  }
  size_t nb = 0;
  for (int64_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->nid || !t->id_tok[id]) {
      pv__err(t->ctx, PV_ERR_INVALID, "pv_tok_decode: unknown token id %d at position %lld", (int)id, (long long)i);
      return -1;
    }
    const unsigned char *s = (const unsigned char *)t->id_tok[id];
    size_t len = t->id_len[id], mark = nb;
    if (t->dec_bytelevel && !t->id_added[id]) { /* every character must map back to a byte, else raw text */
      int all = 1;
      for (size_t j = 0; j < len && all;) {
        int ok;
        size_t k = utf8_step(s + j, len - j, &ok);
        uint32_t cp = ok ? utf8_cp(s + j, k) : 0xFFFFFFFFu;
        if (cp < 324 && t->bl_dec[cp] >= 0) {
          unsigned char b = (unsigned char)t->bl_dec[cp];
          if (put_bytes(t, &nb, &b, 1)) return -1;
        } else all = 0;
        j += k;
      }
      if (all) continue;
      nb = mark;
    }
    if (put_bytes(t, &nb, s, len)) return -1;
  }
  /* lossy UTF-8 into out */
  static const unsigned char repl[3] = {0xEF, 0xBF, 0xBD};
  size_t w = 0;
  for (size_t i = 0; i < nb;) {
    int ok;
    size_t k = utf8_step(t->dbuf + i, nb - i, &ok);
    const unsigned char *src = ok ? t->dbuf + i : repl;
    size_t m = ok ? k : 3;
    for (size_t j = 0; j < m; j++, w++)
      if (w + 1 < cap) out[w] = (char)src[j];
    i += k;
  }
  if (cap > 0) out[w < cap ? w : cap - 1] = 0;
  return (int64_t)w;
}

/* ------------------------------------------------------------ queries */
int64_t pv_tok_vocab_size(const pv_tokenizer *t) { return t ? t->nid : 0; }

int32_t pv_tok_token_to_id(const pv_tokenizer *t, const char *token) {
  if (!t || !token) return -1;
  size_t n = strlen(token);
  int32_t *v = strmap_get(&t->added_map, token, n);
  if (!v) v = strmap_get(&t->vocab, token, n);
  return v ? *v : -1;
}

const char *pv_tok_id_to_token(const pv_tokenizer *t, int32_t id) {
  if (!t || id < 0 || id >= t->nid) return NULL;
  return t->id_tok[id];
}

void pv_tok_free(pv_tokenizer *t) {
  if (!t) return;
  for (int i = 0; i < t->nsteps; i++) {
    pcre2_match_data_free(t->steps[i].md);
    pcre2_code_free(t->steps[i].re);
  }
  arena_free(t->arena);
  free(t->vocab.slots);
  free(t->added_map.slots);
  free(t->id_tok);
  free(t->id_len);
  free(t->id_added);
  free(t->added);
  free(t->merges);
  free(t->sym);
  free(t->prv);
  free(t->nxt);
  free(t->heap);
  free(t->mbuf);
  free(t->dbuf);
  free(t->cache);
  free(t->ckeys);
  free(t->cids);
  free(t);
}

/* ------------------------------------------------------------ loading */
typedef struct load_ctx {
  pv_tokenizer *t;
  const char *path;
} load_ctx;

static pv_status lerr(load_ctx *L, pv_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static pv_status lerr(load_ctx *L, pv_status st, const char *fmt, ...) {
  char msg[PV_ERRMSG];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return pv__err(L->t->ctx, st, "pv_tok_load: '%s': %s", L->path, msg);
}

static pv_status set_id(load_ctx *L, int32_t id, const char *s, size_t len, int added) {
  pv_tokenizer *t = L->t;
  if (id >= t->id_cap) {
    int32_t nn = t->id_cap ? t->id_cap : 1024;
    while (nn <= id) nn *= 2;
    const char **a = realloc(t->id_tok, (size_t)nn * sizeof *a);
    if (a) t->id_tok = a;
    uint32_t *b = realloc(t->id_len, (size_t)nn * sizeof *b);
    if (b) t->id_len = b;
    unsigned char *c = realloc(t->id_added, (size_t)nn);
    if (c) t->id_added = c;
    if (!a || !b || !c) return lerr(L, PV_ERR_NOMEM, "out of memory");
    for (int32_t i = t->id_cap; i < nn; i++) {
      t->id_tok[i] = NULL;
      t->id_len[i] = 0;
      t->id_added[i] = 0;
    }
    t->id_cap = nn;
  }
  if (id >= t->nid) t->nid = id + 1;
  if (t->id_tok[id] && t->id_added[id] && !added) return PV_OK; /* added tokens take precedence */
  t->id_tok[id] = s;
  t->id_len[id] = (uint32_t)len;
  t->id_added[id] = (unsigned char)added;
  return PV_OK;
}

static int get_id(const cJSON *v, int32_t *id) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d < TOK_MAX_ID) || d != (double)(int32_t)d) return 0;
  *id = (int32_t)d;
  return 1;
}

static pv_status load_vocab(load_ctx *L, const cJSON *model) {
  pv_tokenizer *t = L->t;
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  if (!cJSON_IsObject(vocab)) return lerr(L, PV_ERR_FORMAT, "field 'model.vocab' is missing or not an object");
  uint64_t count = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, vocab) count++;
  if (strmap_init(&t->vocab, count)) return lerr(L, PV_ERR_NOMEM, "out of memory");
  cJSON_ArrayForEach(e, vocab) {
    int32_t id;
    if (!get_id(e, &id))
      return lerr(L, PV_ERR_FORMAT, "model.vocab entry '%.200s' has an invalid id (expected an integer 0..%d)",
                  e->string ? e->string : "", TOK_MAX_ID - 1);
    size_t len = strlen(e->string);
    char *s = arena_dup(&t->arena, e->string, len);
    if (!s || strmap_put(&t->vocab, s, len, id)) return lerr(L, PV_ERR_NOMEM, "out of memory");
    pv_status st = set_id(L, id, s, len, 0);
    if (st) return st;
  }
  return PV_OK;
}

static pv_status merge_err(load_ctx *L, int idx, const cJSON *m, const char *what) {
  char *txt = cJSON_PrintUnformatted(m);
  pv_status st = lerr(L, PV_ERR_FORMAT, "merges[%d] %.300s: %s", idx, txt ? txt : "?", what);
  free(txt);
  return st;
}

static pv_status load_merges(load_ctx *L, const cJSON *model) {
  pv_tokenizer *t = L->t;
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (!merges || cJSON_IsNull(merges)) return PV_OK;
  if (!cJSON_IsArray(merges)) return lerr(L, PV_ERR_FORMAT, "field 'model.merges' is not an array");
  const cJSON *m;
  uint64_t count = 0;
  cJSON_ArrayForEach(m, merges) count++;
  t->mcap = pow2_at_least(count * 2);
  t->merges = malloc(t->mcap * sizeof *t->merges);
  char *buf = NULL;
  size_t bcap = 0;
  if (!t->merges) return lerr(L, PV_ERR_NOMEM, "out of memory");
  for (uint32_t i = 0; i < t->mcap; i++) t->merges[i] = (merge_slot){UINT64_MAX, 0, 0};
  int idx = 0;
  pv_status st = PV_OK;
  cJSON_ArrayForEach(m, merges) {
    const char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    if (cJSON_IsString(m)) {
      const char *sp = strchr(m->valuestring, ' ');
      if (sp && sp != m->valuestring && sp[1] && !strchr(sp + 1, ' ')) {
        a = m->valuestring;
        la = (size_t)(sp - a);
        b = sp + 1;
        lb = strlen(b);
      }
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) {
      a = m->child->valuestring;
      b = m->child->next->valuestring;
      la = strlen(a);
      lb = strlen(b);
    }
    if (!a || !la || !lb) {
      st = merge_err(L, idx, m, "malformed merge (expected \"a b\" or [\"a\", \"b\"])");
      break;
    }
    int32_t *ia = strmap_get(&t->vocab, a, la), *ib = strmap_get(&t->vocab, b, lb);
    if (!ia || !ib) {
      char what[300];
      const char *miss = !ia ? a : b;
      size_t lm = !ia ? la : lb;
      snprintf(what, sizeof what, "'%.*s' is not in the vocab", (int)(lm > 200 ? 200 : lm), miss);
      st = merge_err(L, idx, m, what);
      break;
    }
    if (grow((void **)&buf, &bcap, la + lb, 1)) {
      st = lerr(L, PV_ERR_NOMEM, "out of memory");
      break;
    }
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    int32_t *ir = strmap_get(&t->vocab, buf, la + lb);
    if (!ir) {
      char what[480];
      snprintf(what, sizeof what, "the merged token '%.*s' is not in the vocab", (int)(la + lb > 400 ? 400 : la + lb),
               buf);
      st = merge_err(L, idx, m, what);
      break;
    }
    uint64_t k = ((uint64_t)(uint32_t)*ia << 32) | (uint32_t)*ib;
    uint32_t mask = t->mcap - 1, j = mix64(k) & mask;
    while (t->merges[j].key != UINT64_MAX && t->merges[j].key != k) j = (j + 1) & mask;
    t->merges[j] = (merge_slot){k, idx, *ir}; /* a repeated pair keeps its last rank, as HF's map does */
    idx++;
  }
  free(buf);
  return st;
}

static int cmp_added(const void *x, const void *y) {
  const added_tok *a = x, *b = y;
  unsigned char ca = (unsigned char)a->s[0], cb = (unsigned char)b->s[0];
  if (ca != cb) return ca < cb ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

static pv_status load_added(load_ctx *L, const cJSON *root) {
  pv_tokenizer *t = L->t;
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (strmap_init(&t->added_map, 16)) return lerr(L, PV_ERR_NOMEM, "out of memory");
  if (list && !cJSON_IsNull(list)) {
    if (!cJSON_IsArray(list)) return lerr(L, PV_ERR_FORMAT, "field 'added_tokens' is not an array");
    int n = cJSON_GetArraySize(list), i = 0;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return lerr(L, PV_ERR_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
      const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
      int32_t id;
      if (!get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
        return lerr(L, PV_ERR_FORMAT, "field 'added_tokens[%d].id' is missing or not a valid id", i);
      if (!cJSON_IsString(content))
        return lerr(L, PV_ERR_FORMAT, "field 'added_tokens[%d].content' is missing or not a string", i);
      size_t len = strlen(content->valuestring);
      char *s = arena_dup(&t->arena, content->valuestring, len);
      if (!s || strmap_put(&t->added_map, s, len, id)) return lerr(L, PV_ERR_NOMEM, "out of memory");
      pv_status st = set_id(L, id, s, len, 1);
      if (st) return st;
      if (len > 0) t->added[t->nadded++] = (added_tok){s, (uint32_t)len, id};
      i++;
    }
    qsort(t->added, (size_t)t->nadded, sizeof *t->added, cmp_added);
  }
  int j = 0;
  for (int b = 0; b <= 256; b++) {
    while (j < t->nadded && (unsigned char)t->added[j].s[0] < b) j++;
    t->added_lo[b] = j;
  }
  t->added_lo[256] = t->nadded;
  return PV_OK;
}

static const char *type_of(const cJSON *o) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
  return cJSON_IsString(ty) ? ty->valuestring : NULL;
}

static pv_status load_normalizer(load_ctx *L, const cJSON *n, const char *field) {
  pv_tokenizer *t = L->t;
  if (!n || cJSON_IsNull(n)) return PV_OK;
  const char *ty = type_of(n);
  if (!cJSON_IsObject(n) || !ty) return lerr(L, PV_ERR_FORMAT, "field '%s.type' is missing or not a string", field);
  if (strcmp(ty, "Sequence") == 0) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
    if (!cJSON_IsArray(list)) return lerr(L, PV_ERR_FORMAT, "field '%s.normalizers' is missing or not an array", field);
    cJSON_ArrayForEach(e, list) {
      pv_status st = load_normalizer(L, e, field);
      if (st) return st;
    }
    return PV_OK;
  }
  utf8proc_option_t o = UTF8PROC_STABLE;
  if (strcmp(ty, "NFC") == 0) o |= UTF8PROC_COMPOSE;
  else if (strcmp(ty, "NFD") == 0) o |= UTF8PROC_DECOMPOSE;
  else if (strcmp(ty, "NFKC") == 0) o |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  else if (strcmp(ty, "NFKD") == 0) o |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  else return lerr(L, PV_ERR_UNSUPPORTED, "normalizer type '%.100s' is not supported (NFC, NFD, NFKC, NFKD)", ty);
  if (t->nnorm >= TOK_MAX_NORM) return lerr(L, PV_ERR_UNSUPPORTED, "more than %d normalizers", TOK_MAX_NORM);
  t->norm[t->nnorm++] = o;
  return PV_OK;
}

static pv_status compile_re(load_ctx *L, pre_step *st, const char *pat, uint32_t extra, const char *field) {
  int errc;
  PCRE2_SIZE erroff;
  st->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | extra, &errc, &erroff, NULL);
  if (!st->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errc, msg, sizeof msg);
    return lerr(L, PV_ERR_FORMAT, "%s: cannot compile regex at offset %zu: %s", field, (size_t)erroff,
                (const char *)msg);
  }
  pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is used if it fails */
  st->md = pcre2_match_data_create_from_pattern(st->re, NULL);
  if (!st->md) return lerr(L, PV_ERR_NOMEM, "out of memory");
  return PV_OK;
}

static int get_bool(const cJSON *o, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static pv_status load_pretok(load_ctx *L, const cJSON *p, const char *field) {
  pv_tokenizer *t = L->t;
  const char *ty = type_of(p);
  if (!cJSON_IsObject(p) || !ty) return lerr(L, PV_ERR_FORMAT, "field '%s.type' is missing or not a string", field);
  if (strcmp(ty, "Sequence") == 0) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
    if (!cJSON_IsArray(list))
      return lerr(L, PV_ERR_FORMAT, "field '%s.pretokenizers' is missing or not an array", field);
    cJSON_ArrayForEach(e, list) {
      pv_status st = load_pretok(L, e, "pre_tokenizer.pretokenizers[]");
      if (st) return st;
    }
    return PV_OK;
  }
  if (t->nsteps >= TOK_MAX_STEPS) return lerr(L, PV_ERR_UNSUPPORTED, "more than %d pre-tokenizers", TOK_MAX_STEPS);
  if (t->nsteps > 0 && t->steps[t->nsteps - 1].kind == STEP_BYTELEVEL)
    return lerr(L, PV_ERR_UNSUPPORTED, "%s: only a ByteLevel pre-tokenizer as the last step is supported", field);
  pre_step *st = &t->steps[t->nsteps];
  memset(st, 0, sizeof *st);
  if (strcmp(ty, "Split") == 0) {
    st->kind = STEP_SPLIT;
    t->nsteps++;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
    if (!cJSON_IsString(beh)) return lerr(L, PV_ERR_FORMAT, "field '%s.behavior' is missing or not a string", field);
    if (strcmp(beh->valuestring, "Isolated") == 0) st->behavior = SPLIT_ISOLATED;
    else if (strcmp(beh->valuestring, "Removed") == 0) st->behavior = SPLIT_REMOVED;
    else
      return lerr(L, PV_ERR_UNSUPPORTED, "%s.behavior '%.100s' is not supported (Isolated, Removed)", field,
                  beh->valuestring);
    st->invert = get_bool(p, "invert", 0);
    if (cJSON_IsString(re)) return compile_re(L, st, re->valuestring, 0, "pre_tokenizer Split pattern.Regex");
    if (cJSON_IsString(lit) && lit->valuestring[0])
      return compile_re(L, st, lit->valuestring, PCRE2_LITERAL, "pre_tokenizer Split pattern.String");
    return lerr(L, PV_ERR_FORMAT, "field '%s.pattern' needs a 'Regex' or a non-empty 'String'", field);
  }
  if (strcmp(ty, "ByteLevel") == 0) {
    st->kind = STEP_BYTELEVEL;
    t->nsteps++;
    st->add_prefix_space = get_bool(p, "add_prefix_space", 1);
    if (get_bool(p, "use_regex", 1)) return compile_re(L, st, gpt2_regex, 0, "pre_tokenizer ByteLevel");
    return PV_OK;
  }
  return lerr(L, PV_ERR_UNSUPPORTED, "pre-tokenizer type '%.100s' is not supported (Sequence, Split, ByteLevel)", ty);
}

static pv_status load_model_opts(load_ctx *L, const cJSON *model) {
  pv_tokenizer *t = L->t;
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
  if (!cJSON_IsString(ty)) return lerr(L, PV_ERR_FORMAT, "field 'model.type' is missing or not a string");
  if (strcmp(ty->valuestring, "BPE") != 0)
    return lerr(L, PV_ERR_UNSUPPORTED, "model.type is '%.100s', only 'BPE' is supported", ty->valuestring);
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(d) && d->valuedouble > 0)
    return lerr(L, PV_ERR_UNSUPPORTED, "model.dropout %g is not supported", d->valuedouble);
  const char *strs[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, strs[i]);
    if (cJSON_IsString(v) && v->valuestring[0])
      return lerr(L, PV_ERR_UNSUPPORTED, "model.%s is not supported with byte-level BPE", strs[i]);
  }
  t->fuse_unk = get_bool(model, "fuse_unk", 0);
  t->ignore_merges = get_bool(model, "ignore_merges", 0);
  return PV_OK;
}

static pv_status load_all(load_ctx *L, const cJSON *root) {
  pv_tokenizer *t = L->t;
  if (!cJSON_IsObject(root)) return lerr(L, PV_ERR_FORMAT, "the top level is not a JSON object");
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (!cJSON_IsObject(model)) return lerr(L, PV_ERR_FORMAT, "field 'model' is missing or not an object");
  pv_status st = load_model_opts(L, model);
  if (!st) st = load_vocab(L, model);
  if (!st) st = load_merges(L, model);
  if (!st) st = load_added(L, root);
  if (st) return st;
  t->unk_id = -1;
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  if (cJSON_IsString(unk)) {
    int32_t *v = strmap_get(&t->vocab, unk->valuestring, strlen(unk->valuestring));
    if (v) t->unk_id = *v;
  }
  st = load_normalizer(L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer");
  if (st) return st;
  const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
  if (!pre || cJSON_IsNull(pre))
    return lerr(L, PV_ERR_UNSUPPORTED, "field 'pre_tokenizer' is null; only byte-level BPE is supported");
  st = load_pretok(L, pre, "pre_tokenizer");
  if (st) return st;
  if (t->nsteps == 0 || t->steps[t->nsteps - 1].kind != STEP_BYTELEVEL)
    return lerr(L, PV_ERR_UNSUPPORTED, "pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
  if (dec && !cJSON_IsNull(dec)) {
    const char *ty = type_of(dec);
    if (!cJSON_IsObject(dec) || !ty) return lerr(L, PV_ERR_FORMAT, "field 'decoder.type' is missing or not a string");
    if (strcmp(ty, "ByteLevel") != 0)
      return lerr(L, PV_ERR_UNSUPPORTED, "decoder type '%.100s' is not supported (ByteLevel)", ty);
    t->dec_bytelevel = 1;
  }
  for (int b = 0; b < 256; b++) {
    int32_t *v = strmap_get(&t->vocab, (const char *)t->bl_enc[b], t->bl_enc[b][2]);
    t->byte_id[b] = v ? *v : -1;
  }
  return PV_OK;
}

static void init_bytelevel(pv_tokenizer *t) {
  int extra = 0;
  for (int i = 0; i < 324; i++) t->bl_dec[i] = -1;
  for (int b = 0; b < 256; b++) {
    int cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) ? b : 256 + extra++;
    if (cp < 0x80) {
      t->bl_enc[b][0] = (unsigned char)cp;
      t->bl_enc[b][2] = 1;
    } else {
      t->bl_enc[b][0] = (unsigned char)(0xC0 | (cp >> 6));
      t->bl_enc[b][1] = (unsigned char)(0x80 | (cp & 0x3F));
      t->bl_enc[b][2] = 2;
    }
    t->bl_dec[cp] = (int16_t)b;
  }
}

pv_status pv_tok_load(pv_context *ctx, const char *path, pv_tokenizer **out) {
  if (out) *out = NULL;
  if (!ctx) return PV_ERR_NULL;
  if (!path || !out) return pv__err(ctx, PV_ERR_NULL, "pv_tok_load: NULL %s", !path ? "path" : "out");
  FILE *f = fopen(path, "rb");
  if (!f) return pv__err(ctx, PV_ERR_IO, "pv_tok_load: cannot open '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (grow((void **)&buf, &cap, n + 65536, 1)) {
      fclose(f);
      free(buf);
      return pv__err(ctx, PV_ERR_NOMEM, "pv_tok_load: '%s': out of memory", path);
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int rerr = ferror(f);
  fclose(f);
  if (rerr) {
    free(buf);
    return pv__err(ctx, PV_ERR_IO, "pv_tok_load: error reading '%s'", path);
  }
  buf[n] = 0; /* cap > n after the loop */
  cJSON *root = cJSON_ParseWithLength(buf, n);
  if (!root) {
    const char *ep = cJSON_GetErrorPtr();
    long at = ep && ep >= buf && ep <= buf + n ? (long)(ep - buf) : -1;
    free(buf);
    return pv__err(ctx, PV_ERR_FORMAT, "pv_tok_load: '%s' is not valid JSON (error near byte %ld)", path, at);
  }
  free(buf);
  pv_tokenizer *t = calloc(1, sizeof *t);
  if (!t) {
    cJSON_Delete(root);
    return pv__err(ctx, PV_ERR_NOMEM, "pv_tok_load: '%s': out of memory", path);
  }
  t->ctx = ctx;
  init_bytelevel(t);
  load_ctx L = {t, path};
  pv_status st = load_all(&L, root);
  cJSON_Delete(root);
  if (st) {
    pv_tok_free(t);
    return st;
  }
  *out = t;
  return PV_OK;
}
