// reduce_all_body.glsl: sum (or sum of squares) of all n elements in two deterministic passes.
// pass 0: workgroup g sums x[g*chunk, min(n, (g+1)*chunk)) into part[g]; pass 1: one workgroup sums the G partials.
// push: 0 n, 1 chunk, 2 squares, 3 pass, 4 G
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) buffer P { float part[]; };
#include "wgreduce.glsl"
void main() {
  uint n = pc.u[0], chunk = pc.u[1], G = pc.u[4], l = gl_LocalInvocationID.x;
  bool sq = pc.u[2] != 0u;
  precise float s = 0.0, c = 0.0;
  if (pc.u[3] == 0u) {
    uint g = pv_group();
    if (g >= G) return;
    uint a = g * chunk, b = min(n, a + chunk);
    for (uint i = a + l; i < b; i += PV_WG) {
      float xv = x[i];
      precise float v = (sq ? xv * xv : xv) - c;
      precise float t = s + v;
      c = (t - s) - v;
      s = t;
    }
    float r = pv_wg_reduce(false, s);
    if (l == 0u) part[g] = r;
  } else {
    for (uint k = l; k < G; k += PV_WG) {
      precise float v = part[k] - c;
      precise float t = s + v;
      c = (t - s) - v;
      s = t;
    }
    float r = pv_wg_reduce(false, s);
    if (l == 0u) y[0] = r;
  }
}
