#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEMM split K (ops/matmul.c): y[i, e] = sum over s = 0..S-1 in order of part[(i * S + s) * MN + e] (the partial
// products of matmul_body.glsl's K ranges, in the scratch buffer): deterministic.
// push: 0 n (batches * MN), 1 MN, 2 S
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer P { float part[]; };
void main() {
  uint i = pv_gid(), MN = pc.u[1], S = pc.u[2];
  if (i >= pc.u[0]) return;
  uint b = i / MN, e = i % MN, o = b * S * MN + e;
  float acc = part[o];
  for (uint s = 1u; s < S; s++) acc += part[o + s * MN];
  y[i] = acc;
}
