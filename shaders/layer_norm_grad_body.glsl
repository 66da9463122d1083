// layer_norm_grad_body.glsl: dx of layer norm (PV_RMS 0) or RMS norm (PV_RMS 1), one workgroup per row:
//  g = dy·w, xhat = (x - mu)·r, dx = r·(g - mean(g) - xhat·mean(g·xhat)) (rms: without the mean(g) term).
// Reads x and dy of an element before the same invocation writes dx there (in place over x).
// push: 0 rows, 1 D, 2 eps (f32), 3 has_w. bindings: 0 dx, 1 x, 2 w (x again where absent), 3 dy.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer DX { float dx[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer W { float w[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
#include "wgreduce.glsl"
#include "row_reduce.glsl"

void main() {
  uint row = pv_group(), D = pc.u[1], l = gl_LocalInvocationID.x;
  if (row >= pc.u[0]) return; // uniform over the workgroup
  uint base = row * D;
  bool hw = pc.u[3] != 0u;
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
  float sg = 0.0, cg = 0.0, sx = 0.0, cx = 0.0;
  for (uint i = l; i < D; i += PV_WG) {
    float g = hw ? dy[base + i] * w[i] : dy[base + i];
    pv_kahan(sg, cg, g);
    pv_kahan(sx, cx, g * ((x[base + i] - mu) * r));
  }
#if PV_RMS
  float mg = 0.0;
#else
  float mg = pv_row_reduce(false, sg) / float(D);
#endif
  float mgx = pv_row_reduce(false, sx) / float(D);
  for (uint i = l; i < D; i += PV_WG) {
    float g = hw ? dy[base + i] * w[i] : dy[base + i];
    float xh = (x[base + i] - mu) * r;
    dx[base + i] = r * (g - mg - xh * mgx);
  }
}
