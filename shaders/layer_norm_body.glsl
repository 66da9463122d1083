// layer_norm_body.glsl: layer norm (PV_RMS 0) or RMS norm (PV_RMS 1) over rows of D, one workgroup per row.
//  layer: mu = mean(x), var = mean((x - mu)²); rms: mu = 0, var = mean(x²). r = 1/sqrt(var + eps),
//  y = (x - mu)·r·w + b (w, b optional). The row is read before it is written by the same invocation (in place).
// push: 0 rows, 1 D, 2 eps (f32), 3 has_w, 4 has_b. bindings: 0 y, 1 x, 2 w, 3 b (x again where absent).
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer W { float w[]; };
layout(std430, binding = 3) readonly buffer B { float b[]; };
#include "wgreduce.glsl"
#include "row_reduce.glsl"

void main() {
  uint row = pv_group(), D = pc.u[1], l = gl_LocalInvocationID.x;
  if (row >= pc.u[0]) return; // uniform over the workgroup
  uint base = row * D;
  float mu = 0.0, s = 0.0, c = 0.0;
#if !PV_RMS
  for (uint i = l; i < D; i += PV_WG) pv_kahan(s, c, x[base + i]);
  mu = pv_row_reduce(false, s) / float(D);
  s = 0.0, c = 0.0;
#endif
  for (uint i = l; i < D; i += PV_WG) {
    float d = x[base + i] - mu;
    pv_kahan(s, c, d * d);
  }
  float r = 1.0 / sqrt(pv_row_reduce(false, s) / float(D) + pv_pf(2));
  bool hw = pc.u[3] != 0u, hb = pc.u[4] != 0u;
  for (uint i = l; i < D; i += PV_WG) {
    float v = (x[base + i] - mu) * r;
    if (hw) v *= w[i];
    if (hb) v += b[i];
    y[base + i] = v;
  }
}
