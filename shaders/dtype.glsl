// dtype.glsl: 16-bit float conversions matching runtime/context.c (round to nearest even).
float pv_f16_to_f32(uint h) {
  uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
  if (e == 0u) {
    if (m == 0u) bits = sign;
    else {
      e = 127u - 15u + 1u;
      while ((m & 0x400u) == 0u) { m <<= 1; e--; }
      m &= 0x3ffu;
      bits = sign | (e << 23) | (m << 13);
    }
  } else if (e == 31u) bits = sign | 0x7f800000u | (m << 13);
  else bits = sign | ((e + 127u - 15u) << 23) | (m << 13);
  return uintBitsToFloat(bits);
}
uint pv_f32_to_f16(float f) {
  uint x = floatBitsToUint(f);
  uint sign = (x >> 16) & 0x8000u;
  int e = int((x >> 23) & 0xffu);
  uint m = x & 0x7fffffu;
  if (e == 255) return sign | 0x7c00u | (m != 0u ? 0x200u : 0u);
  e = e - 127 + 15;
  if (e >= 31) return sign | 0x7c00u;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000u;
    uint shift = uint(14 - e);
    uint half_ = m >> shift, rem = m & ((1u << shift) - 1u), mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half_ & 1u) != 0u)) half_++;
    return sign | half_;
  }
  uint h = sign | (uint(e) << 10) | (m >> 13);
  uint rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h++;
  return h;
}
float pv_bf16_to_f32(uint h) { return uintBitsToFloat(h << 16); }
uint pv_f32_to_bf16(float f) {
  uint x = floatBitsToUint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return ((x >> 16) | 0x40u) & 0xffffu;
  x += 0x7fffu + ((x >> 16) & 1u);
  return x >> 16;
}
