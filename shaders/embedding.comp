#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Embedding lookup (ops/embedding.c): y[n, d] = w[ids[n], d]; an id outside [0, V) gives a zero row and reports
// invalid data (the run fails like the CPU kernel). One invocation per 4 columns when D % 4 == 0 (vec4), else per
// element. push: 0 ids count, 1 D, 2 V, 3 flags (1: i64 ids, 2: vec4)
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 1) readonly buffer W4 { vec4 w4[]; };
layout(std430, binding = 2) readonly buffer Ids { uint ids[]; };
#include "embedding_ids.glsl"
#include "status.glsl"
void main() {
  uint nid = pc.u[0], D = pc.u[1], V = pc.u[2], fl = pc.u[3], i = pv_gid();
  bool is64 = (fl & 1u) != 0u, vec = (fl & 2u) != 0u;
  uint Dq = vec ? D / 4u : D; // items per row
  if (i >= nid * Dq) return;
  uint n = i / Dq, c = i % Dq, id = pv_id(n, is64, V);
  if (id == 0xffffffffu && c == 0u) pv_report_invalid();
  if (vec) y4[i] = id == 0xffffffffu ? vec4(0.0) : w4[id * Dq + c];
  else y[i] = id == 0xffffffffu ? 0.0 : w[id * D + c];
}
