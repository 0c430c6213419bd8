// Core invariants: contiguity, aliasing, views, broadcasting, safe division, profiling symmetry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <thread>
#include <vector>

#include "block_cache.h"
#include "ops.h"
#include "profile.h"
#include "runtime.h"

using namespace orchard;

namespace {
std::vector<float> values(const Tensor& t) {
  Tensor c = t.to(DType::Float32).contiguous();
  return std::vector<float>(c.data_as<float>(), c.data_as<float>() + c.numel());
}
Tensor seq(const Shape& shape) { return arange(0, double(checked_numel(shape)), 1, DType::Float32).reshape(shape); }
}  // namespace

TEST(Tensor, ContiguityOfViews) {
  Tensor t = seq({2, 3, 4});
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_FALSE(t.transpose(0, 2).is_contiguous());
  EXPECT_TRUE(t.transpose(0, 2).contiguous().is_contiguous());
  EXPECT_FALSE(t.slice(2, 0, 4, 2).is_contiguous());
  EXPECT_TRUE(t.select(0, 1).is_contiguous());
  EXPECT_TRUE(t.unsqueeze(1).is_contiguous());
  EXPECT_FALSE(t.expand({5, 2, 3, 4}).is_contiguous());
}

TEST(Tensor, AliasingOfViewsDetachAndClone) {
  Tensor t = seq({3, 4});
  EXPECT_TRUE(t.transpose(0, 1).is_alias_of(t));
  EXPECT_TRUE(t.reshape({12}).is_alias_of(t));
  EXPECT_TRUE(t.detach().is_alias_of(t));
  EXPECT_FALSE(t.clone().is_alias_of(t));
  Tensor d = t.detach();
  fill_(d, 7.0);  // mutating a detached view is visible through the original
  EXPECT_EQ(values(t)[5], 7.0f);
  Tensor c = t.clone();
  fill_(c, 1.0);
  EXPECT_EQ(values(t)[5], 7.0f);
}

TEST(Tensor, ReshapeCopiesOnlyWhenItMust) {
  Tensor t = seq({4, 6});
  EXPECT_TRUE(t.transpose(0, 1).reshape({24}).is_contiguous());
  EXPECT_FALSE(t.transpose(0, 1).reshape({24}).is_alias_of(t));
  EXPECT_TRUE(t.slice(0, 0, 4, 2).reshape({2, 2, 3}).is_alias_of(t));
  EXPECT_THROW(t.transpose(0, 1).view({24}), ValueError);
  EXPECT_THROW(t.reshape({5, 5}), ValueError);
  EXPECT_EQ(t.reshape({-1, 3}).shape(), (Shape{8, 3}));
}

TEST(Broadcast, VectorAndMatrixShapesAlign) {
  Tensor m = seq({3, 4});
  Tensor row = seq({4});
  Tensor col = seq({3, 1});
  std::vector<float> r = values(m + row), c = values(m + col);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) {
      EXPECT_EQ(r[i * 4 + j], float(i * 4 + j + j));
      EXPECT_EQ(c[i * 4 + j], float(i * 4 + j + i));
    }
  EXPECT_EQ((seq({2, 1, 4}) * seq({3, 1})).shape(), (Shape{2, 3, 4}));
  EXPECT_THROW(m + seq({3}), ValueError);
}

TEST(Broadcast, NonContiguousOperands) {
  Tensor a = seq({4, 3}).transpose(0, 1);  // [3, 4], strides (1, 3)
  Tensor b = seq({4, 3}).slice(1, 0, 3, 2).transpose(0, 1);  // [2, 4] strided
  std::vector<float> out = values(a.slice(0, 0, 2) - b);
  std::vector<float> av = values(a.slice(0, 0, 2)), bv = values(b);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], av[i] - bv[i]);
}

TEST(SafeDiv, ZeroDenominatorAtEveryBroadcastPosition) {
  // A zero in each position of a broadcast denominator must give 0 exactly there and nowhere else.
  for (int zero_at = 0; zero_at < 4; ++zero_at) {
    Tensor den = full({4}, 2.0);
    Tensor z = den.slice(0, zero_at, zero_at + 1);
    fill_(z, 0.0);
    std::vector<float> out = values(safe_div(seq({3, 4}), den));
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) EXPECT_EQ(out[i * 4 + j], j == zero_at ? 0.0f : float(i * 4 + j) / 2.0f);
  }
  std::vector<float> col = values(safe_div(full({2, 3}, 6.0), seq({2, 1})));
  EXPECT_EQ(col, (std::vector<float>{0, 0, 0, 6, 6, 6}));
}

TEST(InPlace, DivAndAddBumpVersionAndRejectExpandedTargets) {
  Tensor t = full({2, 2}, 8.0);
  uint64_t v0 = t.storage()->version();
  binary_(BinaryOp::Div, t, full({}, 2.0));
  binary_(BinaryOp::Div, t, full({2}, 2.0));
  EXPECT_EQ(values(t), (std::vector<float>{2, 2, 2, 2}));
  EXPECT_GT(t.storage()->version(), v0);
  Tensor e = full({1}, 1.0).expand({3});
  EXPECT_THROW(binary_(BinaryOp::Add, e, full({}, 1.0)), ValueError);
  Tensor i = full({2}, 1.0, DType::Int64);
  EXPECT_THROW(binary_(BinaryOp::Add, i, full({}, 0.5)), TypeError);
}

TEST(InPlace, OverlappingSourceIsReadBeforeWrite) {
  Tensor t = seq({3, 3});
  binary_(BinaryOp::Add, t, t.transpose(0, 1));
  std::vector<float> out = values(t);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(out[i * 3 + j], float(i * 3 + j + j * 3 + i));
}

TEST(DType, Promotion) {
  EXPECT_EQ(promote_types(DType::Int32, DType::Float16), DType::Float16);
  EXPECT_EQ(promote_types(DType::Float16, DType::BFloat16), DType::Float32);
  EXPECT_EQ(promote_types(DType::Bool, DType::Int32), DType::Int32);
  EXPECT_EQ(promote_types(DType::Int64, DType::Int32), DType::Int64);
  Tensor i = full({2}, 3.0, DType::Int32);
  EXPECT_EQ((i + scalar_tensor(2.0, DType::Int64, Device::CPU, true)).dtype(), DType::Int32);
  EXPECT_EQ((i + scalar_tensor(0.5, DType::Float64, Device::CPU, true)).dtype(), DType::Float32);
  EXPECT_EQ(div(i, i).dtype(), DType::Float32);
  EXPECT_EQ((full({2}, 1.0, DType::Float16) * scalar_tensor(2.0, DType::Float64, Device::CPU, true)).dtype(),
            DType::Float16);
}

TEST(Errors, SizesAndDevices) {
  EXPECT_THROW(empty({int64_t(1) << 40, int64_t(1) << 40}), ValueError);
  EXPECT_THROW(empty({-1}), ValueError);
  EXPECT_THROW(empty({int64_t(1) << 45}, DType::Float64), OutOfMemoryError);
  if (!has_runtime(Device::Metal)) EXPECT_THROW(seq({2}).to(Device::Metal), RuntimeError);
  else EXPECT_THROW(add(seq({2}), seq({2}).to(Device::Metal)), RuntimeError);  // devices must agree
  EXPECT_THROW(seq({2, 3}).transpose(0, 2), IndexError);
  EXPECT_THROW(seq({2, 3}).select(1, 3), IndexError);
}

TEST(Profile, AllocFreeCountsMatchUnderThreads) {
  setenv("ORCHARD_TENSOR_PROFILE", "1", 1);
  profile::reset();
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([] {
        for (int i = 0; i < 200; ++i) {
          Tensor a = full({64}, 1.0);
          Tensor b = (a + a).reshape({8, 8}).transpose(0, 1).contiguous();
          (void)b;
        }
      });
    for (auto& th : threads) th.join();
  }
  profile::Counts c = profile::counts();
  unsetenv("ORCHARD_TENSOR_PROFILE");
  EXPECT_GT(c.allocs, 1600);
  EXPECT_EQ(c.allocs, c.frees);
}

TEST(Profile, FreeIsLoggedEvenWhenTheFlagFlipsOff) {
  setenv("ORCHARD_TENSOR_PROFILE", "1", 1);
  profile::reset();
  Tensor* t = new Tensor(full({4}, 1.0));
  unsetenv("ORCHARD_TENSOR_PROFILE");
  delete t;
  profile::Counts c = profile::counts();
  EXPECT_EQ(c.allocs, 1);
  EXPECT_EQ(c.frees, 1);
}

// Blocks return to the pool they were allocated in (a CUDA stream's), so one freed in a pool is
// never handed to an allocation in another; an allocation that finds no memory empties every pool.
TEST(BlockCache, PoolsKeepTheirOwnBlocks) {
  std::vector<void*> live;
  int frees = 0;
  size_t budget = 3;  // raw allocations that succeed before "out of memory"
  BlockCache cache(
      "test", 256, 1, size_t(1) << 30,
      [&](size_t n) -> void* {
        if (budget == 0) return nullptr;
        --budget;
        live.push_back(std::malloc(n));
        return live.back();
      },
      [&](void* p) {
        ++frees;
        std::free(p);
      });
  void* in_default = cache.allocate(1000);
  void* in_pool = cache.allocate(1000, 7);
  EXPECT_EQ(cache.pool_of(in_pool), 7u);
  EXPECT_EQ(cache.pool_of(in_default), 0u);
  cache.deallocate(in_pool, 1000);
  EXPECT_EQ(cache.pool_of(in_pool), 0u);  // no longer live
  void* again_default = cache.allocate(1000);
  EXPECT_NE(again_default, in_pool);  // pool 7's block stays there
  EXPECT_EQ(cache.allocate(1000, 7), in_pool);
  EXPECT_EQ(frees, 0);
  cache.deallocate(again_default, 1000);
  // Out of raw memory: the cached block of pool 0 is freed and the allocation retried.
  budget = 0;
  EXPECT_THROW(cache.allocate(1000, 9), OutOfMemoryError);
  EXPECT_EQ(frees, 1);
  budget = 1;
  void* after_release = cache.allocate(1000, 9);
  EXPECT_EQ(cache.pool_of(after_release), 9u);
  for (void* p : {in_default, in_pool, after_release}) cache.deallocate(p, 1000);
  cache.release();
  EXPECT_EQ(frees, 4);
  EXPECT_EQ(cache.cached_bytes(), 0u);
}
