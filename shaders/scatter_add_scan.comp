#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// scatter_add, pass 2 of 4: one workgroup; off[v] = sum of cnt[u] for u < v, off[V] = the total (scratch layout in
// scatter_add_count.comp). Each invocation sums a contiguous chunk, invocation 0 scans the chunk sums.
// push: 0 ids count, 1 V
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) buffer S { uint s[]; };
shared uint part[PV_WG];
void main() {
  uint V = pc.u[1], l = gl_LocalInvocationID.x, chunk = (V + PV_WG - 1u) / PV_WG;
  uint b = min(l * chunk, V), e = min(b + chunk, V), sum = 0u;
  for (uint v = b; v < e; v++) sum += s[v];
  part[l] = sum;
  barrier();
  if (l == 0u) {
    uint run = 0u;
    for (uint k = 0u; k < PV_WG; k++) {
      uint x = part[k];
      part[k] = run;
      run += x;
    }
    s[2u * V + V] = run;
  }
  barrier();
  uint run = part[l];
  for (uint v = b; v < e; v++) {
    s[2u * V + v] = run;
    run += s[v];
  }
}
