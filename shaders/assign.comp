#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// assign in place on the var source 0 (ops/optim.c): dst = value * factor, or dst = dst + value * factor
// (accumulate), factor 1 when absent; f32 in the CPU kernel's order, no FMA contraction.
// bindings: 0 token, 1 dst, 2 value, 3 factor [1]. push: 0 n, 1 flags (1 accumulate, 2 factor)
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Tok { float tok[]; };
layout(std430, binding = 1) buffer Dst { float dst[]; };
layout(std430, binding = 2) readonly buffer Val { float val[]; };
layout(std430, binding = 3) readonly buffer Fac { float fac[]; };
void main() {
  uint i = pv_gid(), fl = pc.u[1];
  if (i == 0u) tok[0] = 0.0;
  if (i >= pc.u[0]) return;
  precise float x = val[i];
  if ((fl & 2u) != 0u) x = x * fac[0];
  if ((fl & 1u) != 0u) x = dst[i] + x;
  dst[i] = x;
}
