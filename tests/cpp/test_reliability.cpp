// Reliability fixes found by the sanitizer stage and the fuzzer (tests/py/test_fuzz.py): size and
// position arithmetic that used to overflow (undefined behaviour) or read past a shape, pinned at the
// C++ API. The Python side is tests/py/test_sizes.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "errors.h"
#include "ops.h"

using namespace orchard;

namespace {
constexpr int64_t kBig = int64_t(1) << 62;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
}  // namespace

TEST(Sizes, SidesWhoseProductOverflowsAreRefusedEvenWithAZero) {
  EXPECT_THROW(checked_numel({0, kBig, kBig}), ValueError);  // its contiguous strides would overflow
  EXPECT_EQ(checked_numel({0, kBig}), 0);
  EXPECT_EQ(checked_numel({kBig, 1, 1}), kBig);
  EXPECT_THROW(zeros({0, kBig, kBig}), ValueError);
  EXPECT_THROW(zeros({0}).reshape({kBig, kBig, 0}), ValueError);
  EXPECT_THROW(zeros({0}).reshape({-1, kBig, kBig}), ValueError);
}

TEST(Sizes, ExpandChecksItsTarget) {
  EXPECT_THROW(zeros({1}).expand({kBig, kBig}), ValueError);
  EXPECT_THROW(zeros({1}).expand({-2}), ValueError);
  EXPECT_THROW(zeros({2, 1}).expand({2, -5}), ValueError);
  EXPECT_EQ(zeros({1}).expand({kBig}).numel(), kBig);  // a view: nothing allocated
  EXPECT_EQ(zeros({3, 1}).expand({-1, 4}).shape(), (Shape{3, 4}));
}

TEST(Sizes, CatAndSplitSumsDoNotOverflow) {
  Tensor big = zeros({1}).expand({kBig});
  EXPECT_THROW(cat({big, big}, 0), ValueError);
  EXPECT_THROW(split(zeros({5}), std::vector<int64_t>{kBig, kBig, kBig, kBig}, 0), ValueError);
}

TEST(Positions, SlicesWithExtremeStepsAndBounds) {
  Tensor t = arange(0, 5, 1, DType::Int64);
  EXPECT_EQ(t.slice(0, 0, 5, kMax).shape(), (Shape{1}));
  EXPECT_EQ(t.slice(0, 0, 5, kMax).strides(), (Strides{1}));  // not kMax: scaled to bytes, it overflows
  EXPECT_EQ(t.slice(0, 1, kMax, kBig).shape(), (Shape{1}));
  EXPECT_EQ(t.slice(0, std::numeric_limits<int64_t>::min(), kMax, 2).shape(), (Shape{3}));
  EXPECT_EQ(t.slice(0, 3, 1, 1).shape(), (Shape{0}));
  EXPECT_EQ(t.slice(0, 1, 5, 3).data_as<int64_t>()[0], 1);
}

TEST(Positions, NarrowAndZeroDimTensors) {
  Tensor t = zeros({5});
  EXPECT_THROW(t.narrow(0, 1, kMax), IndexError);
  EXPECT_EQ(t.narrow(0, -2, 2).shape(), (Shape{2}));
  Tensor s = scalar_tensor(1.5, DType::Float32, Device::CPU);
  EXPECT_THROW(s.size(0), IndexError);  // used to read shape()[0] of an empty shape
  EXPECT_THROW(s.stride(-1), IndexError);
  EXPECT_THROW(s.narrow(0, 0, 1), IndexError);
  EXPECT_THROW(softmax(s, 1), IndexError);
  EXPECT_THROW(s.flatten(1, 0), IndexError);
  EXPECT_EQ(softmax(s, -1).shape(), Shape{});
}

TEST(InPlace, EmptyExpandedViewsAreWritable) {
  Tensor t = zeros({0, 1}).expand({0, 4});
  EXPECT_NO_THROW(fill_(t, 1.0));
  Tensor shared = zeros({4}).expand({2, 4});
  EXPECT_THROW(fill_(shared, 1.0), ValueError);
}

TEST(Clamp, NaNBoundsPropagate) {
  Tensor x = arange(0, 3, 1, DType::Float32);
  Tensor nan = scalar_tensor(std::nan(""), DType::Float64, Device::CPU, true);
  Tensor out = clamp(x, nan, std::nullopt).contiguous();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(out.data_as<float>()[i]));
  Tensor kept = clamp(x, scalar_tensor(1.0, DType::Float64, Device::CPU, true), std::nullopt).contiguous();
  EXPECT_EQ(kept.data_as<float>()[0], 1.0f);
  EXPECT_EQ(kept.data_as<float>()[2], 2.0f);
}
