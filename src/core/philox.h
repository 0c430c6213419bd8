// Philox-4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11): a
// counter-based generator, so number n of a stream is computed from (key, n) alone, with no state
// carried between threads or kernels. Plain 32/64-bit integer arithmetic only, so the CPU kernels,
// FlashAttention dropout and Metal shaders can share this header and produce the same bits.
//
// Orchard's stream for a 64-bit seed: number n is lane n % 4 of the block at counter n / 4, with
// the counter in the low two words and the seed as the key.
#pragma once

#ifndef __METAL_VERSION__
#include <cstdint>
#endif

namespace orchard {

struct Philox4 {
  uint32_t v[4];
};

inline Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(0xD2511F53u) * ctr.v[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr.v[2];
    ctr = Philox4{{uint32_t(p1 >> 32) ^ ctr.v[1] ^ k0, uint32_t(p1), uint32_t(p0 >> 32) ^ ctr.v[3] ^ k1,
                   uint32_t(p0)}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

// The four numbers n = 4 * counter .. 4 * counter + 3 of the stream keyed by seed.
inline Philox4 philox_block(uint64_t seed, uint64_t counter) {
  return philox4x32_10(Philox4{{uint32_t(counter), uint32_t(counter >> 32), 0u, 0u}}, uint32_t(seed),
                       uint32_t(seed >> 32));
}

// Dropout with probability p in [0, 1) keeps what a stream number of at least floor(p * 2^32) stands
// for. (p * 2^32 is exact in float and the conversion floors it.)
inline uint32_t dropout_threshold(float p) { return uint32_t(p * 4294967296.0f); }

// FlashAttention dropout (p in [0, 1)): score (b, h, row, col) of a [B, H, Lq, Lk] attention is
// kept when number n = offset + ((b * H + h) * Lq + row) * Lk + col of the stream keyed by seed is
// at least dropout_threshold(p). Kernels that read all four numbers of a block may compute it once.
inline bool attention_dropout_keep(uint64_t seed, uint64_t n, float p) {
  return philox_block(seed, n / 4).v[n % 4] >= dropout_threshold(p);
}

// Reads the stream in order from number n, computing one block per four numbers.
struct PhiloxStream {
  uint64_t seed;
  uint64_t n;
  Philox4 block;

  PhiloxStream(uint64_t seed_, uint64_t n_) : seed(seed_), n(n_), block(philox_block(seed_, n_ / 4)) {}

  uint32_t next() {
    uint32_t r = block.v[n % 4];
    if (++n % 4 == 0) block = philox_block(seed, n / 4);
    return r;
  }
};

}  // namespace orchard
