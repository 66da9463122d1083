#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// scatter_add, pass 4 of 4: sorted[off[id] + r] = n where r counts the indices of the row's segment below n, so each
// row lists its ids' positions in increasing order (a stable counting sort; cost: the sum of squared row counts).
// Scratch layout in scatter_add_count.comp. push: 0 ids count, 1 V, 2 flags
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) buffer S { uint s[]; };
layout(std430, binding = 1) readonly buffer Ids { uint ids[]; };
#include "embedding_ids.glsl"
void main() {
  uint nid = pc.u[0], V = pc.u[1], n = pv_gid();
  if (n >= nid) return;
  uint id = pv_id(n, (pc.u[2] & 1u) != 0u, V);
  if (id == 0xffffffffu) return;
  uint seg = 3u * V + 1u, b = s[2u * V + id], e = s[2u * V + id + 1u], r = 0u;
  for (uint j = b; j < e; j++) r += s[seg + j] < n ? 1u : 0u;
  s[seg + nid + b + r] = n;
}
