// token_logprob_labels.glsl: labels (binding 2: i32, or i64 as (lo, hi) words) compared as 64-bit values.
// Push words used: 1 V, 2 labels are i64, 3/4 ignore_index (lo, hi).
layout(std430, binding = 2) readonly buffer L { uint lab[]; };
// label of row r as (lo, hi); i32 labels are sign-extended
uvec2 pv_label(uint r) {
  if (pc.u[2] != 0u) return uvec2(lab[2u * r], lab[2u * r + 1u]);
  uint lo = lab[r];
  return uvec2(lo, int(lo) < 0 ? 0xffffffffu : 0u);
}
bool pv_label_ignored(uvec2 v) { return v.x == pc.u[3] && v.y == pc.u[4]; }
bool pv_label_valid(uvec2 v) { return v.y == 0u && v.x < pc.u[1]; } // in [0, V)
// Running max m and Kahan sum (s, c) of exp(x - m) over the terms of one invocation; -inf terms add nothing.
void pv_lse_add(inout float m, inout float s, inout float c, float v) {
  if (v == PV_NEG_INF) return;
  if (v > m) {
    float f = m == PV_NEG_INF ? 0.0 : exp(m - v);
    s *= f;
    c *= f;
    m = v;
  }
  pv_kahan(s, c, exp(v - m));
}
// Combines the invocations' (m, s) into the row's max and Σ exp(x - max) (every invocation must call it).
vec2 pv_lse_row(float m, float s) {
  float M = pv_row_reduce(true, m);
  float t = m == PV_NEG_INF ? 0.0 : s * exp(m - M);
  return vec2(M, pv_row_reduce(false, t));
}
