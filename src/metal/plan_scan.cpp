// Plans for cumulative sums (kernels in metal/scan.metal): one thread per line along the summed dim,
// adding in order, so the result is deterministic and the CPU's. Parallelism is outer * inner lines;
// 256 threads per threadgroup; launches stay under 2^31 threads.
#include <algorithm>

#include "launch_split.h"
#include "plans.h"
#include "sort_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;

std::string kernel(DType t) { return std::string("scan_cumsum_") + dtype_name(t); }

}  // namespace

Launches plan_cumsum(const CumsumArgs& args) {
  const auto& [in, out, outer, n, inner] = args;
  Launches launches;
  const int64_t lines = outer * inner;
  if (lines * n == 0) return launches;
  ScanParams p{};
  p.n = n;
  p.inner = inner;
  for (int64_t start = 0; start < lines; start += kMaxLaunchThreads) {
    p.start = start;
    p.count = std::min(kMaxLaunchThreads, lines - start);
    launches.push_back(Launch(kernel(in.dtype()))
                           .buffer(out)
                           .buffer(in)
                           .constants(p)
                           .work(uint64_t(p.count) * uint64_t(n) * kWorkPerThread)
                           .grid({groups_for(p.count, kThreads)}, {kThreads}));
  }
  return launches;
}

void scan_kernel_names(std::vector<std::string>& names) {
  for (DType t : kMetalDTypes)
    if (t != DType::Bool) names.push_back(kernel(t));
}

}  // namespace orchard::metal
