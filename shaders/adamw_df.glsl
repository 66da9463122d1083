// adamw_df.glsl: exact f32 helpers for update ops that must agree with C float math: double-float (hi, lo) scalars
// for the float64 scalars the CPU computes, and correctly rounded sqrt and division (GLSL's may be off by ulps).
// Everything is `precise` (no FMA contraction, no reassociation); relies on correctly rounded f32 + - * (Vulkan).
vec2 df_two_sum(float a, float b) {
  precise float s = a + b;
  precise float bb = s - a;
  precise float e = (a - (s - bb)) + (b - bb);
  return vec2(s, e);
}
vec2 df_fast_two_sum(float a, float b) { // |a| >= |b|
  precise float s = a + b;
  precise float e = b - (s - a);
  return vec2(s, e);
}
vec2 df_split(float a) {
  precise float c = 4097.0 * a;
  precise float hi = c - (c - a);
  precise float lo = a - hi;
  return vec2(hi, lo);
}
vec2 df_two_prod(float a, float b) { // a * b exactly as (p, e)
  vec2 x = df_split(a), y = df_split(b);
  precise float p = a * b;
  precise float e = ((x.x * y.x - p) + x.x * y.y + x.y * y.x) + x.y * y.y;
  return vec2(p, e);
}
vec2 df_mul(vec2 a, vec2 b) {
  vec2 p = df_two_prod(a.x, b.x);
  precise float lo = p.y + (a.x * b.y + a.y * b.x);
  return df_fast_two_sum(p.x, lo);
}
vec2 df_div_f(vec2 a, float b) {
  precise float q1 = a.x / b;
  vec2 p = df_two_prod(q1, b);
  precise float r = ((a.x - p.x) - p.y) + a.y;
  precise float q2 = r / b;
  return df_fast_two_sum(q1, q2);
}
vec2 df_one_minus(vec2 a) {
  vec2 s = df_two_sum(1.0, -a.x);
  precise float lo = s.y - a.y;
  return df_fast_two_sum(s.x, lo);
}
// correctly rounded sqrt(x) and a / b (one exact-residual correction of the hardware result)
float pv_sqrt_rn(float x) {
  precise float r = sqrt(x);
  if (!(r > 0.0) || isinf(r)) return r;
  vec2 p = df_two_prod(r, r);
  precise float e = (x - p.x) - p.y;
  precise float c = r + e / (2.0 * r);
  return c;
}
float pv_div_rn(float a, float b) {
  precise float q = a / b;
  if (q == 0.0 || isinf(q) || isnan(q) || isinf(b)) return q;
  vec2 p = df_two_prod(q, b);
  precise float e = (a - p.x) - p.y;
  precise float c = q + e / b;
  return c;
}
