/* The op table built from ops/ops.def. */
#include "../runtime/internal.h"

#define PV_OP(id, def) extern const pv_op_def def;
#include "ops.def"
#undef PV_OP

const pv_op_def *const pv_op_table[PV_OP_COUNT] = {
#define PV_OP(id, def) &def,
#include "ops.def"
#undef PV_OP
};

int pv__op_by_name(const char *name) {
  for (int i = 0; i < PV_OP_COUNT; i++)
    if (strcmp(pv_op_table[i]->name, name) == 0) return i;
  return -1;
}
