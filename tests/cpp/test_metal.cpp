// The Metal runtime on the emulator: every kernel a plan can request exists, the emulator's
// threadgroups, barriers, simdgroup functions and matrices behave as on a GPU and report misuse, and
// plans cover loops beyond what one launch addresses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "emulator.h"
#include "ops.h"
#include "plans.h"
#include "runtime.h"

using namespace orchard;
using metal::Launch;

namespace {

std::vector<float> values(const Tensor& t) {
  Tensor c = t.to(Device::CPU).to(DType::Float32).contiguous();
  return std::vector<float>(c.data_as<float>(), c.data_as<float>() + c.numel());
}

std::vector<float> iota(size_t n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

}  // namespace

TEST(MetalEmulator, EveryPlannedKernelIsInTheLibrary) {
  // The emulator's registry is the embedded library compiled as C++: the same ORCHARD_KERNEL lines.
  const std::vector<std::string> registered = metal_emu::kernel_names();
  const std::set<std::string> library(registered.begin(), registered.end());
  const std::vector<std::string> planned = metal::planned_kernel_names();
  EXPECT_GT(planned.size(), 100u);
  for (const std::string& name : planned) EXPECT_TRUE(library.count(name)) << "no kernel named " << name;
}

TEST(MetalEmulator, ThreadgroupMemoryAndBarriers) {
  std::vector<float> in = iota(3 * 64), out(in.size(), -1.0f);
  metal_emu::run(Launch("check_reverse_float32")
                     .buffer(out.data(), 0)
                     .buffer(in.data(), 0)
                     .threadgroup_memory(64 * sizeof(float))
                     .grid({3}, {64}));
  for (int g = 0; g < 3; ++g)
    for (int i = 0; i < 64; ++i) EXPECT_EQ(out[g * 64 + i], in[g * 64 + 63 - i]);
}

TEST(MetalEmulator, SimdgroupFunctions) {
  // 40 threads: a full simdgroup of 32 lanes and a partial one of 8.
  std::vector<float> in(40), out(5 * 40);
  for (int i = 0; i < 40; ++i) in[i] = float((i * 7) % 11);
  metal_emu::run(Launch("check_simd_float32").buffer(out.data(), 0).buffer(in.data(), 0).grid({1}, {40}));
  for (int i = 0; i < 40; ++i) {
    const int first = i / 32 * 32, lanes = i < 32 ? 32 : 8, lane = i - first;
    float sum = 0, max = in[first], prefix = 0;
    for (int l = 0; l < lanes; ++l) {
      sum += in[first + l];
      max = std::max(max, in[first + l]);
      if (l < lane) prefix += in[first + l];
    }
    EXPECT_EQ(out[5 * i + 0], sum) << i;
    EXPECT_EQ(out[5 * i + 1], max) << i;
    EXPECT_EQ(out[5 * i + 2], prefix) << i;
    EXPECT_EQ(out[5 * i + 3], lane + 1 < lanes ? in[i + 1] : in[i]) << i;
    EXPECT_EQ(out[5 * i + 4], in[first + 3]) << i;
  }
}

TEST(MetalEmulator, SimdgroupMatrices) {
  std::vector<float> a = iota(64), b(64), c(64);
  for (int i = 0; i < 64; ++i) b[i] = float(i % 5) - 2.0f;  // read transposed: B[k][j] = b[j * 8 + k]
  metal_emu::run(
      Launch("check_simdgroup_matrix_float32").buffer(c.data(), 0).buffer(a.data(), 0).buffer(b.data(), 0).grid({1}, {32}));
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      float want = 0;
      for (int k = 0; k < 8; ++k) want += a[i * 8 + k] * b[j * 8 + k];
      EXPECT_EQ(c[i * 8 + j], want);
    }
}

// 16-bit operands accumulate into float exactly: c around 4096 takes terms of 1/16 that a half or
// bfloat16 accumulator (spacing 4 or 32 there) would round away.
template <typename T> void check_mixed_simdgroup_matrices(const char* kernel) {
  std::vector<T> a(64), b(64);
  std::vector<float> c(64), want(64);
  for (int i = 0; i < 64; ++i) {
    a[i] = T(float(i % 7) * 0.25f - 0.75f);
    b[i] = T(float(i % 5) * 0.25f - 0.5f);
    c[i] = 4096.0f + float(i);
  }
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      want[i * 8 + j] = c[i * 8 + j];
      for (int k = 0; k < 8; ++k) want[i * 8 + j] += float(a[i * 8 + k]) * float(b[k * 8 + j]);
    }
  std::vector<float> out(64);
  metal_emu::run(
      Launch(kernel).buffer(out.data(), 0).buffer(a.data(), 0).buffer(b.data(), 0).buffer(c.data(), 0).grid({1}, {32}));
  for (int e = 0; e < 64; ++e) EXPECT_EQ(out[e], want[e]) << kernel << " element " << e;
}

TEST(MetalEmulator, MixedPrecisionSimdgroupMatrices) {
  check_mixed_simdgroup_matrices<Half>("check_simdgroup_matrix_mixed_float16");
  check_mixed_simdgroup_matrices<BFloat16>("check_simdgroup_matrix_mixed_bfloat16");
}

TEST(MetalEmulator, ReportsAThreadThatReturnsBeforeABarrier) {
  std::vector<float> out(32);
  EXPECT_THROW(
      {
        try {
          metal_emu::run(Launch("check_early_return_float32").buffer(out.data(), 0).grid({1}, {32}));
        } catch (const RuntimeError& e) {
          EXPECT_NE(std::string(e.what()).find("barrier"), std::string::npos) << e.what();
          throw;
        }
      },
      RuntimeError);
}

TEST(MetalEmulator, ReportsABarrierInAKernelWithoutCooperatingThreads) {
  std::vector<float> out(32);
  try {
    metal_emu::run(Launch("check_undeclared_barrier_float32").buffer(out.data(), 0).grid({1}, {32}));
    FAIL() << "expected an error";
  } catch (const RuntimeError& e) {
    EXPECT_NE(std::string(e.what()).find("check_undeclared_barrier_float32"), std::string::npos) << e.what();
  }
}

TEST(MetalEmulator, UnknownKernelsAndThreadgroupSizesRaise) {
  EXPECT_THROW(metal_emu::run(Launch("no_such_kernel").grid({1}, {1})), RuntimeError);
  std::vector<float> out(2048);
  EXPECT_THROW(metal_emu::run(Launch("fill_float32_c").buffer(out.data(), 0).grid({1}, {2048})), RuntimeError);
}

// The tickets (exclusive prefix sums of ones) that an order-dependent kernel handed out: a
// permutation of 0..n-1 whatever the order, the identity only in grid order.
std::vector<uint32_t> tickets(const char* kernel, metal::Size3 groups, metal::Size3 threads, size_t n) {
  std::vector<uint32_t> out(n, 0), ones(n, 1);
  uint32_t total = 0;
  metal_emu::run(
      Launch(kernel).buffer(out.data(), 0).buffer(ones.data(), 0).buffer(&total, 0).grid(groups, threads));
  EXPECT_EQ(total, n);
  std::vector<uint32_t> sorted = out;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i) << kernel << ": not a permutation";
  return out;
}

bool in_grid_order(const std::vector<uint32_t>& t) {
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i] != i) return false;
  return true;
}

TEST(MetalEmulator, RunsThreadgroupsInAShuffledOrder) {
  // Every launch is shuffled, so an order-dependent kernel fails: over the threads of one
  // threadgroup (one worker runs them: every launch), and over the threadgroups of a plain and of a
  // cooperative kernel (run concurrently, so timing could restore grid order in one launch: not in
  // four).
  for (uint32_t n : {2u, 3u, 64u, 1000u}) {
    EXPECT_FALSE(in_grid_order(tickets("check_order_dependent_prefix_sum_uint32", {1}, {n}, n))) << n;
    for (const char* kernel : {"check_order_dependent_prefix_sum_uint32", "check_order_dependent_prefix_sum_cooperative_uint32"}) {
      const metal::Size3 threads = {std::string(kernel).find("cooperative") != std::string::npos ? 32u : 1u};
      bool shuffled = false;
      for (int launch = 0; launch < 4 && !shuffled; ++launch) shuffled = !in_grid_order(tickets(kernel, {n}, threads, n));
      EXPECT_TRUE(shuffled) << kernel << " over " << n << " threadgroups";
    }
  }
}

TEST(MetalEmulator, AFixedSeedReplaysTheOrder) {
  // ORCHARD_METAL_EMULATOR_SEED makes the order a function of the seed, the kernel and the grid. One
  // threadgroup runs on one worker, so its threads' order is exactly replayed.
  ASSERT_EQ(setenv("ORCHARD_METAL_EMULATOR_SEED", "12345", 1), 0);
  const auto first = tickets("check_order_dependent_prefix_sum_uint32", {1}, {500}, 500);
  const auto again = tickets("check_order_dependent_prefix_sum_uint32", {1}, {500}, 500);
  ASSERT_EQ(setenv("ORCHARD_METAL_EMULATOR_SEED", "not a number", 1), 0);
  EXPECT_THROW(tickets("check_order_dependent_prefix_sum_uint32", {1}, {500}, 500), RuntimeError);
  ASSERT_EQ(unsetenv("ORCHARD_METAL_EMULATOR_SEED"), 0);
  EXPECT_EQ(first, again);
}

TEST(MetalEmulator, FreshBuffersAndThreadgroupMemoryHoldPoison) {
  // A kernel reading memory nothing wrote sees NaN (floats) or -1 (integers), also in a buffer that
  // reuses the size of one just freed: the emulator hands out every buffer fresh.
  for (int round = 0; round < 2; ++round) {
    Tensor x = empty({37}, DType::Float32, Device::Metal);
    for (float v : values(add(x, ones({37}, DType::Float32, Device::Metal)))) EXPECT_TRUE(std::isnan(v));
    Tensor i = empty({5}, DType::Int64, Device::Metal).to(Device::CPU);
    for (int k = 0; k < 5; ++k) EXPECT_EQ(i.data_as<int64_t>()[k], -1);
    Tensor h = empty({3}, DType::BFloat16, Device::Metal);
    for (float v : values(h)) EXPECT_TRUE(std::isnan(v));
    fill_(x, 1.0);  // written, then freed: the next round must not see it
  }
}

#if defined(__SANITIZE_ADDRESS__)
#define ORCHARD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ORCHARD_TEST_ASAN 1
#endif
#endif
#ifdef ORCHARD_TEST_ASAN
// Only meaningful under AddressSanitizer (the sanitizer stage, ORCHARD_SANITIZE): an emulated buffer
// has exactly the size asked for, so a kernel reading one element past its end faults.
TEST(MetalEmulatorDeathTest, AReadPastABuffersEndFaultsUnderAddressSanitizer) {
  testing::GTEST_FLAG(death_test_style) = "threadsafe";  // the emulator's worker threads make fork() unsafe
  std::vector<float> out(64);
  Tensor in = empty({63}, DType::Float32, Device::Metal);  // the kernel reads 64
  EXPECT_DEATH(metal_emu::run(Launch("check_reverse_float32")
                                  .buffer(out.data(), 0)
                                  .buffer(in)
                                  .threadgroup_memory(64 * sizeof(float))
                                  .grid({1}, {64})),
               "heap-buffer-overflow");
}
#endif

TEST(MetalEmulator, ExtremesFollowMslNotCpp) {
  // Lane pairs (a, b): (NaN, 2), (2, NaN), (NaN, NaN), (3, -5); lanes 4.. (1.5 + lane, 0). A
  // second simdgroup of 8 lanes holds NaN only.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int n = 40;
  std::vector<float> in(2 * n, 0.0f), out(9 * n);
  for (int i = 4; i < n; ++i) in[i] = 1.5f + float(i);
  const float a[4] = {nan, 2, nan, 3}, b[4] = {2, nan, nan, -5};
  for (int i = 0; i < 4; ++i) in[i] = a[i], in[n + i] = b[i];
  for (int i = 32; i < n; ++i) in[i] = nan;
  metal_emu::run(Launch("check_extremes_float32").buffer(out.data(), 0).buffer(in.data(), 0).grid({1}, {uint32_t(n)}));
  auto lane = [&](int i) { return std::vector<float>(out.begin() + 9 * i, out.begin() + 9 * i + 9); };
  // fmax, max, fmin, min: the number wins over NaN (IEEE maxNum / minNum).
  for (int i : {0, 1})
    for (int k = 0; k < 4; ++k) EXPECT_EQ(lane(i)[k], 2.0f) << i << " " << k;
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(std::isnan(lane(2)[k])) << k;
  EXPECT_EQ(lane(3)[0], 3.0f);
  EXPECT_EQ(lane(3)[3], -5.0f);
  // clamp(NaN, -1, 1) = fmin(fmax(NaN, -1), 1) = -1; 3 clamps to 1.
  EXPECT_EQ(lane(0)[4], -1.0f);
  EXPECT_EQ(lane(3)[4], 1.0f);
  // simd_max / simd_min skip the NaN lanes; over NaN only they are NaN.
  EXPECT_EQ(lane(5)[5], 1.5f + 31);
  EXPECT_EQ(lane(5)[6], 2.0f);
  EXPECT_TRUE(std::isnan(lane(33)[5]) && std::isnan(lane(33)[6]));
  // common.h's nan_max / simd_nan_max propagate NaN.
  for (int i : {0, 1, 2}) EXPECT_TRUE(std::isnan(lane(i)[7])) << i;
  EXPECT_EQ(lane(3)[7], 3.0f);
  EXPECT_TRUE(std::isnan(lane(7)[8]));
}

TEST(MetalRuntime, IsEmulatedAndHoldsNoFloat64) {
  EXPECT_TRUE(has_runtime(Device::Metal));
  EXPECT_TRUE(runtime_is_emulated(Device::Metal));
  EXPECT_THROW(zeros({2}, DType::Float64, Device::Metal), DTypeError);
}

TEST(MetalRuntime, LoopsOfMoreDimsThanOneLaunchAddresses) {
  // Eight dims of 2 that no coalescing can merge: the plan splits the loop over launches.
  const Shape shape(8, 2);
  Tensor cpu = arange(0, 256, 1, DType::Float32).reshape(shape);
  const std::vector<int64_t> perm = {7, 5, 3, 1, 6, 4, 2, 0};
  Tensor want = add(cpu.permute(perm), cpu.permute(perm).contiguous());
  Tensor m = cpu.to(Device::Metal);
  Tensor got = add(m.permute(perm), m.permute(perm).contiguous());
  EXPECT_EQ(got.device(), Device::Metal);
  EXPECT_EQ(values(got), values(want));
}
