// Plans for sorting (kernels in metal/sort.metal): sort_init copies the input into the values and
// numbers each row's positions, then a bitonic network sorts each row in place in the outputs, one
// launch per step, one thread per compare-exchange. The network is the variant whose first step in
// each stage compares mirrored positions (a "flip") and whose every comparator puts the smaller key
// first, so a row of any length n sorts as if padded to the next power of two with keys above all
// others: comparators reaching past n would leave such padding in place and are skipped. Each row
// has log2(n_pad) * (log2(n_pad) + 1) / 2 steps of n_pad / 2 comparators (O(n log^2 n) work, no
// scratch memory, every step fully parallel). 256 threads per threadgroup (streaming work);
// launches stay under 2^31 threads.
#include <algorithm>

#include "launch_split.h"
#include "plans.h"
#include "sort_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;

std::string kernel(const char* op, DType t) { return std::string("sort_") + op + "_" + dtype_name(t); }

}  // namespace

Launches plan_sort(const SortArgs& args) {
  const auto& [in, values, indices, rows, n, k, descending] = args;  // every row sorted whole, whatever k
  Launches launches;
  if (rows * n == 0) return launches;
  SortParams p{};
  p.n = n;
  p.descending = descending ? 1 : 0;
  split_launches(launches, kernel("init", in.dtype()), p, rows * n, kThreads,
                 [&](Launch& l) { l.buffer(values).buffer(indices).buffer(in); });
  int64_t padded = 1;
  while (padded < n) padded *= 2;
  p.pairs = padded / 2;
  const std::string step = kernel("step", in.dtype());
  auto run_step = [&](int64_t distance, bool flip) {
    p.distance = distance;
    p.flip = flip ? 1 : 0;
    split_launches(launches, step, p, rows * p.pairs, kThreads, [&](Launch& l) { l.buffer(values).buffer(indices); });
  };
  for (int64_t size = 2; size <= padded; size *= 2) {
    run_step(size / 2, true);
    for (int64_t distance = size / 4; distance >= 1; distance /= 2) run_step(distance, false);
  }
  return launches;
}

void sort_kernel_names(std::vector<std::string>& names) {
  for (const char* op : {"init", "step"})
    for (DType t : kMetalDTypes) names.push_back(kernel(op, t));
}

}  // namespace orchard::metal
