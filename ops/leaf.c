/* Leaves: input (written by pv_plan_write), var (a pv_var's storage), fill (constant), arange.
 * No gradients flow through fill/arange; a var's gradient is collected by autodiff. */
#include "common.h"
#include "../runtime/vulkan/vk_ops.h"

typedef struct {
  int dtype, ndim;
  int64_t shape[PV_MAX_DIMS];
} input_p;
typedef struct {
  double value;
  int ndim;
  int64_t shape[PV_MAX_DIMS];
} fill_p;
typedef struct {
  int64_t n;
  int dtype;
} arange_p;

static pv_status input_shape(pv_tensor *t) {
  const input_p *p = PV_CPARAMS(input_p, t);
  pv__set_shape(t, (pv_dtype)p->dtype, p->ndim, p->shape);
  return PV_OK;
}
const pv_op_def pv_op_input = {.name = "input", .shape = input_shape};

static pv_status var_shape(pv_tensor *t) {
  pv_var *v = *(pv_var *const *)(const void *)t->params;
  pv__set_shape(t, v->dtype, v->ndim, v->shape);
  return PV_OK;
}
const pv_op_def pv_op_var = {.name = "var", .shape = var_shape};

static pv_status fill_shape(pv_tensor *t) {
  const fill_p *p = PV_CPARAMS(fill_p, t);
  for (int i = 0; i < p->ndim; i++)
    if (p->shape[i] < 0) return PV_FAIL(t, PV_ERR_SHAPE, "fill: negative dimension %lld", (long long)p->shape[i]);
  pv__set_shape(t, PV_F32, p->ndim, p->shape);
  return PV_OK;
}
static void fill_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  float v = (float)PV_CPARAMS(fill_p, t)->value;
  float *y = a->dst;
  for (int64_t i = i0; i < i1; i++) y[i] = v;
}
static void fill_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)s, (void)w, (void)err;
  for (int64_t i = 0; i < t->numel; i++) y[i] = PV_CPARAMS(fill_p, t)->value;
}
static int fill_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int bind[1] = {-1};
  pv_vk_begin(d, "fill", 1, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_pushf(d, (float)PV_CPARAMS(fill_p, t)->value);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  return 1;
}
const pv_op_def pv_op_fill = {.name = "fill", .flags = PV_OPF_LEAF, .shape = fill_shape, .cpu = fill_cpu,
                              .ref = fill_ref, .vk = fill_vk};

static pv_status arange_shape(pv_tensor *t) {
  const arange_p *p = PV_CPARAMS(arange_p, t);
  if (p->n < 0) return PV_FAIL(t, PV_ERR_SHAPE, "arange: negative length %lld", (long long)p->n);
  if (p->dtype != PV_F32 && p->dtype != PV_I32 && p->dtype != PV_I64)
    return PV_FAIL(t, PV_ERR_DTYPE, "arange: dtype %s not supported", pv_dtype_name((pv_dtype)p->dtype));
  pv__set_shape(t, (pv_dtype)p->dtype, 1, &p->n);
  return PV_OK;
}
static void arange_cpu(const pv_tensor *t, const pv_cpu_args *a) {
  int64_t i0, i1;
  pv_split(t->numel, a->ith, a->nth, &i0, &i1);
  for (int64_t i = i0; i < i1; i++) {
    if (t->dtype == PV_F32) ((float *)a->dst)[i] = (float)i;
    else if (t->dtype == PV_I32) ((int32_t *)a->dst)[i] = (int32_t)i;
    else ((int64_t *)a->dst)[i] = i;
  }
}
static void arange_ref(const pv_tensor *t, double *y, const double *const *s, double *const *w, int *err) {
  (void)s, (void)w, (void)err;
  for (int64_t i = 0; i < t->numel; i++) y[i] = (double)i;
}
static int arange_vk(const pv_tensor *t, pv_vk_dispatch *d, int max) {
  (void)max;
  int bind[1] = {-1};
  pv_vk_begin(d, "arange", 1, bind);
  pv_vk_push(d, (uint32_t)t->numel);
  pv_vk_push(d, (uint32_t)t->dtype);
  pv_vk_grid(d, t->numel, PV_VK_WG);
  return 1;
}
const pv_op_def pv_op_arange = {.name = "arange", .flags = PV_OPF_LEAF, .shape = arange_shape, .cpu = arange_cpu,
                                .ref = arange_ref, .vk = arange_vk};

