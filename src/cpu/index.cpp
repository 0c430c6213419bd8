#include <algorithm>
#include <vector>

#include "cpu_runtime.h"
#include "parallel.h"

namespace orchard::cpu {

namespace {

// Calls fn(p, f) for every element of the contiguous `index` (whose shape is that of the gathered
// tensor): p is its position, f the offset in the contiguous `full` tensor that it selects. full
// may be larger than index in dims other than `dim`. Work is split over the lines along `dim` and
// each line is walked by one thread in order, so scatter_add's updates of an element never race.
template <typename Fn>
void for_each_indexed(const Tensor& full, const Tensor& index, int64_t dim, const Fn& fn) {
  const Shape& shape = index.shape();
  const Strides fs = contiguous_strides(full.shape());
  const int64_t ndim = index.ndim(), m = shape[dim];
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= shape[d];
  for (int64_t d = dim + 1; d < ndim; ++d) inner *= shape[d];

  // Offsets in full of the coordinates after dim; not needed when full has index's sizes there.
  std::vector<int64_t> inner_offset;
  if (!std::equal(shape.begin() + dim + 1, shape.end(), full.shape().begin() + dim + 1)) {
    inner_offset = {0};
    for (int64_t d = dim + 1; d < ndim; ++d) {
      std::vector<int64_t> next;
      next.reserve(inner_offset.size() * shape[d]);
      for (int64_t base : inner_offset)
        for (int64_t j = 0; j < shape[d]; ++j) next.push_back(base + j * fs[d]);
      inner_offset = std::move(next);
    }
  }
  auto outer_offset = [&](int64_t o) {
    int64_t off = 0;
    for (int64_t d = dim - 1; d >= 0; --d) {
      off += (o % shape[d]) * fs[d];
      o /= shape[d];
    }
    return off;
  };

  const int64_t* idx = index.data_as<int64_t>();
  parallel_for(outer * inner, grain_for(m), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1;) {
      const int64_t o = c / inner, i0 = c % inner, i1 = std::min(inner, i0 + (c1 - c));
      const int64_t base = outer_offset(o);
      for (int64_t k = 0; k < m; ++k) {
        const int64_t p = (o * m + k) * inner;
        for (int64_t i = i0; i < i1; ++i)
          fn(p + i, base + idx[p + i] * fs[dim] + (inner_offset.empty() ? i : inner_offset[i]));
      }
      c += i1 - i0;
    }
  });
}

}  // namespace

void CpuRuntime::index_select(const IndexSelectArgs& a) {
  const auto& [src, index, out, outer, inner] = a;
  if (out.numel() == 0) return;
  const int64_t n = src.numel() / (outer * inner), m = index.numel();
  const int64_t* idx = index.data_as<int64_t>();
  ORCHARD_DISPATCH(src.dtype(), {
    const T* s = src.data_as<T>();
    T* o = out.data_as<T>();
    parallel_for(outer * m, grain_for(inner), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) std::copy_n(s + ((r / m) * n + idx[r % m]) * inner, inner, o + r * inner);
    });
  });
}

void CpuRuntime::gather(const GatherArgs& a) {
  const auto& [src, index, out, dim] = a;
  ORCHARD_DISPATCH(src.dtype(), {
    const T* s = src.data_as<T>();
    T* o = out.data_as<T>();
    for_each_indexed(src, index, dim, [&](int64_t p, int64_t f) { o[p] = s[f]; });
  });
}

void CpuRuntime::scatter_add(const GatherArgs& a) {
  const auto& [src, index, out, dim] = a;
  ORCHARD_DISPATCH(out.dtype(), {
    T* o = out.data_as<T>();
    const T* s = src.data_as<T>();
    for_each_indexed(out, index, dim, [&](int64_t p, int64_t f) { o[f] = T(compute_t<T>(o[f]) + compute_t<T>(s[p])); });
  });
}

// Threads split the columns (o, j); each walks index in order, so updates of an element never race.
void CpuRuntime::index_add(const IndexAddArgs& a) {
  const auto& [src, index, out, outer, inner] = a;
  const int64_t m = index.numel(), n = out.numel() / (outer * inner);
  const int64_t* idx = index.data_as<int64_t>();
  ORCHARD_DISPATCH(out.dtype(), {
    T* o = out.data_as<T>();
    const T* s = src.data_as<T>();
    parallel_for(outer * inner, grain_for(m), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1;) {
        const int64_t row = c / inner, j0 = c % inner, j1 = std::min(inner, j0 + (c1 - c));
        for (int64_t i = 0; i < m; ++i) {
          T* dst = o + (row * n + idx[i]) * inner;
          const T* from = s + (row * m + i) * inner;
          for (int64_t j = j0; j < j1; ++j) dst[j] = T(compute_t<T>(dst[j]) + compute_t<T>(from[j]));
        }
        c += j1 - j0;
      }
    });
  });
}

}  // namespace orchard::cpu
