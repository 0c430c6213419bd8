// Cumulative sums (Runtime::cumsum) as src/cpu/sort.cpp computes them: one thread per line along
// the summed dim, adding in order in the compute type (float for 16-bit floats; integers wrap).
#include "common.h"
#include "sort_params.h"

template <typename T>
[[kernel]] void scan_cumsum(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                            constant ScanParams& p [[buffer(2)]], uint t [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  typedef typename Wrapping<C>::type W;
  if (t >= p.count) return;
  const int64_t line = p.start + t;
  const int64_t o = line / p.inner;
  const int64_t base = o * p.n * p.inner + (line - o * p.inner);
  C acc = C(0);
  for (int64_t k = 0; k < p.n; ++k) {
    acc = C(W(acc) + W(C(in[base + k * p.inner])));
    out[base + k * p.inner] = T(acc);
  }
}

// Every dtype but bool, which the front-end sums as int64 (as PyTorch does).
#define ORCHARD_SCAN(name, T) ORCHARD_KERNEL("scan_cumsum_" #name, scan_cumsum, T)
ORCHARD_SCAN(int32, int32_t)
ORCHARD_SCAN(int64, int64_t)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_SCAN)
