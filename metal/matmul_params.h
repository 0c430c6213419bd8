// Launch parameters and tile geometry of metal/matmul.metal, shared with src/metal/plan_matmul.cpp
// (which explains the choice of tile sizes).
#pragma once

#include "params.h"

// The tiled float kernel: one threadgroup computes a TILE_M x TILE_N block of one output matrix,
// stepping through K by TILE_K; its four simdgroups each own a 16 x 16 quarter (2 x 2 8x8
// accumulators). Tiles of a and b are staged in the input dtype (2 or 4 bytes an element), their
// rows padded by TILE_PAD_BYTES; the output is staged as float.
#define ORCHARD_MATMUL_TILE_M 32
#define ORCHARD_MATMUL_TILE_N 32
#define ORCHARD_MATMUL_TILE_K 16
#define ORCHARD_MATMUL_TILE_PAD_BYTES 16
#define ORCHARD_MATMUL_THREADS 128
// Row pitch, in elements of `bytes` bytes, of the staged A tile [TILE_M][A_LD] and B tile
// [TILE_K][B_LD] (the output tile is [TILE_M][TILE_N] floats).
#define ORCHARD_MATMUL_A_LD(bytes) (ORCHARD_MATMUL_TILE_K + ORCHARD_MATMUL_TILE_PAD_BYTES / (bytes))
#define ORCHARD_MATMUL_B_LD(bytes) (ORCHARD_MATMUL_TILE_N + ORCHARD_MATMUL_TILE_PAD_BYTES / (bytes))

// The integer kernel: one thread per output element, NAIVE_X x NAIVE_Y threads per threadgroup.
#define ORCHARD_MATMUL_NAIVE_X 16
#define ORCHARD_MATMUL_NAIVE_Y 16

ORCHARD_PARAMS_BEGIN

// out[z] = a[z] @ b[z] (or out[z] += a[z] @ b[z] with accumulate) for z < batch (the grid's z), out
// contiguous [batch, m, n]. Strides are in elements: {batch, row, column}; a batch stride of 0
// broadcasts that operand.
struct MatmulParams {
  int64_t m, n, k;
  int64_t a_strides[3];  // a is [batch, m, k]
  int64_t b_strides[3];  // b is [batch, k, n]
  uint32_t a_k_unit;     // 1: a's unit stride runs along k (row-major), so tiles load along rows
  uint32_t b_n_unit;     // 1: b's unit stride runs along n (row-major)
  uint32_t accumulate;   // 1: out's values are added to the product before it rounds to out's dtype
};

ORCHARD_PARAMS_END
