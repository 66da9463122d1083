// row_reduce.glsl: helpers for the shaders that give one row to one workgroup (layer/RMS norm, softmax, token
// log-probs). Include after wgreduce.glsl. pv_row_reduce returns the workgroup's sum or max to every invocation
// (deterministic: a fixed tree, or the device's subgroup operations); all invocations must call it (uniform flow).
shared float pv_row_bc;
float pv_row_reduce(bool mx, float v) {
  float r = pv_wg_reduce(mx, v);
  if (gl_LocalInvocationID.x == 0u) pv_row_bc = r;
  barrier();
  r = pv_row_bc;
  barrier(); // the next reduction overwrites pv_red and pv_row_bc
  return r;
}
#define PV_NEG_INF uintBitsToFloat(0xff800000u)
// Kahan summation of the terms one invocation owns: s += t with the running compensation c.
void pv_kahan(inout float s, inout float c, float t) {
  precise float v = t - c;
  precise float u = s + v;
  precise float nc = (u - s) - v;
  c = nc;
  s = u;
}
