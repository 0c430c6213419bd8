// 16-bit floating point storage types. Arithmetic happens in float: these types only convert.
#pragma once

#include <cstdint>
#include <cstring>

namespace orchard {

inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// IEEE 754 binary16.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  Half(float f) : bits(from_float(f)) {}
  operator float() const { return to_float(bits); }

  static uint16_t from_float(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) {  // inf or nan
      return uint16_t(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
    }
    if (mag >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
    if (mag < 0x38800000u) {  // subnormal or zero in half: let float addition do the rounding
      float r = bits_float(mag) + 0.5f;
      return uint16_t(sign | (float_bits(r) - 0x3f000000u));
    }
    uint32_t odd = (mag >> 13) & 1u;  // round to nearest even
    mag += 0xc8000fffu + odd;         // rebias exponent (-112 << 23) and round
    return uint16_t(sign | (mag >> 13));
  }
  static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t mag = h & 0x7fffu;
    if (mag >= 0x7c00u) return bits_float(sign | 0x7f800000u | (mag & 0x3ffu) << 13);
    if (mag < 0x0400u) {  // zero or subnormal: mag * 2^-24
      float v = float(mag) * (1.0f / 16777216.0f);
      return sign ? -v : v;
    }
    return bits_float(sign | ((mag << 13) + 0x38000000u));
  }
};

// bfloat16: the top half of a float32, rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) : bits(from_float(f)) {}
  operator float() const { return bits_float(uint32_t(bits) << 16); }

  static uint16_t from_float(float f) {
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet nan
    x += 0x7fffu + ((x >> 16) & 1u);
    return uint16_t(x >> 16);
  }
};

}  // namespace orchard
