#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// y = a (+ - * /) b with broadcasting over up to 8 (coalesced) dims.
// push: 0 n, 1 kind (0 add, 1 sub, 2 mul, 3 div), 2 ndim, 3..10 shape, 11..18 a strides, 19..26 b strides
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
void main() {
  uint i = pv_gid();
  if (i >= pc.u[0]) return;
  uint ia = 0u, ib = 0u, r = i;
  for (int d = int(pc.u[2]) - 1; d >= 0; d--) {
    uint sh = pc.u[3 + d], c = r % sh;
    r /= sh;
    ia += c * pc.u[11 + d];
    ib += c * pc.u[19 + d];
  }
  float x = a[ia], z = b[ib], o;
  uint k = pc.u[1];
  if (k == 0u) o = x + z;
  else if (k == 1u) o = x - z;
  else if (k == 2u) o = x * z;
  else o = x / z;
  y[i] = o;
}
