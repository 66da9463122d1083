#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// Rotary position embedding, HF rotate-half (ops/rope.c). x [B, T, H, D], pos [B, T] or [T] (i32, or i64 as
// (lo, hi) words). One invocation per (b, t, h, k), k < D - half: k < half rotates channels (k, k + half), otherwise
// channel k + half (>= R) is copied. Both channels are read before they are written (in place).
// The angle follows the CPU kernel in float32: e = fl(2i / R), inv = fl(1 / fl(theta^e)), a = fl(pos · inv);
// the divisions are correctly rounded, theta^e = 2^(e·log2 theta) is evaluated in double-float (rounded once), and
// cos / sin use an exact reduction by pi/2 and polynomials on [-pi/4, pi/4] (within ~1 ulp of cosf / sinf for
// |a| < 2^22), so that large positions match the CPU rather than the device's low-precision built-ins.
// push: 0 n (threads), 1 T, 2 H, 3 D, 4 half, 5 R, 6 pos is i64, 7 pos is [B, T], 8 inverse, 9/10 log2(theta) as
// (hi, lo) f32.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer P { uint pos[]; };

// Double-float arithmetic (value x + y) from plain float operations: no fma, since implementations may split it
// (lavapipe does). precise keeps the compiler from reassociating or contracting the error terms.
vec2 split(float a) { // Veltkamp: a = h + l, each with at most 12 significant bits
  precise float c = 4097.0 * a;
  precise float h = c - (c - a);
  precise float l = a - h;
  return vec2(h, l);
}
vec2 two_prod(float a, float b) { // Dekker: a·b = p + e exactly
  precise float p = a * b;
  vec2 as = split(a), bs = split(b);
  precise float e = ((as.x * bs.x - p) + as.x * bs.y + as.y * bs.x) + as.y * bs.y;
  return vec2(p, e);
}
vec2 fast_two_sum(float a, float b) { // |a| >= |b|
  precise float s = a + b;
  precise float e = b - (s - a);
  return vec2(s, e);
}
vec2 two_sum(float a, float b) {
  precise float s = a + b;
  precise float bb = s - a;
  precise float e = (a - (s - bb)) + (b - bb);
  return vec2(s, e);
}

// a - q·b (nearly exact: a - p is exact when q·b is close to a)
float remainder_of(float a, float q, float b) {
  vec2 p = two_prod(q, b);
  precise float r = (a - p.x) - p.y;
  return r;
}
// a / b correctly rounded (a >= 0, b > 0): a refined quotient, then the neighbour with the smallest remainder
float div_rn(float a, float b) {
  if (a == 0.0) return 0.0;
  precise float q = a / b;
  q = q + remainder_of(a, q, b) * (1.0 / b);
  float best = q, br = abs(remainder_of(a, q, b));
  for (int k = -1; k <= 1; k += 2) {
    float qn = uintBitsToFloat(uint(int(floatBitsToUint(q)) + k));
    float rn = abs(remainder_of(a, qn, b));
    if (rn < br) {
      best = qn;
      br = rn;
    }
  }
  return best;
}

// c + f·acc for a double-float coefficient c = (ch, cl) with |c| >= |f·acc|
vec2 horner_df(vec2 acc, float f, float ch, float cl) {
  vec2 p = two_prod(acc.x, f);
  precise float e = p.y + acc.y * f;
  vec2 s = two_sum(ch, p.x);
  precise float lo = (s.y + e) + cl;
  return fast_two_sum(s.x, lo);
}
// 2^(th + tl) rounded to float from a double-float value (|tl| << 1): 2^f for f = th - round(th) by a degree-9
// polynomial whose low terms are double-float (~2^-33 before the final rounding), times 2^tl ~ 1 + tl·ln2.
float exp2_df(float th, float tl) {
  float n = roundEven(th);
  precise float f = th - n; // exact, |f| <= 0.5
  float q = 1.0178086284895471e-07;
  q = q * f + 1.3215486660556053e-06;
  q = q * f + 1.5252733646775596e-05;
  q = q * f + 1.540352968731895e-04;
  q = q * f + 1.3333557872101665e-03;
  q = q * f + 9.618128649890423e-03;
  vec2 a = vec2(q, 0.0);
  a = horner_df(a, f, 5.550410971045494e-02, -1.0456333576769339e-09);
  a = horner_df(a, f, 2.4022650718688965e-01, -2.277889404878053e-10);
  a = horner_df(a, f, 6.931471824645996e-01, -1.9046542121259336e-09);
  a = horner_df(a, f, 1.0, 0.0);
  precise float lo = a.y + a.x * (tl * 0.6931471805599453);
  precise float r = a.x + lo;
  return ldexp(r, int(n));
}

// cos and sin of a: a - k·pi/2 with k·P1 exact (P1 + P2 + P3 = pi/2; a - k·P1 is exact by Sterbenz), then
// polynomials on [-pi/4, pi/4] (Cephes sinf / cosf) and the quadrant k mod 4
vec2 cos_sin(float a) {
  float k = roundEven(a * 0.63661977236758134);
  vec2 p1 = two_prod(k, 1.5707963705062866);
  precise float r = ((a - p1.x) - p1.y) - k * -4.371138828673793e-08;
  r = r - k * -1.7151245100058819e-15;
  float z = r * r;
  float s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * (z * r) + r;
  float c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * (z * z) + (1.0 - 0.5 * z);
  int q = int(k) & 3;
  if (q == 0) return vec2(c, s);
  if (q == 1) return vec2(-s, c);
  if (q == 2) return vec2(-c, -s);
  return vec2(s, -c);
}

void main() {
  uint g = pv_gid();
  if (g >= pc.u[0]) return;
  uint T = pc.u[1], H = pc.u[2], D = pc.u[3], half_ = pc.u[4], Dh = D - half_;
  uint k = g % Dh, q = g / Dh, h = q % H, r = q / H; // r = b * T + t
  uint base = (r * H + h) * D;
  if (k >= half_) {
    y[base + k + half_] = x[base + k + half_];
    return;
  }
  uint pid = pc.u[7] != 0u ? r : r % T;
  float pf;
  if (pc.u[6] != 0u) {
    uint lo = pos[2u * pid], hi = pos[2u * pid + 1u];
    pf = hi == (int(lo) < 0 ? 0xffffffffu : 0u) ? float(int(lo)) : float(int(hi)) * 4294967296.0 + float(lo);
  } else
    pf = float(int(pos[pid]));
  float e = div_rn(float(2u * k), float(pc.u[5]));
  float lh = pv_pf(9), ll = pv_pf(10);
  vec2 t = two_prod(e, lh); // e·log2(theta) in double-float
  precise float tl = t.y + e * ll;
  float inv = div_rn(1.0, exp2_df(t.x, tl));
  precise float a = pf * inv;
  vec2 cs = cos_sin(a);
  float sn = pc.u[8] != 0u ? -cs.y : cs.y;
  float x1 = x[base + k], x2 = x[base + k + half_];
  y[base + k] = x1 * cs.x - x2 * sn;
  y[base + k + half_] = x2 * cs.x + x1 * sn;
}
