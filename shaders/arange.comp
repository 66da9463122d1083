#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// y[i] = i as f32, i32 or i64. push: 0 n, 1 dtype
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { uint y[]; };
void main() {
  uint i = pv_gid();
  if (i >= pc.u[0]) return;
  uint dt = pc.u[1];
  if (dt == PV_F32) y[i] = floatBitsToUint(float(i));
  else if (dt == PV_I32) y[i] = i;
  else {
    y[2u * i] = i;
    y[2u * i + 1u] = 0u;
  }
}
