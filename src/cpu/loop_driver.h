// Runs an ElementwiseLoop as rows: the innermost dim is a row, handed to a kernel as typed base
// pointers plus per-operand element strides; rows are split across the thread pool.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "parallel.h"
#include "runtime.h"

namespace orchard::cpu {

template <size_t N>
struct Row {
  std::array<char*, N> ptr;
  std::array<int64_t, N> stride;  // in elements of each operand's dtype
  int64_t n;
};

// fn(const Row<N>&) for every row of the loop; N must equal loop.operands.size(). When there are
// fewer rows than threads (a contiguous tensor is a single row), rows are cut into pieces that fn
// sees as rows of their own, so every large loop spreads across the pool.
template <size_t N, typename Fn>
void for_each_row(const ElementwiseLoop& loop, Fn&& fn) {
  const int64_t ndim = int64_t(loop.shape.size());
  const int64_t inner = ndim ? loop.shape.back() : 1;
  const int64_t total = loop.numel();
  if (total == 0) return;
  const int64_t rows = total / inner;
  const int64_t threads = num_threads();
  int64_t cuts = rows >= threads ? 1 : std::clamp<int64_t>(inner / grain_for(1), 1, threads);
  // Pieces start on multiples of 64 elements, so vector loads stay aligned as in the whole row.
  const int64_t piece = (inner / cuts + 63) / 64 * 64;
  cuts = (inner + piece - 1) / piece;
  std::array<int64_t, N> isz;
  for (size_t k = 0; k < N; ++k) isz[k] = int64_t(itemsize(loop.operands[k].dtype));

  parallel_for(rows * cuts, grain_for(piece), [&](int64_t p0, int64_t p1) {
    // Multi-index of the first piece's row over the outer dims, then an odometer from there.
    std::vector<int64_t> idx(ndim > 1 ? ndim - 1 : 0);
    std::array<char*, N> base;
    Row<N> row;
    for (size_t k = 0; k < N; ++k) {
      base[k] = loop.operands[k].data();
      row.stride[k] = ndim ? loop.operands[k].strides.back() : 0;
    }
    for (int64_t d = ndim - 2, rem = p0 / cuts; d >= 0; --d) {
      idx[d] = rem % loop.shape[d];
      rem /= loop.shape[d];
      for (size_t k = 0; k < N; ++k) base[k] += idx[d] * loop.operands[k].strides[d] * isz[k];
    }
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = p % cuts;
      if (c == 0 && p != p0) {  // the next row
        for (int64_t d = ndim - 2; d >= 0; --d) {
          for (size_t k = 0; k < N; ++k) base[k] += loop.operands[k].strides[d] * isz[k];
          if (++idx[d] < loop.shape[d]) break;
          for (size_t k = 0; k < N; ++k) base[k] -= loop.shape[d] * loop.operands[k].strides[d] * isz[k];
          idx[d] = 0;
        }
      }
      row.n = std::min(piece, inner - c * piece);
      for (size_t k = 0; k < N; ++k) row.ptr[k] = base[k] + c * piece * row.stride[k] * isz[k];
      fn(row);
    }
  });
}

}  // namespace orchard::cpu
