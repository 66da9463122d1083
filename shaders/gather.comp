#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Strided gather into a contiguous output: y[i] = x[soff + sum_d idx_d(i) * st_d], i < n, over the output shape
// (up to 8 coalesced dims). Elements of es bytes: 4 (one word), 8 (two words), 2 (two per word: one invocation
// writes a whole output word). push: 0 n, 1 es, 2 soff (elements), 3 ndim, 4..11 shape, 12..19 src strides
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { uint y[]; };
layout(std430, binding = 1) readonly buffer X { uint x[]; };
uint src_index(uint i) {
  uint off = pc.u[2], r = i;
  for (int d = int(pc.u[3]) - 1; d >= 0; d--) {
    uint sh = pc.u[4 + d], c = r % sh;
    r /= sh;
    off += c * pc.u[12 + d];
  }
  return off;
}
uint half_at(uint e) { return (x[e >> 1] >> ((e & 1u) * 16u)) & 0xffffu; }
void main() {
  uint n = pc.u[0], es = pc.u[1], i = pv_gid();
  if (es == 2u) {
    uint i0 = 2u * i;
    if (i0 >= n) return;
    uint lo = half_at(src_index(i0)), hi = i0 + 1u < n ? half_at(src_index(i0 + 1u)) : 0u;
    y[i] = lo | (hi << 16);
    return;
  }
  if (i >= n) return;
  uint s = src_index(i);
  if (es == 4u) y[i] = x[s];
  else {
    y[2u * i] = x[2u * s];
    y[2u * i + 1u] = x[2u * s + 1u];
  }
}
