// What the FlashAttention kernels (src/cuda/kernels/flash_attention_*.cu) share: 16-bit tiles staged
// in shared memory, rows padded to D + 8 elements so that the 8 rows an ldmatrix phase reads fall in
// distinct banks.
#pragma once

#include "tensor_core.cuh"

constexpr float kLn2 = 0.6931471805599453f;
constexpr float kLog2e = 1.4426950408889634f;

// The CTA of a kernel over blocks of Rows query rows (grid: blocks, query heads, batch): its head
// (batch * Hq + query head), the kv head it reads, its first row (the last blocks first: they see the
// most keys when causal, so they start early), and the keys its rows see.
template <int Rows> struct QueryBlock {
  long long head, kv_head, r0, key_end;
  __device__ QueryBlock(u32 heads_q, u32 heads_kv, long long lk, u32 causal)
      : head((long long)blockIdx.z * heads_q + blockIdx.y),
        kv_head((long long)blockIdx.z * heads_kv + blockIdx.y / (heads_q / heads_kv)),
        r0((long long)(gridDim.x - 1 - blockIdx.x) * Rows),
        key_end(causal ? min(lk, r0 + Rows) : lk) {}
};

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
