// Sorting (Runtime::sort) and cumulative sums (Runtime::cumsum).
#include <algorithm>
#include <numeric>

#include "cpu_runtime.h"
#include "parallel.h"

namespace orchard::cpu {

namespace {

// The sort order of runtime.h's SortArgs: NaN above every number (x != x is false for integers).
template <typename C>
bool sorts_before(C a, C b, bool descending) {
  const bool a_nan = a != a, b_nan = b != b;
  if (descending) return (a_nan && !b_nan) || a > b;
  return (!a_nan && b_nan) || a < b;
}

}  // namespace

void CpuRuntime::sort(const SortArgs& a) {
  const auto& [in, values, indices, rows, n, k, descending] = a;
  ORCHARD_DISPATCH(in.dtype(), {
    using C = compute_t<T>;
    const T* x = in.data_as<T>();
    T* v = values.data_as<T>();
    int64_t* idx = indices.data_as<int64_t>();
    parallel_for(rows, grain_for(n * 16), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = x + r * n;
        int64_t* order = idx + r * n;
        std::iota(order, order + n, int64_t(0));
        if (k < n) {
          // Ties broken by position order the keys totally, so the prefix is the stable sort's.
          std::partial_sort(order, order + k, order + n, [&](int64_t i, int64_t j) {
            const C a = C(row[i]), b = C(row[j]);
            return sorts_before<C>(a, b, descending) || (!sorts_before<C>(b, a, descending) && i < j);
          });
        } else {
          std::stable_sort(order, order + n, [&](int64_t i, int64_t j) {
            return sorts_before<C>(C(row[i]), C(row[j]), descending);
          });
        }
        for (int64_t j = 0; j < n; ++j) v[r * n + j] = row[order[j]];
      }
    });
  });
}

void CpuRuntime::cumsum(const CumsumArgs& a) {
  const auto& [in, out, outer, n, inner] = a;
  ORCHARD_DISPATCH(in.dtype(), {
    using C = compute_t<T>;
    const T* x = in.data_as<T>();
    T* y = out.data_as<T>();
    // One line along n per item, summed in order (as metal/sort.metal's kernel does).
    parallel_for(outer * inner, grain_for(n), [&](int64_t l0, int64_t l1) {
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t base = (l / inner) * n * inner + l % inner;
        C acc = C(0);
        for (int64_t k = 0; k < n; ++k) {
          acc = C(wrapping_t<C>(acc) + wrapping_t<C>(C(x[base + k * inner])));
          y[base + k * inner] = T(acc);
        }
      }
    });
  });
}

}  // namespace orchard::cpu
