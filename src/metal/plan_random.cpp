// Plans for random fills (kernels in metal/random.metal): uniform [0, 1) or standard normal values
// bit-identical to the CPU's for the same (seed, offset). The stream numbers the fill reads,
// offset .. offset + numel (x2 for normal), are covered by one thread per Philox block of four, 256
// threads per threadgroup; launches stay under 2^31 threads.
#include <algorithm>

#include "plans.h"
#include "random_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;
constexpr uint64_t kMaxLaunchThreads = uint64_t(1) << 31;

const DType kFloatDTypes[] = {DType::Float16, DType::BFloat16, DType::Float32};

std::string kernel(bool normal, DType t) {
  return std::string(normal ? "random_normal_" : "random_uniform_") + dtype_name(t);
}

}  // namespace

Launches plan_random(const Tensor& out, bool normal, uint64_t seed, uint64_t offset) {
  const DType t = out.dtype();
  ORCHARD_CHECK(t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32, RuntimeError,
                "metal: random fills need a float16, bfloat16 or float32 tensor, got ", dtype_name(t));
  Launches launches;
  const uint64_t count = uint64_t(out.numel());
  if (count == 0) return launches;
  const uint64_t numbers = count * (normal ? 2 : 1);
  const uint64_t first = offset / 4, last = (offset + numbers - 1) / 4;  // blocks holding the numbers
  RandomParams p{};
  p.seed = seed;
  p.offset = offset;
  p.count = count;
  for (uint64_t block = first; block <= last; block += kMaxLaunchThreads) {
    p.first_block = block;
    p.blocks = std::min(kMaxLaunchThreads, last - block + 1);
    launches.push_back(
        Launch(kernel(normal, t)).buffer(out).constants(p).grid({groups_for(int64_t(p.blocks), kThreads)}, {kThreads}));
  }
  return launches;
}

void random_kernel_names(std::vector<std::string>& names) {
  for (bool normal : {false, true})
    for (DType t : kFloatDTypes) names.push_back(kernel(normal, t));
}

}  // namespace orchard::metal
