// softmax_grad_body.glsl: dx of softmax / log-softmax from (y, dy), one workgroup per row (ops/softmax.c):
//  softmax dx = scale·y·(dy - Σ dy·y), log-softmax dx = scale·(dy - exp(y)·Σ dy); 0 at excluded entries (y = 0 /
//  -inf, or causal j >= lim). y and dy are read before the same invocation writes dx (in place over y).
// push: 0 rows, 1 Tk, 2 Tq, 3 scale (f32), 4 flags (1 log, 2 causal). bindings: 0 dx, 1 y, 2 dy.
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer DX { float dx[]; };
layout(std430, binding = 1) readonly buffer Y { float y[]; };
layout(std430, binding = 2) readonly buffer DY { float dy[]; };
#include "wgreduce.glsl"
#include "row_reduce.glsl"

void main() {
  uint row = pv_group(), Tk = pc.u[1], l = gl_LocalInvocationID.x, fl = pc.u[4];
  if (row >= pc.u[0]) return; // uniform over the workgroup
  bool lg = (fl & 1u) != 0u;
  uint base = row * Tk, lim = Tk;
  if ((fl & 2u) != 0u) {
    uint Tq = pc.u[2];
    int li = int(row % Tq) + int(Tk) - int(Tq) + 1;
    lim = uint(clamp(li, 0, int(Tk)));
  }
  float zero = lg ? PV_NEG_INF : 0.0, s = 0.0, c = 0.0;
  for (uint j = l; j < lim; j += PV_WG) {
    float yv = y[base + j];
    if (yv != zero) pv_kahan(s, c, lg ? dy[base + j] : dy[base + j] * yv);
  }
  s = pv_row_reduce(false, s);
  float sc = pv_pf(3);
  for (uint j = l; j < Tk; j += PV_WG) {
    float o = 0.0;
    if (j < lim) {
      float yv = y[base + j];
      if (yv != zero) o = lg ? sc * (dy[base + j] - exp(yv) * s) : sc * yv * (dy[base + j] - s);
    }
    dx[base + j] = o;
  }
}
