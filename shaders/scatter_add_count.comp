#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// scatter_add, pass 1 of 4 (ops/embedding.c): counts the ids of each row (integer atomics: the counts do not depend
// on the order); an id outside [0, V) is skipped and reported (the run fails like the CPU kernel).
// Scratch (binding 0, uints): cnt[V], cur[V], off[V + 1], seg[nid], sorted[nid]; cnt and cur are zero on entry.
// push: 0 ids count, 1 V, 2 flags (1: i64 ids)
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) buffer S { uint s[]; };
layout(std430, binding = 1) readonly buffer Ids { uint ids[]; };
#include "embedding_ids.glsl"
#include "status.glsl"
void main() {
  uint nid = pc.u[0], V = pc.u[1], n = pv_gid();
  if (n >= nid) return;
  uint id = pv_id(n, (pc.u[2] & 1u) != 0u, V);
  if (id == 0xffffffffu) pv_report_invalid();
  else atomicAdd(s[id], 1u);
}
