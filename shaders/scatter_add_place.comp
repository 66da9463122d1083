#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// scatter_add, pass 3 of 4: seg[off[id] + k] = n for the ids of each row (in an arbitrary order inside the row's
// segment; the next pass orders them). Scratch layout in scatter_add_count.comp. push: 0 ids count, 1 V, 2 flags
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) buffer S { uint s[]; };
layout(std430, binding = 1) readonly buffer Ids { uint ids[]; };
#include "embedding_ids.glsl"
void main() {
  uint nid = pc.u[0], V = pc.u[1], n = pv_gid();
  if (n >= nid) return;
  uint id = pv_id(n, (pc.u[2] & 1u) != 0u, V);
  if (id == 0xffffffffu) return;
  uint k = atomicAdd(s[V + id], 1u);
  s[3u * V + 1u + s[2u * V + id] + k] = n;
}
