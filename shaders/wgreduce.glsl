// wgreduce.glsl: deterministic workgroup reduction of one float per invocation (sum or max).
// Define PV_SUBGROUP 1 (with GL_KHR_shader_subgroup_arithmetic enabled) to use subgroup operations.
shared float pv_red[PV_WG];
float pv_combine(bool mx, float a, float b) { return mx ? (b > a ? b : a) : a + b; }
#if PV_SUBGROUP
float pv_wg_reduce(bool mx, float v) {
  v = mx ? subgroupMax(v) : subgroupAdd(v);
  if (subgroupElect()) pv_red[gl_SubgroupID] = v;
  barrier();
  float r = 0.0;
  if (gl_SubgroupID == 0u) {
    uint l = gl_SubgroupInvocationID;
    float w = l < gl_NumSubgroups ? pv_red[l] : (mx ? uintBitsToFloat(0xff800000u) : 0.0);
    for (uint k = l + gl_SubgroupSize; k < gl_NumSubgroups; k += gl_SubgroupSize) w = pv_combine(mx, w, pv_red[k]);
    r = mx ? subgroupMax(w) : subgroupAdd(w);
  }
  return r; // valid in invocation 0
}
#else
float pv_wg_reduce(bool mx, float v) {
  uint l = gl_LocalInvocationID.x;
  pv_red[l] = v;
  barrier();
  for (uint s = PV_WG / 2u; s > 0u; s >>= 1) {
    if (l < s) pv_red[l] = pv_combine(mx, pv_red[l], pv_red[l + s]);
    barrier();
  }
  return pv_red[0];
}
#endif
