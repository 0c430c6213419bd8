// Splitting loops that are too big for one launch: grids stay under 2^31 threads (Metal's limit
// on a grid dimension, and the 32-bit thread ids of the kernels) and ORCHARD_METAL_MAX_DIMS dims.
#pragma once

#include <algorithm>
#include <cstdint>

#include "params.h"
#include "plans.h"

namespace orchard::metal {

constexpr int64_t kMaxLaunchThreads = int64_t(1) << 31;

// Calls f on pieces of `loop` that each fit one launch. Rows of dim 0 are split off into loops of
// their own as needed. A Loop has `shape` and numel(); shift(piece, r, drop_dim0) moves each
// operand of `piece` (a copy of `loop`) to row r, dropping dim 0 from its strides when asked.
template <class Loop, class Shift, class F>
void for_each_piece(const Loop& loop, const Shift& shift, const F& f) {
  const int64_t numel = loop.numel();
  const size_t ndim = loop.shape.size();
  if (ndim <= ORCHARD_METAL_MAX_DIMS && numel <= kMaxLaunchThreads) return f(loop);
  const int64_t rows = loop.shape[0], row = numel / rows;
  const bool whole_rows = ndim <= ORCHARD_METAL_MAX_DIMS && row <= kMaxLaunchThreads;
  const int64_t step = whole_rows ? kMaxLaunchThreads / row : 1;
  for (int64_t r = 0; r < rows; r += step) {
    Loop piece = loop;
    if (whole_rows)
      piece.shape[0] = std::min(step, rows - r);
    else  // one row at a time, without dim 0
      piece.shape.erase(piece.shape.begin());
    shift(piece, r, !whole_rows);
    for_each_piece(piece, shift, f);
  }
}

// Launches of kernel `name` over `total` threads, one per element, `threads` a threadgroup, split
// into pieces of at most kMaxLaunchThreads: each piece's params p say its first element and count
// (p.start, p.count). bind adds the buffers, before p.
template <typename Params, typename Bind>
void split_launches(Launches& launches, const std::string& name, Params p, int64_t total, uint32_t threads,
                    const Bind& bind) {
  for (int64_t start = 0; start < total; start += kMaxLaunchThreads) {
    p.start = start;
    p.count = std::min(kMaxLaunchThreads, total - start);
    Launch launch(name);
    bind(launch);
    launches.push_back(launch.constants(p).grid({groups_for(p.count, threads)}, {threads}));
  }
}

}  // namespace orchard::metal
