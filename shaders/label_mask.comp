#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// y[i] = labels[i] == ignore_index ? 0 : 1 (labels i32, or i64 as (lo, hi) words; i32 labels sign-extended).
// push: 0 n, 1 labels are i64, 2/3 ignore_index (lo, hi). bindings: 0 y, 1 labels.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer L { uint lab[]; };
void main() {
  uint i = pv_gid();
  if (i >= pc.u[0]) return;
  uint lo, hi;
  if (pc.u[1] != 0u) {
    lo = lab[2u * i];
    hi = lab[2u * i + 1u];
  } else {
    lo = lab[i];
    hi = int(lo) < 0 ? 0xffffffffu : 0u;
  }
  y[i] = lo == pc.u[2] && hi == pc.u[3] ? 0.0 : 1.0;
}
