#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Output [outer, N, inner] made of segments along the middle axis: segment k covers [end[k-1], end[k]) and is read
// from binding src[k] (1..8, viewed as [outer, len_k, inner]) or is zero (src[k] == 0). Used by concat and unslice.
// Elements of es bytes (2, 4, 8). push: 0 n, 1 es, 2 N, 3 inner, 4 nseg, 5..12 end[8], 13..20 src[8]
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { uint y[]; };
layout(std430, binding = 1) readonly buffer S1 { uint s1[]; };
layout(std430, binding = 2) readonly buffer S2 { uint s2[]; };
layout(std430, binding = 3) readonly buffer S3 { uint s3[]; };
layout(std430, binding = 4) readonly buffer S4 { uint s4[]; };
layout(std430, binding = 5) readonly buffer S5 { uint s5[]; };
layout(std430, binding = 6) readonly buffer S6 { uint s6[]; };
layout(std430, binding = 7) readonly buffer S7 { uint s7[]; };
layout(std430, binding = 8) readonly buffer S8 { uint s8[]; };
uint word(uint b, uint w) {
  switch (b) {
  case 1u: return s1[w];
  case 2u: return s2[w];
  case 3u: return s3[w];
  case 4u: return s4[w];
  case 5u: return s5[w];
  case 6u: return s6[w];
  case 7u: return s7[w];
  default: return s8[w];
  }
}
// source binding (0: zero) and element index of output element i
uvec2 locate(uint i) {
  uint N = pc.u[2], inner = pc.u[3];
  uint o = i / (N * inner), rem = i - o * N * inner, a = rem / inner, in_ = rem - a * inner;
  uint start = 0u;
  for (uint k = 0u; k < pc.u[4]; k++) {
    uint end = pc.u[5u + k];
    if (a < end) return uvec2(pc.u[13u + k], (o * (end - start) + (a - start)) * inner + in_);
    start = end;
  }
  return uvec2(0u, 0u);
}
uint half_of(uint i) {
  uvec2 s = locate(i);
  if (s.x == 0u) return 0u;
  return (word(s.x, s.y >> 1) >> ((s.y & 1u) * 16u)) & 0xffffu;
}
void main() {
  uint n = pc.u[0], es = pc.u[1], i = pv_gid();
  if (es == 2u) {
    uint i0 = 2u * i;
    if (i0 >= n) return;
    y[i] = half_of(i0) | ((i0 + 1u < n ? half_of(i0 + 1u) : 0u) << 16);
    return;
  }
  if (i >= n) return;
  uvec2 s = locate(i);
  if (es == 4u) y[i] = s.x == 0u ? 0u : word(s.x, s.y);
  else {
    y[2u * i] = s.x == 0u ? 0u : word(s.x, 2u * s.y);
    y[2u * i + 1u] = s.x == 0u ? 0u : word(s.x, 2u * s.y + 1u);
  }
}
