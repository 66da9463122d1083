/* pivot.h: the whole public C API of pivot, a dataflow-graph runtime with autodiff on the CPU
 * (OpenBLAS) and Vulkan.
 *
 * Conventions
 *  - Every handle is opaque. Fallible calls return pv_status; details go to pv_last_error(ctx).
 *  - Graph-builder calls (pv_add, pv_matmul, ...) use a sticky error: the first failure is recorded
 *    in the graph, that call and every later builder call on the graph return NULL, and
 *    pv_graph_status()/pv_graph_error() tell what went wrong (op name and shapes).
 *  - Ownership: a pv_context owns its variables; a pv_graph owns its tensors (nodes); a pv_plan
 *    owns its buffers. Free plans before their graph, and graphs before their context.
 *    Strings returned by the API are owned by the object they came from and stay valid until it
 *    is freed (or until the next call that overwrites them, for error strings).
 *  - No call aborts the process on bad input; NULL handles give PV_ERR_NULL.
 *  - Shapes are int64_t arrays, outermost dimension first (row-major, like PyTorch).
 *
 * This header is parsed verbatim by LuaJIT's ffi.cdef (after preprocessor lines are dropped), so it
 * uses no macros in declarations. */
#ifndef PIVOT_H
#define PIVOT_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status and types */
typedef enum pv_status {
  PV_OK = 0,
  PV_ERR_INVALID = 1,     /* an invalid argument value */
  PV_ERR_NULL = 2,        /* a NULL handle or pointer */
  PV_ERR_SHAPE = 3,       /* shapes do not agree */
  PV_ERR_DTYPE = 4,       /* a wrong dtype */
  PV_ERR_STATE = 5,       /* call out of order (e.g. running an uncompiled graph) */
  PV_ERR_IO = 6,          /* a file could not be read or written */
  PV_ERR_FORMAT = 7,      /* a file is malformed */
  PV_ERR_NOMEM = 8,       /* out of host or device memory */
  PV_ERR_UNSUPPORTED = 9, /* an op or feature this backend or build does not have */
  PV_ERR_BACKEND = 10,    /* a backend failure (device lost, driver error) */
  PV_ERR_NOT_FOUND = 11   /* a name that does not exist */
} pv_status;

typedef enum pv_dtype {
  PV_F32 = 0,
  PV_F16 = 1,
  PV_BF16 = 2,
  PV_I32 = 3,
  PV_I64 = 4,
  PV_F64 = 5 /* host-side data exchange and the float64 reference backend */
} pv_dtype;

typedef struct pv_context pv_context;
typedef struct pv_var pv_var;       /* a persistent named tensor owned by a context (weights, optimizer state) */
typedef struct pv_graph pv_graph;   /* a static dataflow graph */
typedef struct pv_tensor pv_tensor; /* a node of a graph, owned by the graph */
typedef struct pv_plan pv_plan;     /* a graph compiled for one backend */
typedef struct pv_safetensors pv_safetensors; /* an open (mmapped) safetensors file */
typedef struct pv_tokenizer pv_tokenizer;     /* a byte-level BPE tokenizer from tokenizer.json */

/* ---------------------------------------------------------------- library and context */
const char *pv_version(void);            /* static string, e.g. "0.1.0" */
const char *pv_header_text(void);        /* this header's text (the Lua binding cdefs it) */
const char *pv_status_name(pv_status s); /* static string, e.g. "PV_ERR_SHAPE" */
const char *pv_dtype_name(pv_dtype t);   /* static string: "f32", "f16", "bf16", "i32", "i64", "f64" */
size_t pv_dtype_size(pv_dtype t);        /* bytes per element, 0 for an invalid dtype */

pv_context *pv_context_new(void);                 /* NULL only when out of memory; free with pv_context_free */
void pv_context_free(pv_context *ctx);            /* frees variables too; NULL is a no-op */
const char *pv_last_error(const pv_context *ctx); /* the last error message; "" if none; owned by ctx */
void pv_clear_error(pv_context *ctx);
pv_status pv_set_threads(pv_context *ctx, int n); /* CPU threads for plans compiled afterwards (default: all cores) */
int pv_get_threads(const pv_context *ctx);
pv_status pv_set_seed(pv_context *ctx, uint64_t seed); /* seed of pv_var_init_* */

/* Backends: "cpu", "vulkan", "ref" (naive float64 kernels, for tests).
 * pv_backend_available returns 1 if the backend can run here, else 0 and the reason in *why
 * (a static or ctx-owned string; may be NULL). */
int pv_backend_available(pv_context *ctx, const char *backend, const char **why);
/* Writes a human-readable description of the devices of a backend into buf (NUL-terminated,
 * truncated to cap bytes). Returns PV_ERR_UNSUPPORTED if the backend is not available. */
pv_status pv_backend_describe(pv_context *ctx, const char *backend, char *buf, size_t cap);

/* ---------------------------------------------------------------- variables (persistent tensors) */
/* Creates a zero-filled variable. The name must be unique in the context. *out is owned by ctx. */
pv_status pv_var_new(pv_context *ctx, const char *name, pv_dtype dtype, int ndim, const int64_t *shape, pv_var **out);
pv_var *pv_var_find(pv_context *ctx, const char *name); /* NULL if absent (not an error) */
pv_status pv_var_free(pv_var *v);                       /* removes it from its context */
int pv_var_count(const pv_context *ctx);
pv_var *pv_var_at(const pv_context *ctx, int i); /* i in [0, count) in creation order */
const char *pv_var_name(const pv_var *v);
pv_dtype pv_var_dtype(const pv_var *v);
int pv_var_ndim(const pv_var *v);
int64_t pv_var_dim(const pv_var *v, int i);
int64_t pv_var_numel(const pv_var *v);
/* Copies count elements of type src_dtype (converted) into the variable. count must equal numel. */
pv_status pv_var_write(pv_var *v, pv_dtype src_dtype, const void *data, int64_t count);
/* Copies the variable out, converted to dst_dtype. count must equal numel. */
pv_status pv_var_read(pv_var *v, pv_dtype dst_dtype, void *out, int64_t count);
pv_status pv_var_fill(pv_var *v, double value);
/* Initialisers from the context's seeded generator. */
pv_status pv_var_init_normal(pv_var *v, double mean, double std);
pv_status pv_var_init_uniform(pv_var *v, double lo, double hi);

/* ---------------------------------------------------------------- graphs */
pv_graph *pv_graph_new(pv_context *ctx); /* NULL when out of memory or ctx is NULL */
void pv_graph_free(pv_graph *g);
pv_context *pv_graph_context(const pv_graph *g);
pv_status pv_graph_status(const pv_graph *g);  /* the sticky error status (PV_OK if none) */
const char *pv_graph_error(const pv_graph *g); /* the sticky error message, "" if none */
void pv_graph_clear_error(pv_graph *g);
int pv_graph_node_count(const pv_graph *g);

/* Leaves */
pv_tensor *pv_input(pv_graph *g, const char *name, pv_dtype dtype, int ndim, const int64_t *shape);
pv_tensor *pv_use_var(pv_graph *g, pv_var *v); /* a node that reads (and may update) v */
pv_tensor *pv_fill(pv_graph *g, double value, int ndim, const int64_t *shape); /* constant f32 */
pv_tensor *pv_arange(pv_graph *g, int64_t n, pv_dtype dtype);                  /* 0..n-1 */

/* Marks. pv_set_trainable: gradients flow to this var-node or input (frozen otherwise). */
pv_status pv_set_trainable(pv_tensor *t, int trainable);
pv_status pv_mark_output(pv_tensor *t); /* kept after the run and readable */
/* Marks (on=1) or unmarks (on=0) t as an output. Gradients of trainable nodes are outputs after
 * pv_graph_backward; an optimizer that consumes them in the same plan unmarks them to save memory. */
pv_status pv_set_output(pv_tensor *t, int on);
pv_status pv_set_name(pv_tensor *t, const char *name); /* copied */

/* Tensor queries */
pv_dtype pv_tensor_dtype(const pv_tensor *t);
int pv_tensor_ndim(const pv_tensor *t);
int64_t pv_tensor_dim(const pv_tensor *t, int i); /* negative i counts from the end */
int64_t pv_tensor_numel(const pv_tensor *t);
const char *pv_tensor_name(const pv_tensor *t); /* "" if unnamed */
const char *pv_tensor_op(const pv_tensor *t);   /* the op name, e.g. "matmul", "input", "var" */
int pv_tensor_id(const pv_tensor *t);
pv_var *pv_tensor_var(const pv_tensor *t); /* the variable of a pv_use_var node, else NULL */

/* Autodiff: appends the backward graph of loss (a tensor with one element) to g, for every trainable
 * var-node that loss depends on. Non-differentiable inputs (ids, masks) get no gradient. */
pv_status pv_graph_backward(pv_graph *g, pv_tensor *loss);
/* The gradient of t after pv_graph_backward, or NULL if loss does not depend on t. */
pv_tensor *pv_grad(pv_graph *g, pv_tensor *t);

/* ---------------------------------------------------------------- ops
 * Float ops take and return f32 tensors. Shapes broadcast NumPy-style where stated. */

/* GEMM: a [..., M, K] (or [..., K, M] when trans_a), b [..., K, N] (or [..., N, K] when trans_b)
 * -> [..., M, N]. Batch dimensions broadcast (b may be a plain matrix). */
pv_tensor *pv_matmul(pv_graph *g, pv_tensor *a, pv_tensor *b, int trans_a, int trans_b);

/* Elementwise binary with broadcasting */
pv_tensor *pv_add(pv_graph *g, pv_tensor *a, pv_tensor *b);
pv_tensor *pv_sub(pv_graph *g, pv_tensor *a, pv_tensor *b);
pv_tensor *pv_mul(pv_graph *g, pv_tensor *a, pv_tensor *b);
pv_tensor *pv_div(pv_graph *g, pv_tensor *a, pv_tensor *b);
pv_tensor *pv_scale(pv_graph *g, pv_tensor *x, double s);      /* s * x */
pv_tensor *pv_add_scalar(pv_graph *g, pv_tensor *x, double c); /* x + c */

/* Unary */
typedef enum pv_unary_kind {
  PV_NEG = 0,
  PV_EXP,
  PV_LOG,
  PV_SQRT,
  PV_RSQRT,
  PV_TANH,
  PV_SIGMOID,
  PV_LOGSIGMOID,
  PV_SILU,
  PV_GELU_TANH,
  PV_GELU_ERF,
  PV_RELU,
  PV_SQUARE,
  PV_ABS,
  PV_UNARY_COUNT
} pv_unary_kind;
pv_tensor *pv_unary(pv_graph *g, pv_unary_kind kind, pv_tensor *x);
/* dy * f'(x): the backward of pv_unary (exposed for tests and custom rules) */
pv_tensor *pv_unary_grad(pv_graph *g, pv_unary_kind kind, pv_tensor *x, pv_tensor *dy);
/* silu(a) * b, a and b of one shape (the gated MLP activation; fused forward and backward) */
pv_tensor *pv_swiglu(pv_graph *g, pv_tensor *a, pv_tensor *b);

/* Reductions along one axis (negative counts from the end) */
pv_tensor *pv_sum(pv_graph *g, pv_tensor *x, int axis, int keepdim);
pv_tensor *pv_mean(pv_graph *g, pv_tensor *x, int axis, int keepdim);
pv_tensor *pv_max(pv_graph *g, pv_tensor *x, int axis, int keepdim);
pv_tensor *pv_sumsq(pv_graph *g, pv_tensor *x);   /* sum of squares of all -> [1] */
pv_tensor *pv_sum_all(pv_graph *g, pv_tensor *x); /* -> [1] */
/* Sums broadcast dimensions away so the result has the given shape (the backward of broadcasting). */
pv_tensor *pv_sum_to(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape);
/* Broadcasts x to shape (materialised). */
pv_tensor *pv_expand(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape);

/* Normalisation over the last axis. w, b may be NULL. */
pv_tensor *pv_layer_norm(pv_graph *g, pv_tensor *x, pv_tensor *w, pv_tensor *b, double eps);
pv_tensor *pv_rms_norm(pv_graph *g, pv_tensor *x, pv_tensor *w, double eps);

/* softmax(scale * x + mask) over the last axis. mask (additive, broadcast to x) may be NULL.
 * causal: entries j > i + (Tk - Tq) over the last two axes [.., Tq, Tk] are excluded. */
pv_tensor *pv_softmax(pv_graph *g, pv_tensor *x, pv_tensor *mask, double scale, int causal);
pv_tensor *pv_log_softmax(pv_graph *g, pv_tensor *x, pv_tensor *mask, double scale, int causal);

/* Rotary embedding, HF rotate-half convention. x [B, T, H, D], pos [B, T] (i32 or i64, or [T]).
 * Rotates the first rot_dims (even, <= D) channels; theta is the base. */
pv_tensor *pv_rope(pv_graph *g, pv_tensor *x, pv_tensor *pos, double theta, int rot_dims);

/* Embedding lookup: weight [V, D], ids [...] (i32 or i64) -> [..., D]. Ids out of range give zeros
 * and are reported by pv_plan_run as PV_ERR_INVALID. Backward: scatter-add. */
pv_tensor *pv_embedding(pv_graph *g, pv_tensor *weight, pv_tensor *ids);
/* out [V, D] with out[ids[i]] += dy[i] (the backward of pv_embedding); dy [..., D], ids [...]. */
pv_tensor *pv_scatter_add(pv_graph *g, pv_tensor *dy, pv_tensor *ids, int64_t V);

/* Shape ops */
pv_tensor *pv_reshape(pv_graph *g, pv_tensor *x, int ndim, const int64_t *shape); /* one -1 allowed; no copy */
pv_tensor *pv_permute(pv_graph *g, pv_tensor *x, int ndim, const int *perm);
pv_tensor *pv_transpose(pv_graph *g, pv_tensor *x, int axis0, int axis1);
pv_tensor *pv_slice(pv_graph *g, pv_tensor *x, int axis, int64_t start, int64_t end); /* [start, end) */
pv_tensor *pv_concat(pv_graph *g, int n, pv_tensor *const *xs, int axis);
pv_tensor *pv_copy(pv_graph *g, pv_tensor *x);
pv_tensor *pv_cast(pv_graph *g, pv_tensor *x, pv_dtype dtype);

/* Patch embedding: x [B, C, H, W] -> [B, (H/P)*(W/P), C*P*P] (patches row-major, features in
 * (c, ky, kx) order, i.e. a Conv2d weight [D, C, P, P] reshaped to [D, C*P*P]). */
pv_tensor *pv_patchify(pv_graph *g, pv_tensor *x, int patch);
/* The inverse of pv_patchify: [B, (H/P)*(W/P), C*P*P] -> [B, C, H, W]. */
pv_tensor *pv_unpatchify(pv_graph *g, pv_tensor *x, int patch, int64_t H, int64_t W);
/* Conv2d with stride = kernel = P: x [B,C,H,W], w [D,C,P,P], b [D] or NULL -> [B, N, D]. */
pv_tensor *pv_patch_embed(pv_graph *g, pv_tensor *x, pv_tensor *w, pv_tensor *b, int patch);

/* Masked token log-probs: logits [N, V], labels [N] (i32/i64) -> [N] with
 * log_softmax(logits[n])[labels[n]], and 0 where labels[n] == ignore_index. */
pv_tensor *pv_token_logprob(pv_graph *g, pv_tensor *logits, pv_tensor *labels, int64_t ignore_index);
/* 1 where labels != ignore_index, else 0 (f32, same shape as labels). */
pv_tensor *pv_label_mask(pv_graph *g, pv_tensor *labels, int64_t ignore_index);

/* Updates (side effects on variables; they run after every other node of the plan).
 * AdamW (decoupled weight decay, as torch.optim.AdamW): param, m, v are var-nodes of one shape,
 * grad the same shape; hyper is a [6] f32 tensor (lr, beta1, beta2, eps, 1 - beta1^t, 1 - beta2^t),
 * usually a var or an input so a recorded plan stays valid, or [7] with a gradient scale last (the update uses
 * grad * hyper[6], e.g. global-norm clipping's coefficient computed in the graph). lr_scale and weight_decay are
 * per-group. Returns a [1] token node that depends on the update. */
pv_tensor *pv_adamw(pv_graph *g, pv_tensor *param, pv_tensor *grad, pv_tensor *m, pv_tensor *v, pv_tensor *hyper,
                    double lr_scale, double weight_decay);
/* dst (a var-node) = value, or dst += value when accumulate. value may be scaled by a [1] tensor
 * factor (NULL: 1). Returns a [1] token node. */
pv_tensor *pv_assign(pv_graph *g, pv_tensor *dst, pv_tensor *value, pv_tensor *factor, int accumulate);

/* ---------------------------------------------------------------- plans */
typedef struct pv_plan_options {
  const char *backend; /* "cpu" (default if NULL), "vulkan" or "ref" */
  int threads;         /* CPU threads; 0: the context's setting */
  int device;          /* Vulkan device index; -1: PIVOT_DEVICE or the best device */
  int no_inplace;      /* 1 disables in-place buffer reuse (debugging) */
} pv_plan_options;

/* Compiles g (everything reachable from outputs, the loss gradient and updates) into a plan.
 * opts may be NULL (defaults). The graph must stay alive while the plan exists. */
pv_status pv_plan_compile(pv_graph *g, const pv_plan_options *opts, pv_plan **out);
void pv_plan_free(pv_plan *p);
/* Copies count elements (src_dtype, converted) into input t before a run. */
pv_status pv_plan_write(pv_plan *p, pv_tensor *t, pv_dtype src_dtype, const void *data, int64_t count);
pv_status pv_plan_run(pv_plan *p);
/* Reads an output (or input) tensor after a run, converted to dst_dtype. */
pv_status pv_plan_read(pv_plan *p, pv_tensor *t, pv_dtype dst_dtype, void *out, int64_t count);
/* Memory accounting: peak bytes of the plan's activation arena, and the sum of the sizes of all
 * its non-variable tensors (what a planner without reuse would need). */
int64_t pv_plan_peak_bytes(const pv_plan *p);
int64_t pv_plan_naive_bytes(const pv_plan *p);
int pv_plan_node_count(const pv_plan *p);      /* nodes that execute */
const char *pv_plan_backend(const pv_plan *p); /* "cpu", "vulkan" or "ref" */
/* Per-node profiling: when enabled, pv_plan_run times each node. pv_plan_profile writes a table
 * (op, calls, total ms) into buf. */
pv_status pv_plan_set_profiling(pv_plan *p, int on);
pv_status pv_plan_profile(pv_plan *p, char *buf, size_t cap);

/* ---------------------------------------------------------------- safetensors */
/* Opens and fully validates a .safetensors file (mmapped). On error *out is NULL and the message
 * names the file and the problem. Tensor names/shapes stay valid until pv_st_close. */
pv_status pv_st_open(pv_context *ctx, const char *path, pv_safetensors **out);
void pv_st_close(pv_safetensors *st);
int pv_st_count(const pv_safetensors *st);
const char *pv_st_name(const pv_safetensors *st, int i);
int pv_st_find(const pv_safetensors *st, const char *name); /* index or -1 */
pv_dtype pv_st_dtype(const pv_safetensors *st, int i);
int pv_st_ndim(const pv_safetensors *st, int i);
int64_t pv_st_dim(const pv_safetensors *st, int i, int d);
int64_t pv_st_numel(const pv_safetensors *st, int i);
/* The raw __metadata__ JSON object text, or NULL if absent. */
const char *pv_st_metadata(const pv_safetensors *st);
/* Reads tensor i converted to dst_dtype (f32/f16/bf16/f64 among floats, i32/i64 among ints). */
pv_status pv_st_read(pv_safetensors *st, int i, pv_dtype dst_dtype, void *out, int64_t count);
/* Loads tensor i into variable v (shapes must match exactly; the message names tensor and shapes). */
pv_status pv_st_load_var(pv_safetensors *st, int i, pv_var *v);

/* Writes a safetensors file atomically (temporary file in the same folder, fsync, rename).
 * names[i], dtypes[i] (the on-disk dtype; data is converted from src_dtypes[i]), shapes. metadata
 * is a JSON object text of string values or NULL. */
pv_status pv_st_save(pv_context *ctx, const char *path, int n, const char *const *names, const pv_dtype *dtypes,
                     const int *ndims, const int64_t *const *shapes, const pv_dtype *src_dtypes,
                     const void *const *datas, const char *metadata);
/* Saves variables (by name) as they are stored; dtype PV_F32 etc. for the file. */
pv_status pv_st_save_vars(pv_context *ctx, const char *path, int n, pv_var *const *vars, const char *const *names,
                          pv_dtype file_dtype, const char *metadata);

/* ---------------------------------------------------------------- tokenizer (tokenizer.json) */
pv_status pv_tok_load(pv_context *ctx, const char *path, pv_tokenizer **out);
void pv_tok_free(pv_tokenizer *tok);
int64_t pv_tok_vocab_size(const pv_tokenizer *tok);
/* Encodes UTF-8 text of len bytes (no special tokens are added). Writes up to cap ids, returns the
 * number of ids the full encoding has (call again with a larger buffer if it exceeds cap), or -1
 * on error (message in pv_last_error). */
int64_t pv_tok_encode(pv_tokenizer *tok, const char *text, size_t len, int32_t *ids, int64_t cap);
/* Decodes ids into UTF-8 (invalid byte sequences become U+FFFD). Writes up to cap bytes plus a NUL;
 * returns the full length in bytes, or -1 on error. */
int64_t pv_tok_decode(pv_tokenizer *tok, const int32_t *ids, int64_t n, char *out, size_t cap);
int32_t pv_tok_token_to_id(const pv_tokenizer *tok, const char *token); /* -1 if absent */
const char *pv_tok_id_to_token(const pv_tokenizer *tok, int32_t id);    /* NULL if absent */

/* ---------------------------------------------------------------- images (stb_image / stb_image_write) */
/* Reads the size of an image file without decoding it all. */
pv_status pv_image_info(pv_context *ctx, const char *path, int *width, int *height, int *channels);
/* Decodes a PNG or JPEG, converts it to RGB (grey is replicated, alpha dropped), resizes it to
 * size x size with bicubic interpolation (antialiased when downscaling, like PIL's BICUBIC) and writes
 * (x/255 - mean[c]) / std[c] into out [3, size, size] (CHW, f32). mean/std may be NULL (0.5, 0.5).
 * Errors name the file: missing, truncated or undecodable data. */
pv_status pv_image_load(pv_context *ctx, const char *path, int size, const float *mean, const float *std, float *out);
/* Same from an in-memory 8-bit RGB image [h, w, 3] (HWC). */
pv_status pv_image_from_rgb8(pv_context *ctx, const uint8_t *rgb, int width, int height, int size, const float *mean,
                             const float *std, float *out);
/* Decodes a PNG label mask, which must have one channel (grey or palette indices), and resizes it with
 * nearest neighbour to size x size into out [size*size] (i32). A colour mask is a wrong image mode. */
pv_status pv_mask_load(pv_context *ctx, const char *path, int size, int32_t *out);
/* Writes an 8-bit PNG (channels 1, 3 or 4; rows top to bottom) atomically. */
pv_status pv_png_write(pv_context *ctx, const char *path, int width, int height, int channels, const uint8_t *data);

/* ---------------------------------------------------------------- the built-in world (a procedural dataset) */
typedef struct pv_world pv_world;
typedef struct pv_world_config {
  int image_size; /* pixels per side (e.g. 32 or 64) */
  int grid;       /* objects sit on a grid x grid lattice of cells (e.g. 3) */
  int min_objects, max_objects;
  int allow_occlusion; /* 1: objects may overlap, later ones drawn on top */
  float noise;         /* background/pixel noise amplitude, 0..1 */
  int textured;        /* 1: textured background */
} pv_world_config;
typedef struct pv_world_object {
  int shape; /* 0..pv_world_count(w, "shape")-1 */
  int color;
  int size;           /* 0 small, 1 medium, 2 large */
  int cell_x, cell_y; /* grid cell */
  int cx, cy;         /* centre in pixels */
  int x0, y0, x1, y1; /* bounding box in pixels, inclusive-exclusive */
  int visible_pixels; /* after occlusion */
} pv_world_object;
pv_status pv_world_new(pv_context *ctx, const pv_world_config *cfg, pv_world **out);
void pv_world_free(pv_world *w);
/* Number of values of an attribute: "shape" (>= 6), "color" (>= 8), "size" (3). */
int pv_world_count(const pv_world *w, const char *attribute);
/* The name of value i of an attribute, e.g. ("color", 0) -> "red". Static strings. */
const char *pv_world_name(const pv_world *w, const char *attribute, int i);
/* Generates scene `index` of the stream `seed` (deterministic). Any output pointer may be NULL.
 *  rgb:      [size, size, 3] u8 (HWC)
 *  image:    [3, size, size] f32, normalised with mean 0.5, std 0.5
 *  instance: [size*size] i32, 0 background, k+1 for objs[k] (topmost after occlusion)
 *  objs:     up to max_objs objects, *nobj receives the count. */
pv_status pv_world_scene(pv_world *w, uint64_t seed, int64_t index, uint8_t *rgb, float *image, int32_t *instance,
                         pv_world_object *objs, int max_objs, int *nobj);

#ifdef __cplusplus
}
#endif
#endif
