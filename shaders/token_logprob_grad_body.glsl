// token_logprob_grad_body.glsl: dlogits[r, j] = dy[r]·(1[j == l] - softmax(x[r])[j]), one workgroup per row
// looping over the vocabulary; 0 for ignored rows and rows with an invalid label (which also report invalid data).
// x is read before the same invocation writes the output (in place over the logits).
// push: 0 rows, 1 V, 2 labels are i64, 3/4 ignore_index (lo, hi). bindings: 0 out, 1 x, 2 labels, 3 dy.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
#include "status.glsl"
#include "wgreduce.glsl"
#include "row_reduce.glsl"
#include "token_logprob_labels.glsl"

void main() {
  uint row = pv_group(), V = pc.u[1], l = gl_LocalInvocationID.x;
  if (row >= pc.u[0]) return; // uniform over the workgroup
  uvec2 lb = pv_label(row);
  uint base = row * V;
  if (pv_label_ignored(lb) || !pv_label_valid(lb)) {
    if (l == 0u && !pv_label_ignored(lb)) pv_report_invalid();
    for (uint j = l; j < V; j += PV_WG) o[base + j] = 0.0;
    return;
  }
  float m = PV_NEG_INF, s = 0.0, c = 0.0;
  for (uint j = l; j < V; j += PV_WG) pv_lse_add(m, s, c, x[base + j]);
  vec2 ms = pv_lse_row(m, s);
  float d = dy[row], sc = -d / ms.y;
  for (uint j = l; j < V; j += PV_WG) {
    float e = exp(x[base + j] - ms.x);
    o[base + j] = j == lb.x ? d * (1.0 - e / ms.y) : sc * e;
  }
}
