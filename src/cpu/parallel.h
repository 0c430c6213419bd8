// A small persistent thread pool for the CPU kernels. Portable (no OpenMP, which Apple's clang
// lacks). One parallel region runs at a time; calls made from inside a region, or while another
// thread holds the pool, run inline, so nesting and concurrent Python threads are safe.
#pragma once

#include <cstdint>
#include <functional>

namespace orchard::cpu {

int num_threads();
void set_num_threads(int n);  // 1 disables threading; default: hardware threads, or ORCHARD_NUM_THREADS

// Runs fn(begin, end) over [0, n) in contiguous chunks of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Grain that gives each task about `work` elementary operations when one item costs `per_item`.
inline int64_t grain_for(int64_t per_item, int64_t work = 32768) {
  return per_item <= 0 ? work : (work + per_item - 1) / per_item;
}

}  // namespace orchard::cpu
