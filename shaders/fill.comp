#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// y[i] = value (a 32-bit pattern) for i < n words. push: 0 n, 1 value
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { uint y[]; };
void main() {
  uint i = pv_gid();
  if (i < pc.u[0]) y[i] = pc.u[1];
}
