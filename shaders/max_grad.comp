#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// x viewed as [outer, n, inner]: y[o, k, i] = dy[o, i] where k is the first argmax of x[o, :, i], else 0.
// push: 0 M (outer * inner), 1 n, 2 inner
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
void main() {
  uint j = pv_gid(), n = pc.u[1], inner = pc.u[2];
  if (j >= pc.u[0]) return;
  uint o = j / inner, i = j - o * inner, base = o * n * inner + i, best = 0u;
  float m = x[base];
  for (uint k = 1u; k < n; k++) {
    float v = x[base + k * inner];
    if (v > m) { m = v; best = k; }
  }
  float g = dy[j];
  for (uint k = 0u; k < n; k++) y[base + k * inner] = k == best ? g : 0.0;
}
