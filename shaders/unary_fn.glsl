// unary_fn.glsl: f(x) and f'(x) for pv_unary_kind (same formulas as ops/elementwise.c).
#define SQRT_2_PI 0.7978845608028654
#define INV_SQRT_2 0.7071067811865476
#define INV_SQRT_2PI 0.3989422804014327
float pv_tanh(float x) { // no overflow for large |x|
  float t = exp(-2.0 * abs(x));
  float r = (1.0 - t) / (1.0 + t);
  return x < 0.0 ? -r : r;
}
float pv_log1p(float e) {
  float u = 1.0 + e;
  return u == 1.0 ? e : log(u) * e / (u - 1.0);
}
float pv_sigmoid(float x) { return 1.0 / (1.0 + exp(-x)); }
float pv_erf(float x) { // Numerical Recipes erfc, fractional error < 1.2e-7
  float z = abs(x), t = 1.0 / (1.0 + 0.5 * z);
  float ans = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
              t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
              t * (-0.82215223 + t * 0.17087277)))))))));
  float r = 1.0 - ans;
  return x >= 0.0 ? r : -r;
}
float pv_unary(uint k, float x) {
  switch (k) {
  case 0u: return -x;
  case 1u: return exp(x);
  case 2u: return log(x);
  case 3u: return sqrt(x);
  case 4u: return 1.0 / sqrt(x);
  case 5u: return pv_tanh(x);
  case 6u: return pv_sigmoid(x);
  case 7u: return min(x, 0.0) - pv_log1p(exp(-abs(x)));
  case 8u: return x / (1.0 + exp(-x));
  case 9u: return 0.5 * x * (1.0 + pv_tanh(float(SQRT_2_PI) * (x + 0.044715 * x * x * x)));
  case 10u: return 0.5 * x * (1.0 + pv_erf(x * float(INV_SQRT_2)));
  case 11u: return x > 0.0 ? x : 0.0;
  case 12u: return x * x;
  default: return abs(x);
  }
}
float pv_unary_grad(uint k, float x) {
  switch (k) {
  case 0u: return -1.0;
  case 1u: return exp(x);
  case 2u: return 1.0 / x;
  case 3u: return 0.5 / sqrt(x);
  case 4u: return -0.5 / (x * sqrt(x));
  case 5u: { float th = pv_tanh(x); return 1.0 - th * th; }
  case 6u: { float s = pv_sigmoid(x); return s * (1.0 - s); }
  case 7u: return 1.0 / (1.0 + exp(x));
  case 8u: { float s = pv_sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
  case 9u: {
    float u = float(SQRT_2_PI) * (x + 0.044715 * x * x * x), th = pv_tanh(u);
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * float(SQRT_2_PI) * (1.0 + 3.0 * 0.044715 * x * x);
  }
  case 10u: return 0.5 * (1.0 + pv_erf(x * float(INV_SQRT_2))) + x * exp(-0.5 * x * x) * float(INV_SQRT_2PI);
  case 11u: return x > 0.0 ? 1.0 : 0.0;
  case 12u: return 2.0 * x;
  default: return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0);
  }
}
