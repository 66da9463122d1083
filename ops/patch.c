/* STUB: to be implemented (shape rule, backward, CPU kernel, reference kernel). */
#include "common.h"

static pv_status stub_shape(pv_tensor *t) { return PV_FAIL(t, PV_ERR_UNSUPPORTED, "%s: not implemented yet", pv__opdef(t->op)->name); }
const pv_op_def pv_op_patchify = {.name = "patchify", .min_src = 0, .max_src = 8, .shape = stub_shape};
const pv_op_def pv_op_unpatchify = {.name = "unpatchify", .min_src = 0, .max_src = 8, .shape = stub_shape};
