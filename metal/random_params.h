// Launch parameters of metal/random.metal, shared with src/metal/plan_random.cpp.
#pragma once

#include "params.h"

ORCHARD_PARAMS_BEGIN

// `count` elements from the Philox stream keyed by `seed`: element i takes number offset + i
// (uniform, dropout) or numbers offset + 2i and offset + 2i + 1 (normal, integers). Thread t of the launch
// computes the four numbers of block first_block + t and writes the elements that start in it.
struct RandomParams {
  uint64_t seed;
  uint64_t offset;
  uint64_t count;
  uint64_t first_block;
  uint64_t blocks;          // threads of this launch
  uint32_t drop_threshold;  // dropout only: dropout_threshold(p)
  float keep_scale;         // dropout only: 1 / (1 - p)
  int64_t low;              // integers only: low + (u % range), range 0 standing for 2^64
  uint64_t range;
};

ORCHARD_PARAMS_END
