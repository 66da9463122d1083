/* Op test harness: forward of the CPU kernels against the float64 reference kernels, gradients of the
 * reference backend against central finite differences in float64, CPU gradients against reference
 * gradients, and (when available) Vulkan against the CPU. */
#ifndef PV_OPCHECK_H
#define PV_OPCHECK_H
#include "pivot.h"
enum { OC_NORMAL = 0, OC_UNIFORM, OC_IDS, OC_PERM };
typedef struct oc_input {
  int ndim;
  int64_t shape[8];
  int kind;       /* OC_NORMAL (std hi, default 1), OC_UNIFORM [lo, hi), OC_IDS ints in [lo, hi) */
  double lo, hi;
  int trainable;  /* gradient is checked */
  pv_dtype dtype; /* PV_F32 (default 0) or PV_I32 / PV_I64 for ids */
} oc_input;
typedef pv_tensor *(*oc_build)(pv_graph *g, pv_tensor **in, void *ud);
typedef struct oc_opts {
  double fwd_tol;   /* rel L2 of CPU vs ref forward (default 2e-5) */
  double fd_tol;    /* max |fd - analytic| / (max|analytic| + 1e-8) in float64 (default 1e-6) */
  double grad_tol;  /* rel L2 of CPU vs ref gradients (default 1e-4) */
  double fd_h;      /* finite difference step (default 1e-6) */
  int fd_max;       /* max elements checked per input (default 24) */
  int no_vulkan;
} oc_opts;
/* Runs all checks; records CHECKs; returns 1 if all passed. */
int oc_check(const char *name, int nin, const oc_input *ins, oc_build build, void *ud, const oc_opts *opts);
#endif
