// Launch parameters of metal/index.metal, shared with src/metal/plan_index.cpp.
#pragma once

#include "params.h"

ORCHARD_PARAMS_BEGIN

// index_select of src viewed as [outer, n, inner] into out [outer, m, inner] (index has m
// entries). Thread t of the launch writes out element start + t.
struct IndexSelectParams {
  int64_t n, m, inner;
  int64_t start, count;
};

// index_add into out viewed as [outer, n, inner] from src [outer, m, inner], over the entries of
// index sorted stably (keys, and order: their positions in index). Thread t of the launch takes
// element start + t of [outer, m, inner], whose middle coordinate is a position in keys.
struct IndexAddParams {
  int64_t n, m, inner;
  int64_t start, count;
};

// gather / scatter_add: a loop of `numel` positions over a `ndim`-dim shape (dim 0 outermost; the
// plans drop size-1 dims and merge dims where they can). strides[0] are the strides of the full
// tensor (gather's src, scatter_add's out) and strides[1] those of index (and of scatter_add's src,
// which has index's shape), both contiguous tensors, in elements. The indexed dim contributes
// index value * dim_stride to the full tensor's offset instead of its coordinate.
// - gather loops over every position of index (its stride in strides[0] is 0), which index and
//   out address linearly.
// - scatter_add loops over the positions of every dim but the indexed one: each thread walks its
//   line of dim_size index entries, index_dim_stride apart, in order.
struct IndexLoop {
  int64_t shape[ORCHARD_METAL_MAX_DIMS];
  int64_t strides[2][ORCHARD_METAL_MAX_DIMS];
  int64_t numel;
  int64_t dim_stride;
  int64_t dim_size;
  int64_t index_dim_stride;
  uint32_t ndim;
  uint32_t pad;
};

ORCHARD_PARAMS_END
