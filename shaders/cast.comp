#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "dtype.glsl"
// y = dtype(x) between f32, f16, bf16, i32, i64 (as runtime/context.c's pv__convert: floats round to nearest even,
// float -> int truncates, i64 -> i32 keeps the low word). push: 0 n, 1 src dtype, 2 dst dtype
layout(local_size_x = PV_WG) in;
layout(std430, binding = 0) writeonly buffer Y { uint y[]; };
layout(std430, binding = 1) readonly buffer X { uint x[]; };
uint h16(uint i) { return (x[i >> 1] >> ((i & 1u) * 16u)) & 0xffffu; }
float load_f(uint i, uint dt) {
  if (dt == PV_F32) return uintBitsToFloat(x[i]);
  if (dt == PV_F16) return pv_f16_to_f32(h16(i));
  if (dt == PV_BF16) return pv_bf16_to_f32(h16(i));
  if (dt == PV_I32) return float(int(x[i]));
  uint lo = x[2u * i], hi = x[2u * i + 1u];
  if (hi == (int(lo) < 0 ? 0xffffffffu : 0u)) return float(int(lo)); // fits in 32 bits
  bool neg = int(hi) < 0;
  if (neg) { // magnitude of the two's complement value
    lo = ~lo + 1u;
    hi = ~hi + (lo == 0u ? 1u : 0u);
  }
  float m = float(hi) * 4294967296.0 + float(lo);
  return neg ? -m : m;
}
uint to16(float v, uint dt) { return dt == PV_F16 ? pv_f32_to_f16(v) : pv_f32_to_bf16(v); }
void main() {
  uint n = pc.u[0], sd = pc.u[1], dd = pc.u[2], i = pv_gid();
  if (dd == PV_F16 || dd == PV_BF16) {
    uint i0 = 2u * i;
    if (i0 >= n) return;
    uint lo = to16(load_f(i0, sd), dd), hi = i0 + 1u < n ? to16(load_f(i0 + 1u, sd), dd) : 0u;
    y[i] = lo | (hi << 16);
    return;
  }
  if (i >= n) return;
  if (dd == PV_F32) {
    y[i] = floatBitsToUint(load_f(i, sd));
  } else if (dd == PV_I32) {
    if (sd == PV_I64) y[i] = x[2u * i];
    else y[i] = uint(int(load_f(i, sd)));
  } else { // i64
    if (sd == PV_I32) {
      int v = int(x[i]);
      y[2u * i] = uint(v);
      y[2u * i + 1u] = v < 0 ? 0xffffffffu : 0u;
    } else {
      float v = trunc(load_f(i, sd)), a = abs(v);
      uint hi = uint(floor(a / 4294967296.0)), lo = uint(a - float(hi) * 4294967296.0); // exact for |v| < 2^63
      if (v < 0.0) {
        lo = ~lo + 1u;
        hi = ~hi + (lo == 0u ? 1u : 0u);
      }
      y[2u * i] = lo;
      y[2u * i + 1u] = hi;
    }
  }
}
