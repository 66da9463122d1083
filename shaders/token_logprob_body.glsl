// token_logprob_body.glsl: y[r] = x[r, l] - logsumexp(x[r, :]) for l = labels[r], one workgroup per row; 0 where l
// is ignore_index; a label outside [0, V) reports invalid data (status word) and gives 0.
// push: 0 rows, 1 V, 2 labels are i64, 3/4 ignore_index (lo, hi). bindings: 0 y, 1 x (logits), 2 labels.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
#include "status.glsl"
#include "wgreduce.glsl"
#include "row_reduce.glsl"
#include "token_logprob_labels.glsl"

void main() {
  uint row = pv_group(), V = pc.u[1], l = gl_LocalInvocationID.x;
  if (row >= pc.u[0]) return; // uniform over the workgroup
  uvec2 lb = pv_label(row);
  if (pv_label_ignored(lb) || !pv_label_valid(lb)) {
    if (l == 0u) {
      if (!pv_label_ignored(lb)) pv_report_invalid();
      y[row] = 0.0;
    }
    return;
  }
  uint base = row * V;
  float m = PV_NEG_INF, s = 0.0, c = 0.0;
  for (uint j = l; j < V; j += PV_WG) pv_lse_add(m, s, c, x[base + j]);
  vec2 ms = pv_lse_row(m, s);
  if (l == 0u) y[row] = (x[base + lb.x] - ms.x) - log(ms.y);
}
