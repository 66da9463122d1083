#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// scatter_add (ops/embedding.c), the sums: y[v, d] = sum of dy[n, d] over the ids n of row v in increasing n, from
// the sorted lists of the passes scatter_add_count/scan/place/rank (scratch, binding 2). One invocation per output
// element adds in the same order as the CPU kernel: the results are bitwise equal to it.
// push: 0 ids count, 1 V, 2 D
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, binding = 2) readonly buffer S { uint s[]; };
void main() {
  uint nid = pc.u[0], V = pc.u[1], D = pc.u[2], i = pv_gid();
  if (i >= V * D) return;
  uint v = i / D, d = i % D, sorted = 3u * V + 1u + nid;
  precise float acc = 0.0; // no folding of 0 + x: -0 sums as on the CPU
  for (uint j = s[2u * V + v]; j < s[2u * V + v + 1u]; j++) acc += dy[s[sorted + j] * D + d];
  y[i] = acc;
}
