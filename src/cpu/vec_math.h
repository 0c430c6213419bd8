// Float math written with plain arithmetic and selects so that loops over arrays auto-vectorise
// (std::exp and friends do not, without -ffast-math). Accurate to a few ulp; special values
// (inf, -inf, nan) behave as in <cmath>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace orchard::cpu {

// Float bits as an int32 that orders like the float (negative floats get their magnitude bits
// flipped); the map is its own inverse.
inline int32_t ordered_bits(int32_t b) { return b ^ ((b >> 31) & 0x7fffffff); }

inline float exp_f32(float x) {
  // exp(x) = 2^n exp(r), x = n ln2 + r, |r| <= ln2/2; Cephes' polynomial for exp(r).
  // No float selects: GCC turns a select with a constant arm into a split path, which it then
  // refuses to if-convert under -ftrapping-math, and the loop stays scalar. So x is clamped to
  // [-105, 89] (beyond which the result underflows to 0 or overflows to inf by itself) with an
  // integer min/max on ordered bits, and NaN is passed through with a bit mask.
  int32_t xb;
  std::memcpy(&xb, &x, 4);
  int32_t cb = ordered_bits(std::min(std::max(ordered_bits(xb), int32_t(0xbd2dffff)),  // -105.0f
                                     int32_t(0x42b20000)));                             // 89.0f
  float xc;
  std::memcpy(&xc, &cb, 4);
  // n = round(xc / ln2) by adding 1.5 * 2^23, which also leaves n in the low bits of t.
  float t = xc * 1.44269504088896341f + 12582912.0f;
  float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // Scale by 2^n in two steps so that n in [-151, 128] stays within the exponent field.
  uint32_t tb;
  std::memcpy(&tb, &t, 4);
  int32_t ni = int32_t(tb - 0x4b400000u);
  int32_t half = ni >> 1;
  uint32_t b1 = uint32_t(half + 127) << 23, b2 = uint32_t(ni - half + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  float y = p * s1 * s2;
  uint32_t yb, nan = 0u - uint32_t((uint32_t(xb) & 0x7fffffffu) > 0x7f800000u);
  std::memcpy(&yb, &y, 4);
  yb = (yb & ~nan) | (uint32_t(xb) & nan);
  std::memcpy(&y, &yb, 4);
  return y;
}

inline float tanh_f32(float x) {
  // Small |x|: odd polynomial (Cephes tanhf); large: 1 - 2 / (exp(2|x|) + 1) with x's sign. Both are
  // computed and one is picked with a bit mask: float selects would stay branches (see exp_f32),
  // and the loop scalar.
  float ax = std::fabs(x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = x + x * z * p;
  float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
  uint32_t xb, sb, bb, use_small = 0u - uint32_t(ax < 0.625f);
  std::memcpy(&xb, &x, 4);
  std::memcpy(&sb, &small, 4);
  std::memcpy(&bb, &big, 4);
  // x's sign on either result: big is >= 0, and small is +0 for x = -0 (x + x z p = -0 + +0).
  uint32_t yb = ((sb & use_small) | (bb & ~use_small)) | (xb & 0x80000000u);
  float y;
  std::memcpy(&y, &yb, 4);
  return y;
}

inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

// Eight floats as one value (GCC/Clang vector extensions), for loops the compiler would not
// vectorise by itself: a micro-kernel's accumulators then live in registers, which it does not
// achieve for a plain float array. Compiles to AVX2/FMA here and to pairs of NEON registers on arm64.
typedef float Vec8 __attribute__((vector_size(32)));
inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, Vec8 v) { std::memcpy(p, &v, sizeof v); }

// exp(x) for the x <= 0 of a softmax (a score minus the running max or the lse; -inf gives 0),
// within 1 ulp, at half the cost of exp_f32, which also handles overflow and needs scalar code
// to vectorise (attention and cross-entropy spend most of their non-gemm time in exp).
// x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite), exp(r) by a minimax polynomial, 2^n through the
// exponent field. Below -88 the result flushes to 0 (n = -127 makes the exponent field 0). NaN
// propagates.
typedef int32_t Int8 __attribute__((vector_size(32)));
inline Vec8 exp_nonpositive(Vec8 x) {
  x = x < -88.0f ? Vec8{} - 88.0f : x;
  const Vec8 t = x * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds; n in the low bits
  const Vec8 n = t - 12582912.0f;
  const Vec8 r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4
  Vec8 p = Vec8{} + 1.383684459e-3f;
  p = p * r + 8.374815807e-3f;
  p = p * r + 4.166822508e-2f;
  p = p * r + 1.666641980e-1f;
  p = p * r + 4.999999106e-1f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * (Vec8)(((Int8)t - 0x4b400000 + 127) << 23);
}

// Generic versions for the elementwise templates: fast float paths, <cmath> for double.
inline float vexp(float x) { return exp_f32(x); }
inline double vexp(double x) { return std::exp(x); }
inline float vtanh(float x) { return tanh_f32(x); }
inline double vtanh(double x) { return std::tanh(x); }
inline float vsigmoid(float x) { return sigmoid_f32(x); }
inline double vsigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace orchard::cpu
