#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "unary_fn.glsl"
// ops/swiglu.c backward. which 0: y = (dy * b) * silu'(a); 1: y = dy * silu(a); 2: both, y[i] and y[n + i].
// push: 0 n (elements of a), 1 which
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 3) readonly buffer DY { float dy[]; };
void main() {
  uint i = pv_gid();
  if (i >= pc.u[0]) return;
  if (pc.u[1] == 0u) y[i] = (dy[i] * b[i]) * pv_unary_grad(8u, a[i]);
  else if (pc.u[1] == 1u) y[i] = dy[i] * pv_unary(8u, a[i]);
  else {
    y[i] = (dy[i] * b[i]) * pv_unary_grad(8u, a[i]);
    y[pc.u[0] + i] = dy[i] * pv_unary(8u, a[i]);
  }
}
