// Random fills (Runtime::random) and dropout, bit-identical to src/cpu/random.cpp: uniform [0, 1),
// standard normal (Box-Muller) and dropout masks from the Philox stream of src/core/philox.h, which
// this file shares with the CPU. Element i of a uniform fill or a dropout is number offset + i of the
// stream; a normal element takes numbers offset + 2i and offset + 2i + 1. One thread per Philox
// block (four numbers), so every block is computed once (twice for the pairs that straddle two
// blocks when offset is odd). Uniform values and dropout masks are exact integer and power-of-two
// arithmetic, so they match the CPU's bits on any device; normal values go through float log, cos
// and sqrt, which match bit for bit in the emulator (the same C library) and to within MSL's
// precise-math ulp bounds on a GPU.
#include "common.h"
#include "random_params.h"
#include "../src/core/philox.h"

// [0, 1) from the top Bits bits of u, as many as T represents exactly, so that rounding to T never
// gives 1 (src/cpu/random.cpp's uniform<T>: 11 bits for half, 8 for bfloat, 24 for float).
template <typename T, int Bits> T random_unit(uint32_t u) {
  return T(float(u >> (32 - Bits)) * (1.0f / float(1u << Bits)));
}

// Box-Muller in float; 1 - u1 lies in (0, 1], so the log is finite.
inline float random_box_muller(uint32_t u1, uint32_t u2) {
  return sqrt(-2.0f * log(1.0f - random_unit<float, 24>(u1))) * cos(6.283185307179586f * random_unit<float, 24>(u2));
}

template <typename T, int Bits>
[[kernel]] void random_uniform(device T* out [[buffer(0)]], constant RandomParams& p [[buffer(1)]],
                               uint t [[thread_position_in_grid]]) {
  if (t >= p.blocks) return;
  const uint64_t counter = p.first_block + t;
  const orchard::Philox4 r = orchard::philox_block(p.seed, counter);
  for (uint j = 0; j < 4; ++j) {
    const uint64_t i = counter * 4 + j - p.offset;  // wraps past count for numbers before offset
    if (i < p.count) out[i] = random_unit<T, Bits>(r.v[j]);
  }
}

template <typename T>
[[kernel]] void random_normal(device T* out [[buffer(0)]], constant RandomParams& p [[buffer(1)]],
                              uint t [[thread_position_in_grid]]) {
  if (t >= p.blocks) return;
  const uint64_t counter = p.first_block + t;
  const orchard::Philox4 r = orchard::philox_block(p.seed, counter);
  for (uint j = 0; j < 4; ++j) {
    const uint64_t d = counter * 4 + j - p.offset;  // an element's first number when even
    if ((d & 1) != 0 || d / 2 >= p.count) continue;
    const uint32_t u2 = j < 3 ? r.v[j + 1] : orchard::philox_block(p.seed, counter + 1).v[0];
    out[d / 2] = T(random_box_muller(r.v[j], u2));
  }
}

// Integers (Runtime::random_integers): element i is low + (u % range) for the 64-bit u whose low and
// high words are numbers offset + 2i and offset + 2i + 1; range 0 stands for 2^64. Sums wrap in
// the unsigned type, as int64 does.
template <typename T>
[[kernel]] void random_integers(device T* out [[buffer(0)]], constant RandomParams& p [[buffer(1)]],
                                uint t [[thread_position_in_grid]]) {
  if (t >= p.blocks) return;
  const uint64_t counter = p.first_block + t;
  const orchard::Philox4 r = orchard::philox_block(p.seed, counter);
  for (uint j = 0; j < 4; ++j) {
    const uint64_t d = counter * 4 + j - p.offset;  // an element's first number when even
    if ((d & 1) != 0 || d / 2 >= p.count) continue;
    const uint32_t high = j < 3 ? r.v[j + 1] : orchard::philox_block(p.seed, counter + 1).v[0];
    const uint64_t u = uint64_t(r.v[j]) | (uint64_t(high) << 32);
    out[d / 2] = T(uint64_t(p.low) + (p.range == 0 ? u : u % p.range));
  }
}

// Dropout (Runtime::dropout): out[i] = in[i] * keep_scale where number offset + i is at least
// drop_threshold, else in[i] * 0, in float as src/cpu/random.cpp computes it.
template <typename T>
[[kernel]] void random_dropout(device const T* in [[buffer(0)]], device T* out [[buffer(1)]],
                               constant RandomParams& p [[buffer(2)]], uint t [[thread_position_in_grid]]) {
  if (t >= p.blocks) return;
  const uint64_t counter = p.first_block + t;
  const orchard::Philox4 r = orchard::philox_block(p.seed, counter);
  for (uint j = 0; j < 4; ++j) {
    const uint64_t i = counter * 4 + j - p.offset;
    if (i < p.count) out[i] = T(float(in[i]) * (r.v[j] >= p.drop_threshold ? p.keep_scale : 0.0f));
  }
}

#define ORCHARD_RANDOM(name, T, bits)                                        \
  ORCHARD_KERNEL("random_uniform_" #name, random_uniform, T, bits)           \
  ORCHARD_KERNEL("random_normal_" #name, random_normal, T)                   \
  ORCHARD_KERNEL("random_dropout_" #name, random_dropout, T)
ORCHARD_RANDOM(float16, half, 11)
ORCHARD_RANDOM(bfloat16, bfloat, 8)
ORCHARD_RANDOM(float32, float, 24)
ORCHARD_KERNEL("random_integers_int64", random_integers, int64_t)
