// reduce_body.glsl: y[j] = reduce over r of x[kbase(j) + roff(r)] (sum, or max), times scale for sums.
// The index space of x is split into kept dims (one output per index) and reduced dims, each at most 4 after
// coalescing. push: 0 M (outputs), 1 R (reduced count), 2 kind (0 sum, 1 max), 3 scale (f32),
// 4 nk, 5 nr, 6..9 kept shape, 10..13 kept strides, 14..17 reduced shape, 18..21 reduced strides,
// 22 mode (0: one invocation per output, sequential; 1: one workgroup per output)
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
#include "wgreduce.glsl"

uint kbase(uint j) {
  uint off = 0u;
  for (int d = int(pc.u[4]) - 1; d >= 0; d--) {
    uint sh = pc.u[6 + d], c = j % sh;
    j /= sh;
    off += c * pc.u[10 + d];
  }
  return off;
}
uint roff(uint r) {
  if (pc.u[5] == 1u) return r * pc.u[18];
  uint off = 0u;
  for (int d = int(pc.u[5]) - 1; d >= 0; d--) {
    uint sh = pc.u[14 + d], c = r % sh;
    r /= sh;
    off += c * pc.u[18 + d];
  }
  return off;
}

void main() {
  uint M = pc.u[0], R = pc.u[1];
  bool mx = pc.u[2] == 1u;
  float scale = pv_pf(3);
  if (pc.u[22] == 0u) {
    uint j = pv_gid();
    if (j >= M) return;
    uint base = kbase(j);
    if (mx) {
      float m = x[base + roff(0u)];
      for (uint r = 1u; r < R; r++) {
        float v = x[base + roff(r)];
        if (v > m) m = v;
      }
      y[j] = m;
    } else {
      precise float s = 0.0, c = 0.0; // Kahan
      for (uint r = 0u; r < R; r++) {
        precise float v = x[base + roff(r)] - c;
        precise float t = s + v;
        c = (t - s) - v;
        s = t;
      }
      y[j] = s * scale;
    }
  } else {
    uint j = pv_group();
    if (j >= M) return; // uniform over the workgroup
    uint base = kbase(j), l = gl_LocalInvocationID.x;
    float acc;
    if (mx) {
      acc = uintBitsToFloat(0xff800000u);
      for (uint r = l; r < R; r += PV_WG) {
        float v = x[base + roff(r)];
        if (v > acc) acc = v;
      }
    } else {
      precise float s = 0.0, c = 0.0;
      for (uint r = l; r < R; r += PV_WG) {
        precise float v = x[base + roff(r)] - c;
        precise float t = s + v;
        c = (t - s) - v;
        s = t;
      }
      acc = s;
    }
    float v = pv_wg_reduce(mx, acc);
    if (l == 0u) y[j] = mx ? v : v * scale;
  }
}
