// What the FlashAttention kernels (src/cuda/kernels/flash_attention_*.cu) share: 16-bit tiles staged
// in shared memory, rows padded to D + 8 elements so that the 8 rows an ldmatrix phase reads fall in
// distinct banks.
#pragma once

#include "tensor_core.cuh"

constexpr float kLn2 = 0.6931471805599453f;
constexpr float kLog2e = 1.4426950408889634f;

// Starts copying rows row0..row0 + Rows - 1 of a [rows, D] matrix into a [Rows][D + 8] shared tile;
// rows at or past `rows` become zeros. Every one of the CTA's Threads threads takes part.
template <int Rows, int D, int Threads>
__device__ __forceinline__ void load_tile(smem_addr tile, const u16* src, long long row0, long long rows, int tid) {
  constexpr int kChunks = D / 8;  // of 16 bytes a row
#pragma unroll
  for (int c = tid; c < Rows * kChunks; c += Threads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = row0 + r < rows;
    cp_async_16(tile + u32(r * (D + 8) + col) * 2, src + (valid ? (row0 + r) * D + col : 0), valid);
  }
}
