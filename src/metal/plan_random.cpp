// Plans for random fills, random integers and dropout (kernels in metal/random.metal), bit-identical to the CPU's for
// the same (seed, offset). The stream numbers a launch reads, offset .. offset + numel (x2 for
// normal), are covered by one thread per Philox block of four, 256 threads per threadgroup; launches
// stay under 2^31 threads.
#include <algorithm>
#include <functional>

#include "launch_split.h"
#include "philox.h"
#include "plans.h"
#include "random_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;
constexpr uint64_t kMaxLaunchBlocks = kMaxLaunchThreads;  // one thread per block of four numbers

std::string kernel(const char* op, DType t) { return std::string("random_") + op + "_" + dtype_name(t); }

// Launches of `kernel` over the `numbers` stream numbers from p.offset on; bind adds the buffers
// that come before the constants.
Launches block_launches(const std::string& kernel, RandomParams p, uint64_t numbers,
                        const std::function<void(Launch&)>& bind) {
  Launches launches;
  if (numbers == 0) return launches;
  const uint64_t first = p.offset / 4, last = (p.offset + numbers - 1) / 4;  // blocks holding the numbers
  for (uint64_t block = first; block <= last; block += kMaxLaunchBlocks) {
    p.first_block = block;
    p.blocks = std::min(kMaxLaunchBlocks, last - block + 1);
    Launch launch(kernel);
    bind(launch);
    launches.push_back(launch.constants(p).grid({groups_for(int64_t(p.blocks), kThreads)}, {kThreads}));
  }
  return launches;
}

}  // namespace

Launches plan_random(const RandomArgs& args) {
  const auto& [out, normal, seed, offset] = args;
  check_float_dtype(out.dtype(), "random fill");
  RandomParams p{};
  p.seed = seed;
  p.offset = offset;
  p.count = uint64_t(out.numel());
  return block_launches(kernel(normal ? "normal" : "uniform", out.dtype()), p, p.count * (normal ? 2 : 1),
                        [&](Launch& l) { l.buffer(out); });
}

Launches plan_random_integers(const RandomIntegersArgs& args) {
  const auto& [out, low, range, seed, offset] = args;
  RandomParams p{};
  p.seed = seed;
  p.offset = offset;
  p.count = uint64_t(out.numel());
  p.low = low;
  p.range = range;
  return block_launches("random_integers_int64", p, p.count * 2, [&](Launch& l) { l.buffer(out); });
}

Launches plan_dropout(const DropoutArgs& args) {
  const auto& [in, out, p, seed, offset] = args;
  check_float_dtype(out.dtype(), "dropout");
  RandomParams rp{};
  rp.seed = seed;
  rp.offset = offset;
  rp.count = uint64_t(out.numel());
  // As src/cpu/random.cpp computes them.
  rp.drop_threshold = dropout_threshold(float(p));
  rp.keep_scale = 1.0f / (1.0f - float(p));
  return block_launches(kernel("dropout", out.dtype()), rp, rp.count, [&](Launch& l) { l.buffer(in).buffer(out); });
}

void random_kernel_names(std::vector<std::string>& names) {
  for (const char* op : {"uniform", "normal", "dropout"})
    for (DType t : kFloatDTypes) names.push_back(kernel(op, t));
  names.push_back("random_integers_int64");
}

}  // namespace orchard::metal
