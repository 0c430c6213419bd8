// Runs an ElementwiseLoop as rows: the innermost dim is a row, handed to a kernel as typed base
// pointers plus per-operand element strides; rows are split across the thread pool.
#pragma once

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

// fn(const Row<N>&) for every row of the loop; N must equal loop.operands.size().
template <size_t N, typename Fn>
void for_each_row(const ElementwiseLoop& loop, Fn&& fn) {
  const int64_t ndim = int64_t(loop.shape.size());
  const int64_t inner = ndim ? loop.shape.back() : 1;
  const int64_t total = loop.numel();
  if (total == 0) return;
  const int64_t rows = total / inner;
  std::array<int64_t, N> isz;
  for (size_t k = 0; k < N; ++k) isz[k] = int64_t(itemsize(loop.operands[k].dtype));

  parallel_for(rows, grain_for(inner), [&](int64_t r0, int64_t r1) {
    // Multi-index of row r0 over the outer dims, then an odometer from there.
    std::vector<int64_t> idx(ndim > 1 ? ndim - 1 : 0);
    Row<N> row;
    row.n = inner;
    for (size_t k = 0; k < N; ++k) {
      row.ptr[k] = loop.operands[k].data();
      row.stride[k] = ndim ? loop.operands[k].strides.back() : 0;
    }
    for (int64_t d = ndim - 2, rem = r0; d >= 0; --d) {
      idx[d] = rem % loop.shape[d];
      rem /= loop.shape[d];
      for (size_t k = 0; k < N; ++k) row.ptr[k] += idx[d] * loop.operands[k].strides[d] * isz[k];
    }
    for (int64_t r = r0; r < r1; ++r) {
      fn(row);
      for (int64_t d = ndim - 2; d >= 0; --d) {
        for (size_t k = 0; k < N; ++k) row.ptr[k] += loop.operands[k].strides[d] * isz[k];
        if (++idx[d] < loop.shape[d]) break;
        for (size_t k = 0; k < N; ++k) row.ptr[k] -= loop.shape[d] * loop.operands[k].strides[d] * isz[k];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace orchard::cpu
