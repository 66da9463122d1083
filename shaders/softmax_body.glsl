// softmax_body.glsl: softmax / log-softmax over rows of Tk, one workgroup per row (ops/softmax.c).
//  z = scale·x + mask; causal: entries j >= lim = clamp(r % Tq + Tk - Tq + 1, 0, Tk) are excluded.
//  softmax y = exp(z - m) · (1 / Σ exp(z - m)); log-softmax y = z - (m + log Σ exp(z - m)); excluded entries and
//  fully masked rows (max -inf) give 0 / -inf. x is read before the same invocation writes y (in place).
// push: 0 rows, 1 Tk, 2 Tq, 3 scale (f32), 4 flags (1 log, 2 causal, 4 mask), 5 mask stride along Tk,
//  6 nd (coalesced leading dims of the mask walk), 7..14 their shape, 15..22 their mask strides.
// bindings: 0 y, 1 x, 2 mask (x again where absent).
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer M { float mk[]; };
#include "wgreduce.glsl"
#include "row_reduce.glsl"

uint mask_row(uint r) {
  uint off = 0u;
  for (int d = int(pc.u[6]) - 1; d >= 0; d--) {
    uint sh = pc.u[7 + d], c = r % sh;
    r /= sh;
    off += c * pc.u[15 + d];
  }
  return off;
}

void main() {
  uint row = pv_group(), Tk = pc.u[1], l = gl_LocalInvocationID.x, fl = pc.u[4];
  if (row >= pc.u[0]) return; // uniform over the workgroup
  bool lg = (fl & 1u) != 0u, hm = (fl & 4u) != 0u;
  uint base = row * Tk, lim = Tk;
  if ((fl & 2u) != 0u) {
    uint Tq = pc.u[2];
    int li = int(row % Tq) + int(Tk) - int(Tq) + 1;
    lim = uint(clamp(li, 0, int(Tk)));
  }
  float sc = pv_pf(3);
  uint mo = hm ? mask_row(row) : 0u, ms = pc.u[5];
  float m = PV_NEG_INF;
  for (uint j = l; j < lim; j += PV_WG) {
    float z = sc * x[base + j] + (hm ? mk[mo + j * ms] : 0.0);
    if (z > m) m = z;
  }
  m = pv_row_reduce(true, m);
  float fill = lg ? PV_NEG_INF : 0.0;
  if (m == PV_NEG_INF) { // fully masked row (uniform)
    for (uint j = l; j < Tk; j += PV_WG) y[base + j] = fill;
    return;
  }
  float s = 0.0, c = 0.0;
  for (uint j = l; j < lim; j += PV_WG) {
    float z = sc * x[base + j] + (hm ? mk[mo + j * ms] : 0.0);
    if (z != PV_NEG_INF) pv_kahan(s, c, exp(z - m));
  }
  s = pv_row_reduce(false, s);
  float ls = m + log(s), inv = 1.0 / s;
  for (uint j = l; j < Tk; j += PV_WG) {
    float o = fill;
    if (j < lim) {
      float z = sc * x[base + j] + (hm ? mk[mo + j * ms] : 0.0);
      if (z != PV_NEG_INF) o = lg ? z - ls : exp(z - m) * inv;
    }
    y[base + j] = o;
  }
}
