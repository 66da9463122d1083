/* C API misuse: every case returns an error status (or NULL with a sticky graph error) whose message
 * names the problem, and nothing aborts. Uses only the public header. */
#include "pivot.h"
#include "testutil.h"
#include <math.h>
#include <string.h>

static int has(const char *msg, const char *part) { return msg && part && strstr(msg, part) != NULL; }

/* checks that a graph call failed with status st and a message mentioning a, b (b may be NULL) */
#define GRAPH_FAILS(g, t, st, a, b)                                                                                   \
  do {                                                                                                                \
    CHECK((t) == NULL, "%s: expected NULL", #t);                                                                      \
    CHECK(pv_graph_status(g) == (st), "%s: status %s, expected %s (%s)", #t, pv_status_name(pv_graph_status(g)),      \
          pv_status_name(st), pv_graph_error(g));                                                                     \
    CHECK(has(pv_graph_error(g), a) && (!(b) || has(pv_graph_error(g), b)), "%s: message '%s' lacks '%s'/'%s'", #t,   \
          pv_graph_error(g), a, (b) ? (const char *)(b) : "");                                                        \
    pv_graph_clear_error(g);                                                                                          \
  } while (0)

/* checks a status call failed with st and pv_last_error mentions part */
#define STATUS_FAILS(ctx, call, st, part)                                                                             \
  do {                                                                                                                \
    pv_status s_ = (call);                                                                                            \
    CHECK(s_ == (st), "%s: status %s, expected %s (%s)", #call, pv_status_name(s_), pv_status_name(st),               \
          pv_last_error(ctx));                                                                                        \
    CHECK(!(part) || has(pv_last_error(ctx), part), "%s: message '%s' lacks '%s'", #call, pv_last_error(ctx),         \
          (part) ? (const char *)(part) : "");                                                                        \
  } while (0)

static void test_null_handles(void) {
  int64_t sh[1] = {4};
  float buf[4] = {0};
  CHECK(pv_graph_new(NULL) == NULL, "graph_new(NULL)");
  CHECK(pv_plan_run(NULL) == PV_ERR_NULL, "plan_run(NULL)");
  CHECK(pv_plan_write(NULL, NULL, PV_F32, buf, 4) == PV_ERR_NULL, "plan_write(NULL)");
  CHECK(pv_plan_read(NULL, NULL, PV_F32, buf, 4) == PV_ERR_NULL, "plan_read(NULL)");
  CHECK(pv_plan_set_profiling(NULL, 1) == PV_ERR_NULL, "plan_set_profiling(NULL)");
  CHECK(pv_plan_profile(NULL, (char *)buf, sizeof buf) == PV_ERR_NULL, "plan_profile(NULL)");
  CHECK(pv_plan_peak_bytes(NULL) == 0 && pv_plan_naive_bytes(NULL) == 0 && pv_plan_node_count(NULL) == 0,
        "plan queries on NULL");
  CHECK(pv_plan_backend(NULL) != NULL, "plan_backend(NULL) returns a string");
  pv_plan *p = (pv_plan *)buf;
  CHECK(pv_plan_compile(NULL, NULL, &p) == PV_ERR_NULL && p == NULL, "plan_compile(NULL) clears *out");
  CHECK(pv_var_write(NULL, PV_F32, buf, 4) == PV_ERR_NULL, "var_write(NULL)");
  CHECK(pv_var_read(NULL, PV_F32, buf, 4) == PV_ERR_NULL, "var_read(NULL)");
  CHECK(pv_var_fill(NULL, 1.0) == PV_ERR_NULL, "var_fill(NULL)");
  CHECK(pv_var_init_normal(NULL, 0, 1) == PV_ERR_NULL, "var_init_normal(NULL)");
  CHECK(pv_var_init_uniform(NULL, 0, 1) == PV_ERR_NULL, "var_init_uniform(NULL)");
  CHECK(pv_var_free(NULL) == PV_ERR_NULL, "var_free(NULL)");
  CHECK(pv_var_find(NULL, "x") == NULL && pv_var_count(NULL) == 0 && pv_var_at(NULL, 0) == NULL, "var lookups");
  CHECK(pv_var_name(NULL) != NULL && pv_var_ndim(NULL) == 0 && pv_var_numel(NULL) == 0 && pv_var_dim(NULL, 0) == 0,
        "var queries on NULL");
  pv_var *v = (pv_var *)buf;
  CHECK(pv_var_new(NULL, "x", PV_F32, 1, sh, &v) == PV_ERR_NULL, "var_new(NULL ctx)");
  CHECK(pv_set_threads(NULL, 2) == PV_ERR_NULL && pv_set_seed(NULL, 1) == PV_ERR_NULL, "ctx setters on NULL");
  CHECK(pv_get_threads(NULL) == 0, "get_threads(NULL)");
  CHECK(pv_last_error(NULL) != NULL, "last_error(NULL) returns a string");
  pv_clear_error(NULL);
  CHECK(pv_graph_status(NULL) == PV_ERR_NULL && pv_graph_error(NULL) != NULL, "graph status on NULL");
  CHECK(pv_graph_context(NULL) == NULL && pv_graph_node_count(NULL) == 0, "graph queries on NULL");
  pv_graph_clear_error(NULL);
  CHECK(pv_input(NULL, "x", PV_F32, 1, sh) == NULL, "input(NULL graph)");
  CHECK(pv_use_var(NULL, NULL) == NULL && pv_fill(NULL, 1, 1, sh) == NULL && pv_arange(NULL, 3, PV_I32) == NULL,
        "leaves on NULL graph");
  CHECK(pv_add(NULL, NULL, NULL) == NULL && pv_matmul(NULL, NULL, NULL, 0, 0) == NULL, "ops on NULL graph");
  CHECK(pv_unary(NULL, PV_EXP, NULL) == NULL && pv_sum(NULL, NULL, 0, 0) == NULL, "more ops on NULL graph");
  CHECK(pv_set_trainable(NULL, 1) == PV_ERR_NULL && pv_mark_output(NULL) == PV_ERR_NULL, "marks on NULL");
  CHECK(pv_set_name(NULL, "x") == PV_ERR_NULL, "set_name(NULL)");
  CHECK(pv_tensor_ndim(NULL) == 0 && pv_tensor_numel(NULL) == 0 && pv_tensor_dim(NULL, 0) == 0, "tensor queries");
  CHECK(pv_tensor_name(NULL) != NULL && pv_tensor_op(NULL) != NULL && pv_tensor_id(NULL) == -1, "tensor strings");
  CHECK(pv_tensor_var(NULL) == NULL, "tensor_var(NULL)");
  CHECK(pv_graph_backward(NULL, NULL) == PV_ERR_NULL, "graph_backward(NULL)");
  CHECK(pv_grad(NULL, NULL) == NULL, "grad(NULL)");
  char text[64];
  CHECK(pv_backend_describe(NULL, "cpu", text, sizeof text) == PV_ERR_NULL, "backend_describe(NULL)");
  const char *why = NULL;
  CHECK(pv_backend_available(NULL, NULL, &why) == 0 && why != NULL, "backend_available(NULL name) gives a reason");
  pv_safetensors *st = (pv_safetensors *)buf;
  CHECK(pv_st_open(NULL, "x.safetensors", &st) != PV_OK && st == NULL, "st_open(NULL ctx)");
  pv_tokenizer *tok = (pv_tokenizer *)buf;
  CHECK(pv_tok_load(NULL, "tokenizer.json", &tok) != PV_OK && tok == NULL, "tok_load(NULL ctx)");
  /* frees of NULL are no-ops */
  pv_plan_free(NULL);
  pv_graph_free(NULL);
  pv_context_free(NULL);
  pv_st_close(NULL);
  pv_tok_free(NULL);
  CHECK(pv_status_name((pv_status)99) != NULL && pv_dtype_size((pv_dtype)99) == 0, "out-of-range enums");
  CHECK(strcmp(pv_dtype_name((pv_dtype)99), "f32") != 0, "invalid dtype name");
}

static void test_graph_errors(pv_context *ctx) {
  pv_graph *g = pv_graph_new(ctx);
  int64_t s23[2] = {2, 3}, s4[1] = {4}, s57[2] = {5, 7};
  pv_tensor *a = pv_input(g, "a", PV_F32, 2, s23);
  pv_tensor *b = pv_input(g, "b", PV_F32, 1, s4);
  pv_tensor *ids = pv_input(g, "ids", PV_I64, 1, s4);
  CHECK(a && b && ids, "inputs: %s", pv_graph_error(g));

  /* shape mismatch: the op and both shapes are named */
  GRAPH_FAILS(g, pv_add(g, a, b), PV_ERR_SHAPE, "add", "[2, 3]");
  pv_tensor *t = pv_add(g, a, b);
  CHECK(t == NULL && has(pv_graph_error(g), "[4]"), "add message names [4]: %s", pv_graph_error(g));
  /* sticky: later calls fail too, and the first error is kept */
  CHECK(pv_scale(g, a, 2.0) == NULL && has(pv_graph_error(g), "add"), "sticky error keeps the first message");
  CHECK(pv_graph_status(g) == PV_ERR_SHAPE, "sticky status");
  CHECK(has(pv_last_error(ctx), "add"), "the graph error is also the context's last error: %s", pv_last_error(ctx));
  pv_graph_clear_error(g);
  CHECK(pv_scale(g, a, 2.0) != NULL, "building resumes after clear_error");

  /* wrong dtypes */
  GRAPH_FAILS(g, pv_unary(g, PV_EXP, ids), PV_ERR_DTYPE, "i64", "f32");
  GRAPH_FAILS(g, pv_add(g, a, ids), PV_ERR_DTYPE, "i64", NULL);
  GRAPH_FAILS(g, pv_embedding(g, a, b), PV_ERR_DTYPE, "embedding", NULL);
  GRAPH_FAILS(g, pv_input(g, "bad", (pv_dtype)42, 2, s23), PV_ERR_DTYPE, "bad", NULL);

  /* other shape errors */
  pv_tensor *w = pv_input(g, "w", PV_F32, 2, s57);
  GRAPH_FAILS(g, pv_matmul(g, a, w, 0, 0), PV_ERR_SHAPE, "matmul", "[5, 7]");
  int64_t s7[1] = {7};
  GRAPH_FAILS(g, pv_reshape(g, a, 1, s7), PV_ERR_SHAPE, "reshape", NULL);
  GRAPH_FAILS(g, pv_slice(g, a, 1, 2, 9), PV_ERR_SHAPE, "slice", NULL);
  pv_tensor *r = pv_slice(g, a, 5, 0, 1);
  CHECK(r == NULL && pv_graph_status(g) != PV_OK && has(pv_graph_error(g), "slice"), "slice bad axis: %s",
        pv_graph_error(g));
  pv_graph_clear_error(g);
  int perm[2] = {0, 0};
  r = pv_permute(g, a, 2, perm);
  CHECK(r == NULL && pv_graph_status(g) != PV_OK && has(pv_graph_error(g), "permute"), "permute bad perm: %s",
        pv_graph_error(g));
  pv_graph_clear_error(g);
  r = pv_concat(g, 0, NULL, 0);
  CHECK(r == NULL && pv_graph_status(g) != PV_OK, "concat of nothing");
  pv_graph_clear_error(g);
  int64_t neg[1] = {-3};
  GRAPH_FAILS(g, pv_input(g, "neg", PV_F32, 1, neg), PV_ERR_SHAPE, "neg", NULL);
  r = pv_softmax(g, a, NULL, NAN, 0);
  CHECK(r == NULL && has(pv_graph_error(g), "scale"), "softmax with NaN scale: %s", pv_graph_error(g));
  pv_graph_clear_error(g);
  r = pv_sum(g, a, 5, 0);
  CHECK(r == NULL && has(pv_graph_error(g), "sum"), "sum bad axis: %s", pv_graph_error(g));
  pv_graph_clear_error(g);

  /* a NULL input is named */
  GRAPH_FAILS(g, pv_add(g, a, NULL), PV_ERR_NULL, "input 1", "NULL");

  /* a tensor of another graph */
  pv_graph *g2 = pv_graph_new(ctx);
  pv_tensor *c = pv_input(g2, "c", PV_F32, 2, s23);
  GRAPH_FAILS(g, pv_add(g, a, c), PV_ERR_INVALID, "another graph", NULL);

  /* marks */
  STATUS_FAILS(ctx, pv_set_trainable(pv_scale(g, a, 1.0), 1), PV_ERR_INVALID, "set_trainable");
  STATUS_FAILS(ctx, pv_set_trainable(ids, 1), PV_ERR_DTYPE, "ids");

  /* autodiff misuse */
  CHECK(pv_grad(g, a) == NULL, "grad before backward is NULL");
  pv_status st = pv_graph_backward(g, a); /* loss with 6 elements */
  CHECK(st != PV_OK, "backward of a non-scalar loss fails");
  CHECK(has(pv_last_error(ctx), "loss") || has(pv_graph_error(g), "loss"), "backward message names the loss: %s",
        pv_last_error(ctx));
  pv_graph_clear_error(g);
  pv_clear_error(ctx);
  CHECK(pv_last_error(ctx)[0] == 0, "clear_error");

  /* variables of another context */
  pv_context *other = pv_context_new();
  pv_var *ov = NULL;
  CHECK(pv_var_new(other, "ov", PV_F32, 1, s4, &ov) == PV_OK, "var_new");
  GRAPH_FAILS(g, pv_use_var(g, ov), PV_ERR_INVALID, "ov", "another context");
  GRAPH_FAILS(g, pv_use_var(g, NULL), PV_ERR_NULL, "NULL", NULL);
  pv_context_free(other);

  pv_graph_free(g2);
  pv_graph_free(g);
}

static void test_vars(pv_context *ctx) {
  int64_t s4[1] = {4}, sneg[1] = {-1};
  pv_var *v = NULL, *dup = NULL;
  CHECK(pv_var_new(ctx, "v", PV_F32, 1, s4, &v) == PV_OK && v, "var_new");
  STATUS_FAILS(ctx, pv_var_new(ctx, "v", PV_F32, 1, s4, &dup), PV_ERR_INVALID, "'v'");
  STATUS_FAILS(ctx, pv_var_new(ctx, NULL, PV_F32, 1, s4, &dup), PV_ERR_NULL, NULL);
  STATUS_FAILS(ctx, pv_var_new(ctx, "n", PV_F32, 1, sneg, &dup), PV_ERR_SHAPE, "n");
  STATUS_FAILS(ctx, pv_var_new(ctx, "d", (pv_dtype)17, 1, s4, &dup), PV_ERR_DTYPE, NULL);
  float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  STATUS_FAILS(ctx, pv_var_write(v, PV_F32, data, 3), PV_ERR_SHAPE, "v");
  STATUS_FAILS(ctx, pv_var_read(v, PV_F32, data, 8), PV_ERR_SHAPE, "v");
  STATUS_FAILS(ctx, pv_var_write(v, PV_F32, NULL, 4), PV_ERR_NULL, NULL);
  STATUS_FAILS(ctx, pv_var_read(v, PV_F32, NULL, 4), PV_ERR_NULL, NULL);
  STATUS_FAILS(ctx, pv_set_threads(ctx, 0), PV_ERR_INVALID, "0");
  CHECK(pv_var_write(v, PV_F32, data, 4) == PV_OK, "var_write ok: %s", pv_last_error(ctx));
}

static void test_plans(pv_context *ctx) {
  pv_graph *g = pv_graph_new(ctx);
  int64_t s4[1] = {4};
  pv_tensor *x = pv_input(g, "x", PV_F32, 1, s4);
  pv_tensor *ids = pv_input(g, "ids", PV_I32, 1, s4);
  pv_tensor *y = pv_scale(g, x, 2.0);
  pv_tensor *z = pv_add_scalar(g, x, 1.0); /* not an output */
  pv_mark_output(y);
  pv_mark_output(pv_label_mask(g, ids, -100));
  pv_mark_output(pv_add(g, z, y));
  CHECK(pv_graph_status(g) == PV_OK, "build: %s", pv_graph_error(g));

  /* unknown backend, unavailable backend */
  pv_plan_options o = {.backend = "tpu", .threads = 0, .device = -1, .no_inplace = 0};
  pv_plan *p = (pv_plan *)&o;
  STATUS_FAILS(ctx, pv_plan_compile(g, &o, &p), PV_ERR_INVALID, "tpu");
  CHECK(p == NULL, "failed compile leaves *out NULL");
  const char *why = NULL;
  if (!pv_backend_available(ctx, "vulkan", &why)) {
    o.backend = "vulkan";
    STATUS_FAILS(ctx, pv_plan_compile(g, &o, &p), PV_ERR_UNSUPPORTED, "vulkan");
    CHECK(why && *why, "unavailable backend gives a reason");
  }
  CHECK(pv_plan_compile(g, NULL, NULL) == PV_ERR_NULL, "compile with NULL out");

  CHECK(pv_plan_compile(g, NULL, &p) == PV_OK && p, "compile: %s", pv_last_error(ctx));
  if (!p) {
    pv_graph_free(g);
    return;
  }
  float buf[4] = {1, 2, 3, 4}, out[4];
  int32_t idv[4] = {0, -100, 2, 3};
  /* reading before the first run */
  STATUS_FAILS(ctx, pv_plan_read(p, y, PV_F32, out, 4), PV_ERR_STATE, "not run");
  /* writing to a non-input, wrong counts, wrong dtype kinds, NULL data */
  STATUS_FAILS(ctx, pv_plan_write(p, y, PV_F32, buf, 4), PV_ERR_INVALID, "not an input");
  STATUS_FAILS(ctx, pv_plan_write(p, x, PV_F32, buf, 3), PV_ERR_SHAPE, "x");
  STATUS_FAILS(ctx, pv_plan_write(p, ids, PV_F32, buf, 4), PV_ERR_DTYPE, "ids");
  STATUS_FAILS(ctx, pv_plan_write(p, x, PV_F32, NULL, 4), PV_ERR_NULL, "x");
  STATUS_FAILS(ctx, pv_plan_write(p, NULL, PV_F32, buf, 4), PV_ERR_NULL, NULL);
  STATUS_FAILS(ctx, pv_plan_write(p, x, (pv_dtype)33, buf, 4), PV_ERR_DTYPE, NULL);
  CHECK(pv_plan_write(p, x, PV_F32, buf, 4) == PV_OK, "write x: %s", pv_last_error(ctx));
  CHECK(pv_plan_write(p, ids, PV_I32, idv, 4) == PV_OK, "write ids: %s", pv_last_error(ctx));
  CHECK(pv_plan_run(p) == PV_OK, "run: %s", pv_last_error(ctx));
  CHECK(pv_plan_read(p, y, PV_F32, out, 4) == PV_OK && out[3] == 8.0f, "read y: %s", pv_last_error(ctx));
  /* reading a non-output, a tensor of another graph, wrong count, NULL out */
  STATUS_FAILS(ctx, pv_plan_read(p, z, PV_F32, out, 4), PV_ERR_INVALID, "output");
  STATUS_FAILS(ctx, pv_plan_read(p, y, PV_F32, out, 2), PV_ERR_SHAPE, NULL);
  STATUS_FAILS(ctx, pv_plan_read(p, y, PV_F32, NULL, 4), PV_ERR_NULL, NULL);
  pv_graph *g2 = pv_graph_new(ctx);
  pv_tensor *x2 = pv_input(g2, "x2", PV_F32, 1, s4);
  STATUS_FAILS(ctx, pv_plan_read(p, x2, PV_F32, out, 4), PV_ERR_INVALID, "another graph");
  pv_graph_free(g2);

  /* the graph changed after compiling: new nodes are not part of the plan */
  pv_tensor *late = pv_unary(g, PV_EXP, y);
  pv_mark_output(late);
  pv_status st = pv_plan_run(p);
  CHECK(st == PV_OK || st == PV_ERR_STATE, "run after the graph grew: %s", pv_status_name(st));
  STATUS_FAILS(ctx, pv_plan_read(p, late, PV_F32, out, 4), PV_ERR_INVALID, "not part of the plan");
  pv_plan_free(p);

  /* an id out of range is a run error (embedding) */
  pv_graph *ge = pv_graph_new(ctx);
  int64_t s32[2] = {3, 2};
  pv_tensor *wt = pv_input(ge, "wt", PV_F32, 2, s32);
  pv_tensor *ix = pv_input(ge, "ix", PV_I32, 1, s4);
  pv_tensor *em = pv_embedding(ge, wt, ix);
  pv_mark_output(em);
  pv_plan *pe = NULL;
  CHECK(pv_plan_compile(ge, NULL, &pe) == PV_OK, "compile embedding: %s", pv_last_error(ctx));
  if (pe) {
    float wv[6] = {0};
    int32_t bad[4] = {0, 1, 7, 2};
    pv_plan_write(pe, wt, PV_F32, wv, 6);
    pv_plan_write(pe, ix, PV_I32, bad, 4);
    STATUS_FAILS(ctx, pv_plan_run(pe), PV_ERR_INVALID, NULL);
    pv_plan_free(pe);
  }
  pv_graph_free(ge);

  /* compiling a graph with a sticky error */
  pv_graph *gb = pv_graph_new(ctx);
  int64_t s3[1] = {3};
  pv_tensor *a = pv_input(gb, "a", PV_F32, 1, s4), *b = pv_input(gb, "b", PV_F32, 1, s3);
  pv_mark_output(pv_add(gb, a, b));
  pv_plan *pb = (pv_plan *)&o;
  STATUS_FAILS(ctx, pv_plan_compile(gb, NULL, &pb), PV_ERR_SHAPE, "add");
  CHECK(pb == NULL, "failed compile leaves *out NULL");
  /* and a graph with nothing to compute */
  pv_graph *ge2 = pv_graph_new(ctx);
  pv_input(ge2, "lonely", PV_F32, 1, s4);
  pv_plan *pn = NULL;
  pv_status sn = pv_plan_compile(ge2, NULL, &pn);
  CHECK(sn != PV_OK && pn == NULL && pv_last_error(ctx)[0], "compiling an empty graph fails with a message");
  pv_plan_free(pn);
  pv_graph_free(ge2);
  pv_graph_free(gb);
  pv_graph_free(g);
}

static void test_files(pv_context *ctx) {
  pv_safetensors *st = NULL;
  pv_status s = pv_st_open(ctx, "/nonexistent/dir/model.safetensors", &st);
  CHECK(s == PV_ERR_IO && st == NULL, "st_open of a missing file: %s", pv_status_name(s));
  CHECK(has(pv_last_error(ctx), "model.safetensors"), "the message names the file: %s", pv_last_error(ctx));
  pv_tokenizer *tok = NULL;
  s = pv_tok_load(ctx, "/nonexistent/tokenizer.json", &tok);
  CHECK(s != PV_OK && tok == NULL, "tok_load of a missing file");
  CHECK(has(pv_last_error(ctx), "tokenizer.json"), "the message names the file: %s", pv_last_error(ctx));
}

int main(void) {
  test_null_handles();
  pv_context *ctx = pv_context_new();
  CHECK(ctx != NULL, "context");
  if (!ctx) return pv_t_finish();
  pv_set_threads(ctx, 1);
  test_graph_errors(ctx);
  test_vars(ctx);
  test_plans(ctx);
  test_files(ctx);
  pv_context_free(ctx);
  return pv_t_finish();
}
