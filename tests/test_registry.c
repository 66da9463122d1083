/* Tests of the op registry (ops/registry.c + ops/ops.def): every row is complete and consistent. Each op's math
 * is tested in the tests/test_ops_*.c files; this test makes sure no row is left half-defined (a stub). */
#include "internal.h"
#include "testutil.h"

int main(void) {
  int computed = 0, differentiable = 0;
  for (int i = 0; i < PV_OP_COUNT; i++) {
    const pv_op_def *d = pv_op_table[i];
    CHECK(d && d->name && d->name[0], "op %d has no name", i);
    if (!d) continue;
    CHECK(pv__op_by_name(d->name) == i, "op '%s': lookup by name gives %d, not %d", d->name, pv__op_by_name(d->name), i);
    CHECK(d->shape != NULL, "op '%s' has no shape rule", d->name);
    CHECK(d->min_src >= 0 && d->min_src <= d->max_src && d->max_src <= PV_MAX_SRC, "op '%s': bad source counts %d..%d",
          d->name, d->min_src, d->max_src);
    int leaf_io = i == PV_OP_INPUT || i == PV_OP_VAR;
    int view = (d->flags & PV_OPF_VIEW) != 0;
    if (leaf_io || view) {
      CHECK(d->cpu == NULL, "op '%s' (input/var/view) must not have a CPU kernel", d->name);
      continue;
    }
    computed++;
    /* every computing op runs on all three backends */
    CHECK(d->cpu != NULL, "op '%s' has no CPU kernel", d->name);
    CHECK(d->ref != NULL, "op '%s' has no float64 reference kernel", d->name);
    CHECK(d->vk != NULL, "op '%s' has no Vulkan dispatch", d->name);
    if (d->backward) differentiable++;
    if (d->flags & PV_OPF_UPDATE) CHECK(d->backward == NULL, "update op '%s' must not be differentiable", d->name);
    if (d->flags & PV_OPF_LEAF) CHECK(d->max_src == 0, "leaf op '%s' takes sources", d->name);
  }
  CHECK(pv__op_by_name("no_such_op") == -1, "unknown op names must give -1");
  printf("registry: %d ops, %d computing, %d differentiable\n", PV_OP_COUNT, computed, differentiable);
  return pv_t_finish();
}
