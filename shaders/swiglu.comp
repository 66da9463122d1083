#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "unary_fn.glsl"
// y = silu(a) * b (ops/swiglu.c; silu as unary kind 8). push: 0 n
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
void main() {
  uint i = pv_gid();
  if (i < pc.u[0]) y[i] = pv_unary(8u, a[i]) * b[i];
}
