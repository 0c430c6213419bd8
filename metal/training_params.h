// Launch parameters of the fused training kernels (metal/training.metal), shared with their plans
// (src/metal/plan_training.cpp). Fixed-width fields only, as in params.h.
#pragma once

#include "params.h"

ORCHARD_PARAMS_BEGIN

// A row-wise launch (layer norm forward and dx, cross-entropy forward): `rows` rows of `n` elements,
// each row handled by a team of `threads_per_row` threads (a multiple of the 32-wide simdgroup);
// a threadgroup holds threads_per_threadgroup / threads_per_row teams.
struct TrainingRowParams {
  int64_t rows;
  int64_t n;
  int64_t ignore_index;  // cross-entropy only
  float eps;             // layer norm forward only
  uint32_t threads_per_row;
};

// Column sums of the layer-norm weight and bias gradients over `rows` rows of `n` columns, split
// into row blocks of `rows_per_block` rows: thread (column c, block b) sums rows
// [b * rows_per_block, min(rows, (b + 1) * rows_per_block)). `blocks` partial sums per column are
// then added up by the `_reduce` kernel.
struct LayerNormColumnParams {
  int64_t rows;
  int64_t n;
  int64_t rows_per_block;
  int64_t blocks;
};

// Cross-entropy backward over `rows` rows of `classes` logits, one thread per logit.
struct CrossEntropyBackwardParams {
  int64_t rows;
  int64_t classes;
  int64_t ignore_index;
};

// One AdamW step over `n` elements; the constants are derived on the host exactly as the CPU kernel
// derives them (src/cpu/training.cpp).
struct AdamWStepParams {
  int64_t n;
  float beta1, beta2, eps;
  float decay;         // 1 - lr * weight_decay
  float step;          // lr / bias_correction1
  float inv_sqrt_bc2;  // 1 / sqrt(bias_correction2)
};

// Loss scaling's unscale and inf check over `n` elements of one gradient.
struct AmpUnscaleParams {
  int64_t n;
};

ORCHARD_PARAMS_END
