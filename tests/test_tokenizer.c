/* test_tokenizer.c: byte-level BPE tokenizer against the HF golden files in shared/fixtures/hf/tokenizer, plus
 * a random-bytes fuzz, return conventions and tokenizer.json validation errors. */
#include "pivot.h"
#include "testutil.h"
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf) buf[n] = 0;
  fclose(f);
  return buf;
}

static cJSON *read_json(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *txt = read_file(path);
  CHECK(txt != NULL, "cannot read fixture %s", path);
  if (!txt) return NULL;
  cJSON *j = cJSON_Parse(txt);
  free(txt);
  CHECK(j != NULL, "fixture %s is not valid JSON", path);
  return j;
}

static int valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c < 0x80) need = 1;
    else if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (i + need > n) return 0;
    for (size_t k = 1; k < need; k++) {
      if (s[i + k] < lo || s[i + k] > hi) return 0;
      lo = 0x80, hi = 0xBF;
    }
    i += need;
  }
  return 1;
}

static void test_golden(pv_context *ctx, pv_tokenizer *tok, const char *dir) {
  cJSON *g = read_json(dir, "golden.json");
  if (!g) return;
  CHECK(cJSON_IsArray(g) && cJSON_GetArraySize(g) > 0, "golden.json: expected a non-empty list");
  int32_t ids[4096];
  char out[8192];
  int ci = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, g) {
    const cJSON *jt = cJSON_GetObjectItem(c, "text"), *jids = cJSON_GetObjectItem(c, "ids");
    const cJSON *jtoks = cJSON_GetObjectItem(c, "tokens"), *jdec = cJSON_GetObjectItem(c, "decoded");
    if (!cJSON_IsString(jt) || !cJSON_IsArray(jids) || !cJSON_IsString(jdec)) {
      CHECK(0, "golden case %d is malformed", ci);
      continue;
    }
    const char *text = jt->valuestring;
    int64_t n = pv_tok_encode(tok, text, strlen(text), ids, 4096), want = cJSON_GetArraySize(jids);
    CHECK(n == want, "case %d '%s': %lld ids, expected %lld (%s)", ci, text, (long long)n, (long long)want,
          pv_last_error(ctx));
    int same = n == want, k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, jids) {
      if (k < n && ids[k] != (int32_t)e->valuedouble) {
        if (same) fprintf(stderr, "case %d: first difference at %d: %d vs %d\n", ci, k, ids[k], (int)e->valuedouble);
        same = 0;
      }
      k++;
    }
    CHECK(same, "case %d '%s': ids differ from golden", ci, text);
    k = 0;
    if (cJSON_IsArray(jtoks) && same) {
      cJSON_ArrayForEach(e, jtoks) {
        const char *s = pv_tok_id_to_token(tok, ids[k]);
        CHECK(s && strcmp(s, e->valuestring) == 0, "case %d token %d: '%s' vs '%s'", ci, k, s ? s : "(null)",
              e->valuestring);
        CHECK(pv_tok_token_to_id(tok, e->valuestring) == ids[k], "case %d: token_to_id('%s')", ci, e->valuestring);
        k++;
      }
    }
    /* count-only and short-buffer calls report the full count */
    CHECK(pv_tok_encode(tok, text, strlen(text), NULL, 0) == want, "case %d: count-only encode", ci);
    if (want >= 2) {
      int32_t small[4096];
      small[want / 2] = -7;
      CHECK(pv_tok_encode(tok, text, strlen(text), small, want / 2) == want && small[want / 2] == -7,
            "case %d: short buffer", ci);
    }
    if (n >= 0) {
      int64_t m = pv_tok_decode(tok, ids, n < 4096 ? n : 4096, out, sizeof out);
      CHECK(m == (int64_t)strlen(jdec->valuestring) && strcmp(out, jdec->valuestring) == 0,
            "case %d: decoded '%s', expected '%s' (%lld)", ci, out, jdec->valuestring, (long long)m);
    }
    ci++;
  }
  CHECK(ci >= 10, "golden.json: only %d cases", ci);
  cJSON_Delete(g);
}

static void test_golden_decode(pv_context *ctx, pv_tokenizer *tok, const char *dir) {
  cJSON *g = read_json(dir, "golden_decode.json");
  if (!g) return;
  int ci = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, g) {
    const cJSON *jids = cJSON_GetObjectItem(c, "ids"), *jdec = cJSON_GetObjectItem(c, "decoded"), *e;
    if (!cJSON_IsArray(jids) || !cJSON_IsString(jdec)) {
      CHECK(0, "golden_decode case %d is malformed", ci);
      continue;
    }
    int32_t ids[256];
    int n = 0;
    cJSON_ArrayForEach(e, jids) if (n < 256) ids[n++] = (int32_t)e->valuedouble;
    char out[1024];
    int64_t m = pv_tok_decode(tok, ids, n, out, sizeof out);
    CHECK(m == (int64_t)strlen(jdec->valuestring) && strcmp(out, jdec->valuestring) == 0,
          "golden_decode case %d: '%s', expected '%s' (%s)", ci, out, jdec->valuestring, pv_last_error(ctx));
    ci++;
  }
  CHECK(ci > 0, "golden_decode.json: no cases");
  cJSON_Delete(g);
}

static void test_api(pv_context *ctx, pv_tokenizer *tok) {
  CHECK(pv_tok_vocab_size(tok) == 800, "vocab size %lld", (long long)pv_tok_vocab_size(tok));
  CHECK(pv_tok_token_to_id(tok, "<|im_start|>") == 1, "token_to_id(<|im_start|>)");
  CHECK(pv_tok_token_to_id(tok, "Ġthe") == 281, "token_to_id(Ġthe)");
  CHECK(pv_tok_token_to_id(tok, "no such token") == -1, "token_to_id(absent)");
  CHECK(pv_tok_id_to_token(tok, -1) == NULL && pv_tok_id_to_token(tok, 800) == NULL, "id_to_token out of range");
  const char *s = pv_tok_id_to_token(tok, 3);
  CHECK(s && strcmp(s, "<|image_pad|>") == 0, "id_to_token(3)");
  /* truncated decode: full length returned, cap - 1 bytes and a NUL written */
  int32_t hello[] = {43, 775, 408, 307, 277, 79, 71};
  char out[8];
  memset(out, 'x', sizeof out);
  CHECK(pv_tok_decode(tok, hello, 7, out, 4) == 11 && strcmp(out, "Hel") == 0 && out[4] == 'x', "truncated decode");
  CHECK(pv_tok_decode(tok, hello, 7, NULL, 0) == 11, "length-only decode");
  CHECK(pv_tok_decode(tok, hello, 0, out, sizeof out) == 0 && out[0] == 0, "empty decode");
  int32_t bad[] = {43, 123456};
  CHECK(pv_tok_decode(tok, bad, 2, out, sizeof out) == -1 && strstr(pv_last_error(ctx), "123456"),
        "unknown id: %s", pv_last_error(ctx));
  int32_t neg[] = {-5};
  CHECK(pv_tok_decode(tok, neg, 1, out, sizeof out) == -1, "negative id");
  CHECK(pv_tok_encode(NULL, "a", 1, NULL, 0) == -1, "encode NULL tokenizer");
  CHECK(pv_tok_encode(tok, NULL, 3, NULL, 0) == -1, "encode NULL text");
  CHECK(pv_tok_encode(tok, "abc", 3, NULL, 5) == -1, "encode NULL ids with cap");
  CHECK(pv_tok_decode(NULL, hello, 1, out, sizeof out) == -1, "decode NULL tokenizer");
  CHECK(pv_tok_vocab_size(NULL) == 0 && pv_tok_token_to_id(NULL, "a") == -1 && !pv_tok_id_to_token(NULL, 0),
        "NULL queries");
  pv_tok_free(NULL);
  /* embedded NUL, special tokens glued to text, a partial special token */
  const char txt[] = "a\0b<|im_end|><|im_end|><|im_";
  int32_t ids[64];
  int64_t n = pv_tok_encode(tok, txt, sizeof txt - 1, ids, 64);
  char dec[128];
  int64_t m = n > 0 ? pv_tok_decode(tok, ids, n, dec, sizeof dec) : -1;
  CHECK(m == (int64_t)sizeof txt - 1 && memcmp(dec, txt, sizeof txt - 1) == 0, "NUL/special round trip");
  int specials = 0;
  for (int64_t i = 0; i < n; i++) specials += ids[i] == 2;
  CHECK(specials == 2, "two <|im_end|> ids, got %d", specials);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33);
}

static void test_fuzz(pv_context *ctx, pv_tokenizer *tok) {
  static const char *frags[] = {"a",  "The", " ", "  ", "\n", "\r\n", "\t", "é", "e\xcc\x81", "日本", "🙂", "'s",
                                "'LL", "123", ".", "<|im_start|>", "<|im_", "|>", "\xc3", "\xe2\x82", "\xff",
                                "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\x00", "x\xe2\x80\xa8y", "\xc2\xa0"};
  const int nfrag = (int)(sizeof frags / sizeof frags[0]);
  unsigned char text[256];
  int32_t ids[1024];
  char out[8192];
  int crashes = 0, ascii_ok = 0, ascii_n = 0, bad = 0;
  for (int it = 0; it < 2000; it++) {
    size_t len = 0;
    int mode = (int)(rnd() % 4);
    size_t target = rnd() % 120;
    while (len < target) {
      if (mode == 0) text[len++] = (unsigned char)rnd(); /* random bytes */
      else if (mode == 1) text[len++] = (unsigned char)(32 + rnd() % 95); /* printable ASCII */
      else {
        const char *f = frags[rnd() % (unsigned)nfrag];
        size_t fl = f[0] ? strlen(f) : 1;
        if (len + fl > sizeof text) break;
        memcpy(text + len, f, fl);
        len += fl;
      }
    }
    int64_t n = pv_tok_encode(tok, (const char *)text, len, ids, 1024);
    if (n < 0 || n > 1024) {
      crashes++;
      if (crashes < 5) fprintf(stderr, "fuzz %d: encode returned %lld: %s\n", it, (long long)n, pv_last_error(ctx));
      continue;
    }
    for (int64_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= pv_tok_vocab_size(tok)) bad++;
    int64_t m = pv_tok_decode(tok, ids, n, out, sizeof out);
    if (m < 0 || m >= (int64_t)sizeof out || !valid_utf8((unsigned char *)out, (size_t)m)) {
      crashes++;
      continue;
    }
    if (mode == 1) { /* ASCII is NFC-stable: exact round trip */
      ascii_n++;
      ascii_ok += m == (int64_t)len && memcmp(out, text, len) == 0;
    }
  }
  CHECK(crashes == 0, "fuzz: %d failed encode/decode calls", crashes);
  CHECK(bad == 0, "fuzz: %d ids out of range", bad);
  CHECK(ascii_ok == ascii_n && ascii_n > 0, "fuzz: ASCII round trip %d/%d", ascii_ok, ascii_n);
}

static pv_status load_text(pv_context *ctx, const char *name, const char *json, pv_tokenizer **tok, char *path,
                           size_t cap) {
  snprintf(path, cap, "%s/%s", pv_t_tmpdir(), name);
  FILE *f = fopen(path, "wb");
  if (!f) return PV_ERR_IO;
  fputs(json, f);
  fclose(f);
  return pv_tok_load(ctx, path, tok);
}

static void test_small_files(pv_context *ctx) {
  static const char *head =
      "{\"added_tokens\":[{\"id\":4,\"content\":\"<s>\",\"special\":true}],\"normalizer\":null,"
      "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
      "\"decoder\":{\"type\":\"ByteLevel\"},"
      "\"model\":{\"type\":\"%s\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3%s},\"merges\":%s}}";
  struct {
    const char *type, *vocab_extra, *merges;
    pv_status want;
    const char *msg;
  } cases[] = {
      {"BPE", "", "[\"a b\"]", PV_OK, NULL},
      {"BPE", "", "[[\"a\",\"b\"]]", PV_OK, NULL},
      {"BPE", ",\"\\u0120a\":5", "[\"a b\",\"\\u0120 a\"]", PV_OK, NULL},
      {"BPE", "", "[\"a c\"]", PV_ERR_FORMAT, "merges[0]"},
      {"BPE", "", "[\"a b\",\"b a\"]", PV_ERR_FORMAT, "merges[1]"},
      {"BPE", "", "[[\"a\"]]", PV_ERR_FORMAT, "merges[0]"},
      {"BPE", "", "[\"a b\",7]", PV_ERR_FORMAT, "merges[1]"},
      {"BPE", "", "[\"ab\"]", PV_ERR_FORMAT, "merges[0]"},
      {"BPE", "", "{}", PV_ERR_FORMAT, "model.merges"},
      {"BPE", ",\"c\":\"x\"", "[]", PV_ERR_FORMAT, "model.vocab"},
      {"WordPiece", "", "[]", PV_ERR_UNSUPPORTED, "model.type"},
  };
  char json[2048], path[1024];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(json, sizeof json, head, cases[i].type, cases[i].vocab_extra, cases[i].merges);
    char name[64];
    snprintf(name, sizeof name, "tok%zu.json", i);
    pv_tokenizer *tok = (pv_tokenizer *)1;
    pv_status st = load_text(ctx, name, json, &tok, path, sizeof path);
    CHECK(st == cases[i].want, "small case %zu: status %s, expected %s (%s)", i, pv_status_name(st),
          pv_status_name(cases[i].want), pv_last_error(ctx));
    if (st != PV_OK) {
      CHECK(tok == NULL, "small case %zu: *out not cleared", i);
      CHECK(strstr(pv_last_error(ctx), cases[i].msg) && strstr(pv_last_error(ctx), path),
            "small case %zu: message '%s' lacks '%s' or the path", i, pv_last_error(ctx), cases[i].msg);
      if (cases[i].want == PV_ERR_FORMAT && strstr(cases[i].msg, "merges["))
        CHECK(strstr(pv_last_error(ctx), "merges") != NULL, "small case %zu: message names merges", i);
      continue;
    }
    int32_t ids[16];
    int64_t n = pv_tok_encode(tok, "ab ab<s>a", 9, ids, 16);
    if (i < 2) /* "ab", " ab" (Ġ a b -> Ġ ab), <s>, "a" */
      CHECK(n == 5 && ids[0] == 2 && ids[1] == 3 && ids[2] == 2 && ids[3] == 4 && ids[4] == 0,
            "small case %zu: encode gave %lld ids", i, (long long)n);
    else /* rank 0 (a b) wins over rank 1 (Ġ a) */
      CHECK(n == 5 && ids[1] == 3 && ids[2] == 2, "small case %zu: merge ranks", i);
    char out[32];
    CHECK(pv_tok_decode(tok, ids, n, out, sizeof out) == 9 && strcmp(out, "ab ab<s>a") == 0, "small case %zu decode",
          i);
    CHECK(pv_tok_vocab_size(tok) == (i == 2 ? 6 : 5), "small case %zu vocab size", i);
    pv_tok_free(tok);
  }
  pv_tokenizer *tok = NULL;
  CHECK(load_text(ctx, "notjson.json", "{\"model\": [1, 2", &tok, path, sizeof path) == PV_ERR_FORMAT && !tok,
        "invalid JSON: %s", pv_last_error(ctx));
  CHECK(load_text(ctx, "nomodel.json", "{\"version\": \"1.0\"}", &tok, path, sizeof path) == PV_ERR_FORMAT &&
            strstr(pv_last_error(ctx), "'model'"),
        "missing model: %s", pv_last_error(ctx));
  snprintf(path, sizeof path, "%s/does_not_exist.json", pv_t_tmpdir());
  CHECK(pv_tok_load(ctx, path, &tok) == PV_ERR_IO && !tok, "missing file");
  CHECK(pv_tok_load(ctx, NULL, &tok) == PV_ERR_NULL, "NULL path");
  CHECK(pv_tok_load(NULL, path, &tok) == PV_ERR_NULL, "NULL context");
}

int main(void) {
  pv_context *ctx = pv_context_new();
  CHECK(ctx != NULL, "context");
  if (!ctx) return pv_t_finish();
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/hf/tokenizer", pv_t_fixtures());
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  pv_tokenizer *tok = NULL;
  pv_status st = pv_tok_load(ctx, path, &tok);
  CHECK(st == PV_OK && tok, "loading %s (fixtures are required): %s", path, pv_last_error(ctx));
  if (tok) {
    test_api(ctx, tok);
    test_golden(ctx, tok, dir);
    test_golden_decode(ctx, tok, dir);
    test_fuzz(ctx, tok);
    pv_tok_free(tok);
  }
  test_small_files(ctx);
  pv_context_free(ctx);
  return pv_t_finish();
}
