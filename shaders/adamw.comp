#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// AdamW step in place on the var sources (ops/optim.c, adamw_cpu): the float64 scalars in double-float from the f32
// hyper tensor, then per element the CPU kernel's f32 operations in its order (no FMA contraction, correctly rounded
// sqrt and division), so the results agree with the CPU to the last bit or so. Each invocation reads all four
// operands of its element before writing (grad may alias another operand).
// bindings: 0 token, 1 param, 2 grad, 3 m, 4 v, 5 hyper (lr, beta1, beta2, eps, bc1, bc2[, gscale])
// push: 0 n, 1/2 lr_scale (hi, lo), 3/4 weight decay (hi, lo), 5: 1 when hyper[6] scales the gradient (in f32)
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Tok { float tok[]; };
layout(std430, binding = 1) buffer P { float p[]; };
layout(std430, binding = 2) readonly buffer G { float g[]; };
layout(std430, binding = 3) buffer Mo { float m[]; };
layout(std430, binding = 4) buffer Vo { float v[]; };
layout(std430, binding = 5) readonly buffer H { float h[]; };
#include "adamw_df.glsl"
void main() {
  uint i = pv_gid();
  if (i == 0u) tok[0] = 0.0;
  if (i >= pc.u[0]) return;
  vec2 lr_eff = df_mul(vec2(h[0], 0.0), vec2(pv_pf(1), pv_pf(2)));
  precise float decay = df_one_minus(df_mul(lr_eff, vec2(pv_pf(3), pv_pf(4)))).x;
  precise float w1 = 1.0 - h[1], b2 = h[2], c2 = 1.0 - h[2], eps = h[3];
  precise float neg_step = -df_div_f(lr_eff, h[4]).x;
  precise float bc2_sqrt = pv_sqrt_rn(h[5]);
  precise float pi = p[i], gi = g[i], mi = m[i], vi = v[i];
  if (pc.u[5] != 0u) gi = gi * h[6];
  pi = pi * decay;
  if (abs(w1) < 0.5) mi = mi + w1 * (gi - mi);
  else mi = gi - (gi - mi) * (1.0 - w1);
  vi = vi * b2;
  vi = vi + c2 * gi * gi;
  precise float denom = pv_div_rn(pv_sqrt_rn(vi), bc2_sqrt) + eps;
  pi = pi + pv_div_rn(neg_step * mi, denom);
  m[i] = mi;
  v[i] = vi;
  p[i] = pi;
}
