// Sorting, cumulative sums and random integers: the Metal plans' launch structure, and the emulated
// Metal kernels against the CPU's, element for element (the Python suite compares both with PyTorch).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops.h"
#include "plans.h"
#include "runtime.h"

using namespace orchard;

namespace {

// A tensor's values as int64 or float64, read on the CPU.
template <typename T>
std::vector<T> values_of(const Tensor& t) {
  Tensor c = t.to(Device::CPU).to(dtype_of<T>::value).contiguous();
  return std::vector<T>(c.data_as<T>(), c.data_as<T>() + c.numel());
}

// Rows of few distinct values (ties), with NaN and infinities.
Tensor tied_rows(int64_t rows, int64_t n) {
  Tensor t = empty({rows, n}, DType::Float32, Device::CPU);
  float* p = t.data_as<float>();
  const float specials[] = {NAN, INFINITY, -INFINITY, -0.0f};
  for (int64_t i = 0; i < rows * n; ++i) p[i] = i % 7 == 3 ? specials[(i / 7) % 4] : float((i * 37) % 5) - 2.0f;
  return t;
}

}  // namespace

TEST(MetalPlans, SortRunsTheBitonicStepsOfTheRowPaddedToAPowerOfTwo) {
  for (auto [n, steps] : {std::pair<int64_t, size_t>{1, 0}, {2, 1}, {5, 6}, {8, 6}, {9, 10}}) {
    Tensor in = zeros({3, n}, DType::Float32, Device::Metal);
    Tensor values = empty({3, n}, DType::Float32, Device::Metal), indices = empty({3, n}, DType::Int64, Device::Metal);
    const metal::Launches launches = metal::plan_sort({in, values, indices, 3, n, n, false});
    ASSERT_EQ(launches.size(), steps + 1) << n;  // sort_init, then the network
    EXPECT_EQ(launches[0].kernel, "sort_init_float32");
    for (size_t i = 1; i < launches.size(); ++i) EXPECT_EQ(launches[i].kernel, "sort_step_float32");
  }
}

TEST(MetalRuntime, SortAndCumsumMatchTheCpuOnRowsOfAnyLength) {
  if (!has_runtime(Device::Metal)) GTEST_SKIP() << "no Metal runtime in this build";
  for (int64_t n : {1, 2, 3, 7, 33, 100}) {
    Tensor x = tied_rows(4, n);
    for (bool descending : {false, true}) {
      auto [cv, ci] = sort(x, -1, descending);
      auto [mv, mi] = sort(x.to(Device::Metal), -1, descending);
      EXPECT_EQ(values_of<int64_t>(ci), values_of<int64_t>(mi)) << n;
      const std::vector<double> a = values_of<double>(cv), b = values_of<double>(mv);
      for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
    }
    Tensor ints = cast(tied_rows(3, n), DType::Int64);
    EXPECT_EQ(values_of<int64_t>(cumsum(ints, 1)), values_of<int64_t>(cumsum(ints.to(Device::Metal), 1))) << n;
  }
}

TEST(MetalRuntime, RandomIntegersMatchTheCpuBitForBit) {
  if (!has_runtime(Device::Metal)) GTEST_SKIP() << "no Metal runtime in this build";
  for (uint64_t offset : {0, 1, 2, 6}) {  // element pairs that straddle Philox blocks too
    for (uint64_t range : {uint64_t(10), uint64_t(1) << 40, uint64_t(0)}) {
      Tensor c = empty({37}, DType::Int64, Device::CPU), m = empty({37}, DType::Int64, Device::Metal);
      runtime_for(Device::CPU).random_integers({c, -5, range, 42, offset});
      runtime_for(Device::Metal).random_integers({m, -5, range, 42, offset});
      EXPECT_EQ(values_of<int64_t>(c), values_of<int64_t>(m)) << offset << " " << range;
    }
  }
}
