// Launch parameters of metal/attention.metal, shared with src/metal/plan_attention.cpp.
#pragma once

#include "params.h"

// The block geometry of every head-dimension tier (the reasoning is in src/metal/plan_attention.cpp,
// which also checks each against the 32 KiB of threadgroup memory). A head dim D runs in the
// smallest tier DT >= D; the kernels loop over the ceil(D / 8) 8-wide column blocks that D needs,
// so a smaller D in a tier costs memory, not arithmetic.
//   M(DT, forward simdgroups, forward key block, dQ simdgroups, dQ key block,
//     dK/dV simdgroups, dK/dV query block, dQ and dK/dV stage K and V in one buffer)
// A simdgroup owns 8 query rows (forward, dQ) or 8 key rows (dK/dV); blocks are multiples of 8, and
// the dK/dV query block is at most 32 (one column per lane).
#define ORCHARD_ATTENTION_TIERS(M)           \
  M(32, 4, 64, 2, 64, 4, 32, false)          \
  M(64, 4, 32, 2, 32, 2, 32, false)          \
  M(96, 4, 16, 2, 16, 2, 16, false)          \
  M(128, 2, 16, 2, 8, 2, 8, false)           \
  M(192, 2, 8, 1, 8, 1, 8, false)            \
  M(256, 1, 8, 1, 8, 1, 8, true)

// attention_delta's tiles: a simdgroup stages 32 rows of O and of dO, 32 columns at a time, in rows
// padded to 33 elements so that lane r reading its row's column c hits its own bank.
#define ORCHARD_ATTENTION_DELTA_STRIDE 33

ORCHARD_PARAMS_BEGIN

// One FlashAttention problem: q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D], contiguous; lse [B, Hq, Lq].
// Scores are S = scale * q k^T + mask, -inf where masked (causal: col > row, top-left aligned).
struct AttentionKernelParams {
  int64_t mask_strides[4];  // of the additive float32 mask broadcast to [B, Hq, Lq, Lk], in elements
  uint64_t seed, offset;    // dropout: score (b, h, row, col) uses Philox number offset + ((b Hq + h) Lq + row) Lk + col
  int64_t lq, lk;
  uint32_t heads_q, heads_kv, group;  // group = heads_q / heads_kv
  uint32_t head_dim;
  uint32_t blocks;                    // query blocks (forward, dQ) of the launch's grid.x
  uint32_t causal, has_mask;
  uint32_t drop_threshold;  // attention_dropout_keep keeps number >= drop_threshold; 0: no dropout
  float scale;
  float keep_scale;         // 1 / (1 - dropout_p)
};

// D_i = rowsum(dout * out) over `rows` rows of `head_dim` elements.
struct AttentionRowsParams {
  int64_t rows;
  uint32_t head_dim;
  uint32_t pad;
};

ORCHARD_PARAMS_END
