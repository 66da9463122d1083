#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "unary_fn.glsl"
// y = f(x). push: 0 n, 1 kind
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
void main() {
  uint i = pv_gid();
  if (i < pc.u[0]) y[i] = pv_unary(pc.u[1], x[i]);
}
