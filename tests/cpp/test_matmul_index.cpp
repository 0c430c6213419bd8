// matmul, the indexing and joining ops, and the Philox random streams, checked against plain
// loops over doubles.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "matmul_bf16.h"
#include "ops.h"
#include "ops_common.h"
#include "philox.h"

using namespace orchard;

namespace {

std::vector<double> values(const Tensor& t) {
  Tensor c = t.to(DType::Float64).contiguous();
  return std::vector<double>(c.data_as<double>(), c.data_as<double>() + c.numel());
}

Tensor from(const std::vector<double>& v, const Shape& shape, DType dtype = DType::Float32) {
  Tensor t = empty(shape, DType::Float64);
  EXPECT_EQ(size_t(t.numel()), v.size());
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(double));  // (data() may be null)
  return t.to(dtype);
}

Tensor seq(const Shape& shape, DType dtype = DType::Float32) {
  return arange(0, double(checked_numel(shape)), 1, dtype).reshape(shape);
}

// Small integers in [lo, hi]: every product sum below is exact, even in float16 and bfloat16.
Tensor random_ints(const Shape& shape, DType dtype = DType::Float32, int lo = -4, int hi = 4) {
  static std::mt19937 gen(1234);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<double> v(size_t(checked_numel(shape)));
  for (double& x : v) x = dist(gen);
  return from(v, shape, dtype);
}

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

Shape with(Shape s, std::initializer_list<int64_t> tail) {
  s.insert(s.end(), tail);
  return s;
}

// NumPy matmul with plain loops: 1-D operands promoted, batch dims broadcast.
std::vector<double> naive_matmul(const Tensor& a, const Tensor& b) {
  Tensor a2 = a.ndim() == 1 ? a.unsqueeze(0) : a;
  Tensor b2 = b.ndim() == 1 ? b.unsqueeze(1) : b;
  const int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  Shape batch = broadcast_shapes(batch_of(a2), batch_of(b2));
  std::vector<double> av = values(a2.expand(with(batch, {m, k}))), bv = values(b2.expand(with(batch, {k, n})));
  std::vector<double> out(size_t(checked_numel(batch) * m * n), 0.0);
  for (int64_t p = 0; p < checked_numel(batch); ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t l = 0; l < k; ++l) out[(p * m + i) * n + j] += av[(p * m + i) * k + l] * bv[(p * k + l) * n + j];
  return out;
}

void expect_matmul(const Tensor& a, const Tensor& b, const Shape& shape, double tol = 0) {
  Tensor c = matmul(a, b);
  EXPECT_EQ(c.shape(), shape);
  std::vector<double> got = values(c), want = naive_matmul(a, b);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << "at " << i;
}

}  // namespace

// ---- matmul ------------------------------------------------------------------------------------

TEST(Matmul, MatrixTimesMatrix) {
  expect_matmul(random_ints({5, 7}), random_ints({7, 3}), {5, 3});
  expect_matmul(random_ints({5, 7}, DType::Float64), random_ints({7, 3}, DType::Float64), {5, 3});
  expect_matmul(rand({64, 100}), rand({100, 48}), {64, 48}, 1e-5);
  expect_matmul(rand({33, 70}, DType::Float64), rand({70, 65}, DType::Float64), {33, 65}, 1e-12);
}

TEST(Matmul, VectorOperandsArePromotedAndDropped) {
  expect_matmul(random_ints({7}), random_ints({7}), {});
  expect_matmul(random_ints({7}), random_ints({7, 3}), {3});
  expect_matmul(random_ints({5, 7}), random_ints({7}), {5});
  expect_matmul(random_ints({7}), random_ints({2, 7, 3}), {2, 3});
  expect_matmul(random_ints({2, 5, 7}), random_ints({7}), {2, 5});
}

TEST(Matmul, BatchedAndBroadcastBatch) {
  expect_matmul(random_ints({4, 5, 6}), random_ints({4, 6, 3}), {4, 5, 3});
  expect_matmul(random_ints({2, 1, 5, 6}), random_ints({3, 6, 4}), {2, 3, 5, 4});
  expect_matmul(random_ints({4, 5, 6}), random_ints({6, 3}), {4, 5, 3});
  expect_matmul(random_ints({2, 3, 5, 6}), random_ints({6, 3}), {2, 3, 5, 3});
  expect_matmul(random_ints({5, 6}), random_ints({4, 6, 3}), {4, 5, 3});
  expect_matmul(random_ints({1, 5, 6}), random_ints({4, 6, 3}), {4, 5, 3});
  expect_matmul(random_ints({4, 1, 6}), random_ints({1, 6, 1}), {4, 1, 1});
}

TEST(Matmul, TransposedSlicedAndExpandedViews) {
  Tensor at = random_ints({6, 5}).transpose(0, 1), bt = random_ints({3, 6}).transpose(0, 1);
  expect_matmul(at, random_ints({6, 3}), {5, 3});
  expect_matmul(random_ints({5, 6}), bt, {5, 3});
  expect_matmul(at, bt, {5, 3});
  expect_matmul(random_ints({4, 6, 5}).transpose(1, 2), random_ints({4, 3, 6}).transpose(1, 2), {4, 5, 3});
  expect_matmul(random_ints({4, 6, 5}).transpose(1, 2), random_ints({6, 3}), {4, 5, 3});
  expect_matmul(random_ints({5, 4, 6}).permute({1, 0, 2}), random_ints({4, 6, 3}), {4, 5, 3});
  // Row stride 10 (a slice of a wider matrix); a column slice with no unit stride at all.
  expect_matmul(random_ints({5, 10}).slice(1, 2, 8), random_ints({6, 9}).slice(1, 0, 9, 3), {5, 3});
  // Expanded (stride-0) rows and vectors.
  expect_matmul(random_ints({1, 6}).expand({5, 6}), random_ints({6, 3}), {5, 3});
  expect_matmul(random_ints({1}).expand({6}), random_ints({6, 3}), {3});
  expect_matmul(random_ints({6, 1}).expand({6, 4}).transpose(0, 1), random_ints({6, 2}), {4, 2});
}

TEST(Matmul, IntegerAndHalfDtypes) {
  for (DType dt : {DType::Int32, DType::Int64}) {
    Tensor c = matmul(random_ints({3, 4}, dt), random_ints({4, 2}, dt));
    EXPECT_EQ(c.dtype(), dt);
    // Larger than one 128-wide tile in every dim, with ragged edges.
    expect_matmul(random_ints({33, 150}, dt), random_ints({150, 140}, dt), {33, 140});
    expect_matmul(random_ints({3, 150, 20}, dt).transpose(1, 2), random_ints({150, 7}, dt), {3, 20, 7});
    expect_matmul(random_ints({2, 5, 6}, dt), random_ints({6, 4}, dt).transpose(0, 1).contiguous().transpose(0, 1),
                  {2, 5, 4});
  }
  for (DType dt : {DType::Float16, DType::BFloat16}) {
    Tensor c = matmul(random_ints({2, 9, 8}, dt), random_ints({8, 7}, dt));
    EXPECT_EQ(c.dtype(), dt);
    expect_matmul(random_ints({2, 9, 8}, dt), random_ints({8, 7}, dt), {2, 9, 7});
    expect_matmul(random_ints({9, 8}, dt).transpose(0, 1), random_ints({3, 9, 7}, dt), {3, 8, 7});
    expect_matmul(random_ints({1, 8}, dt).expand({4, 8}), random_ints({2, 8, 3}, dt), {2, 4, 3});
  }
  EXPECT_EQ(matmul(random_ints({2, 3}, DType::Int32), random_ints({3, 2}, DType::Float32)).dtype(), DType::Float32);
  EXPECT_EQ(matmul(random_ints({2, 3}, DType::Int32), random_ints({3, 2}, DType::Int64)).dtype(), DType::Int64);
  EXPECT_EQ(matmul(random_ints({2, 3}, DType::Float16), random_ints({3, 2}, DType::BFloat16)).dtype(),
            DType::Float32);
  expect_matmul(random_ints({4, 5}, DType::Int32), random_ints({5, 3}, DType::Float64), {4, 3});
}

TEST(Matmul, EmptyShapesAndZeroInnerDim) {
  expect_matmul(random_ints({0, 3}), random_ints({3, 4}), {0, 4});
  expect_matmul(random_ints({2, 3}), random_ints({3, 0}), {2, 0});
  expect_matmul(random_ints({0, 2, 3}), random_ints({3, 4}), {0, 2, 4});
  expect_matmul(random_ints({2, 0}), random_ints({0, 3}), {2, 3});  // all zeros
  expect_matmul(random_ints({3, 0}, DType::Int64), random_ints({0}, DType::Int64), {3});
  expect_matmul(random_ints({0}), random_ints({0}), {});
}

// The gradients of one product run side by side on two threads; each result must equal its own
// product, whatever the dtypes, layouts and degenerate shapes of the other.
TEST(Matmul, PairMatchesTwoProducts) {
  struct Case {
    Tensor a1, b1, a2, b2;
  };
  const std::vector<Case> cases = {
      {rand({300, 64}), rand({64, 200}), rand({64, 300}).transpose(0, 1), rand({200, 64}).transpose(0, 1)},
      {rand({3, 40, 50}, DType::Float64), rand({50, 30}, DType::Float64), random_ints({7, 9}, DType::Int64),
       random_ints({9, 5}, DType::Int64)},
      {random_ints({6, 8}, DType::BFloat16), random_ints({8, 4}, DType::BFloat16), random_ints({2, 0}),
       random_ints({0, 3})},
      {random_ints({0, 4}), random_ints({4, 2}), random_ints({5}), random_ints({5, 2})},
  };
  for (const Case& c : cases) {
    auto [p1, p2] = detail::matmul_pair(c.a1, c.b1, c.a2, c.b2);
    for (auto [got, a, b] : {std::tuple{p1, c.a1, c.b1}, std::tuple{p2, c.a2, c.b2}}) {
      const Tensor want = matmul(a, b);
      EXPECT_EQ(got.shape(), want.shape());
      EXPECT_EQ(got.dtype(), want.dtype());
      // Bit equality is not promised: a whole product and one split in two may round differently.
      std::vector<double> g = values(got), w = naive_matmul(a, b);
      ASSERT_EQ(g.size(), w.size());
      for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], w[i], 1e-5 * (1 + std::fabs(w[i]))) << "at " << i;
    }
  }
}

// The fused path copies the broadcast input into the result and accumulates the product onto it
// (BLAS beta = 1, or the widening and integer kernels adding in place).
TEST(Matmul, AddmmAccumulatesOntoTheBroadcastInput) {
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Int64}) {
    const Tensor a = random_ints({7, 9}, dt), b = random_ints({9, 5}, dt).transpose(0, 1).contiguous().transpose(0, 1);
    for (const Shape& shape : std::vector<Shape>{{5}, {1, 5}, {7, 1}, {7, 5}, {}}) {
      const Tensor input = random_ints(shape, dt);
      const Tensor got = addmm(input, a, b);
      EXPECT_EQ(got.dtype(), dt);
      EXPECT_EQ(got.shape(), (Shape{7, 5}));
      std::vector<double> product = naive_matmul(a, b), bias = values(input.expand({7, 5}));
      for (size_t i = 0; i < product.size(); ++i) product[i] += bias[i];
      EXPECT_EQ(values(got), product) << dtype_name(dt) << " input " << shape_str(shape);
    }
  }
  // Batched operands and an input larger than the product take the unfused path.
  const Tensor a3 = random_ints({2, 7, 9}), b = random_ints({9, 5}), input = random_ints({2, 7, 5});
  EXPECT_EQ(values(addmm(input, a3, b)), values(add(input, matmul(a3, b))));
  EXPECT_EQ(values(addmm(input, a3.select(0, 1), b)), values(add(input, matmul(a3.select(0, 1), b))));
}

// bfloat16 products on each path: the packed AMX and AVX512-BF16 kernels and the widened fallback,
// forced in turn. Small integers keep every float32 sum exact, so each result must be the float64
// product (plus the addmm input) rounded once to bfloat16. The shapes cut every tile, panel, k pair
// and K chunk of the kernels at an edge.
class Bf16Matmul : public ::testing::TestWithParam<cpu::Bf16Gemm> {
 protected:
  void SetUp() override {
    if (!cpu::bf16_gemm_supported(GetParam())) GTEST_SKIP() << "this processor lacks the path";
    cpu::use_bf16_gemm_path(GetParam());
  }
  void TearDown() override { cpu::use_bf16_gemm_path(default_path); }
  const cpu::Bf16Gemm default_path = cpu::bf16_gemm_path();
};

void expect_rounded(const Tensor& got, const std::vector<double>& exact, const std::string& what) {
  EXPECT_EQ(got.dtype(), DType::BFloat16);
  const std::vector<double> g = values(got);
  ASSERT_EQ(g.size(), exact.size()) << what;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_EQ(g[i], double(float(BFloat16(float(exact[i]))))) << what << " at " << i;
}

TEST_P(Bf16Matmul, EdgesLayoutsBatchesAndAccumulateGiveTheRoundedExactProduct) {
  const DType bf = DType::BFloat16;
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1},    {7, 17, 33},   {17, 33, 7},   {33, 64, 255},
                                                      {64, 255, 64}, {255, 7, 17}, {1, 300, 33}, {33, 513, 1},
                                                      {65, 257, 97}};
  for (auto [m, k, n] : shapes)
    for (int layout = 0; layout < 4; ++layout) {
      const Tensor a = layout & 1 ? random_ints({k, m}, bf).transpose(0, 1) : random_ints({m, k}, bf);
      const Tensor b = layout & 2 ? random_ints({n, k}, bf).transpose(0, 1) : random_ints({k, n}, bf);
      const std::string what = detail::concat(m, "x", k, "x", n, " layout ", layout);
      expect_rounded(matmul(a, b), naive_matmul(a, b), what);
      const Tensor input = random_ints({n}, bf);  // addmm: out = input + a @ b, rounded once
      std::vector<double> sum = naive_matmul(a, b), bias = values(input.expand({m, n}));
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += bias[i];
      expect_rounded(addmm(input, a, b), sum, what + " addmm");
    }
  // Batches, one operand broadcast along them (batch stride 0), transposed matrices.
  const Tensor a3 = random_ints({3, 33, 40}, bf), b1 = random_ints({1, 40, 17}, bf);
  expect_rounded(matmul(a3, b1), naive_matmul(a3, b1), "a batched, b broadcast");
  const Tensor a1 = random_ints({1, 40, 33}, bf).transpose(1, 2), b3 = random_ints({3, 17, 40}, bf).transpose(1, 2);
  expect_rounded(matmul(a1, b3), naive_matmul(a1, b3), "a broadcast, both transposed");
  const Tensor a3t = random_ints({3, 40, 33}, bf).transpose(1, 2), b3t = random_ints({3, 17, 40}, bf);
  expect_rounded(matmul(a3t, b3t.transpose(1, 2)), naive_matmul(a3t, b3t.transpose(1, 2)), "batched, transposed");
}

// NaN and infinity spread as in float arithmetic: only along the row and column they meet.
TEST_P(Bf16Matmul, NanAndInfinityReachOnlyTheirRowsAndColumns) {
  const double inf = INFINITY;
  Tensor a = from({NAN, 1, 1, inf, 2, 2, 1, 1, 1}, {3, 3}, DType::BFloat16);
  Tensor b = from({1, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 3}, DType::BFloat16);
  const std::vector<double> got = values(matmul(a, b));
  for (int j = 0; j < 3; ++j) {
    EXPECT_TRUE(std::isnan(got[size_t(j)]));
    EXPECT_EQ(got[size_t(3 + j)], inf);
    EXPECT_EQ(got[size_t(6 + j)], 3);
  }
}

std::string path_name(const ::testing::TestParamInfo<cpu::Bf16Gemm>& info) {
  return cpu::bf16_gemm_name(info.param);
}
INSTANTIATE_TEST_SUITE_P(Paths, Bf16Matmul,
                         ::testing::Values(cpu::Bf16Gemm::Widened, cpu::Bf16Gemm::Avx512Bf16, cpu::Bf16Gemm::Amx),
                         path_name);

TEST(Matmul, Errors) {
  EXPECT_THROW(matmul(random_ints({2, 3}), random_ints({4, 5})), ValueError);
  EXPECT_THROW(matmul(random_ints({3}), random_ints({4})), ValueError);
  EXPECT_THROW(matmul(random_ints({2, 3, 4}), random_ints({3, 4, 5})), ValueError);
  EXPECT_THROW(matmul(random_ints({}), random_ints({3})), ValueError);
  EXPECT_THROW(matmul(random_ints({2, 2}, DType::Bool), random_ints({2, 2}, DType::Bool)), TypeError);
  try {
    matmul(random_ints({2, 3}), random_ints({4, 5}));
  } catch (const ValueError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  }
}

// ---- index_select, embedding, gather, scatter_add ----------------------------------------------

TEST(IndexSelect, RowsColumnsAndDtypes) {
  Tensor x = seq({3, 4});
  Tensor rows = index_select(x, 0, from({2, 0, 2}, {3}, DType::Int64));
  EXPECT_EQ(rows.shape(), (Shape{3, 4}));
  EXPECT_EQ(values(rows), (std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  Tensor cols = index_select(x, -1, from({3, 0}, {2}, DType::Int32));
  EXPECT_EQ(values(cols), (std::vector<double>{3, 0, 7, 4, 11, 8}));
  EXPECT_EQ(index_select(x, 0, from({1}, {}, DType::Int64)).shape(), (Shape{1, 4}));
  EXPECT_EQ(index_select(x, 1, from({}, {0}, DType::Int64)).shape(), (Shape{3, 0}));
  EXPECT_EQ(values(index_select(x.transpose(0, 1), 1, from({1}, {1}, DType::Int64))),
            (std::vector<double>{4, 5, 6, 7}));
  for (DType dt : {DType::Bool, DType::Int32, DType::Int64, DType::Float16, DType::BFloat16, DType::Float64}) {
    Tensor r = index_select(x.to(dt), 1, from({3, 1}, {2}, DType::Int64));
    EXPECT_EQ(r.dtype(), dt);
    EXPECT_EQ(values(r), values(index_select(x, 1, from({3, 1}, {2}, DType::Int64)).to(dt)));
  }
}

TEST(IndexSelect, Errors) {
  Tensor x = seq({3, 4});
  EXPECT_THROW(index_select(x, 0, from({3}, {1}, DType::Int64)), IndexError);
  EXPECT_THROW(index_select(x, 0, from({-1}, {1}, DType::Int64)), IndexError);  // as in PyTorch
  EXPECT_THROW(index_select(x, 2, from({0}, {1}, DType::Int64)), IndexError);
  EXPECT_THROW(index_select(x, 0, from({0, 1}, {1, 2}, DType::Int64)), IndexError);
  EXPECT_THROW(index_select(x, 0, from({0}, {1}, DType::Float32)), TypeError);
  try {
    index_select(x, 1, from({0, 7}, {2}, DType::Int64));
    FAIL() << "expected IndexError";
  } catch (const IndexError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("index 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dimension 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("size 4"), std::string::npos) << msg;
  }
}

TEST(CheckedIndex, RefusesOrWrapsNegativesAndReturnsInt64) {
  using detail::IndexBounds;
  Tensor idx =
      detail::checked_index(from({-1, 2, -3, 0}, {2, 2}, DType::Int32), 3, "test", 0, IndexBounds::WrapNegative);
  EXPECT_EQ(idx.dtype(), DType::Int64);
  EXPECT_EQ(idx.shape(), (Shape{2, 2}));
  EXPECT_EQ(values(idx), (std::vector<double>{2, 2, 0, 0}));
  EXPECT_THROW(detail::checked_index(from({-4}, {1}, DType::Int64), 3, "test", 0, IndexBounds::WrapNegative),
               IndexError);
  EXPECT_THROW(detail::checked_index(from({-1}, {1}, DType::Int64), 3, "test", 0, IndexBounds::Refuse), IndexError);
  EXPECT_THROW(detail::checked_index(from({-1}, {1}, DType::Int64), 3, "test", 0, IndexBounds::RefuseAsRuntimeError),
               RuntimeError);
  EXPECT_THROW(detail::checked_index(from({0, 3}, {2}, DType::Int64), 3, "test", 0, IndexBounds::Refuse), IndexError);
  EXPECT_THROW(detail::checked_index(from({0}, {1}, DType::Bool), 3, "test", 0, IndexBounds::Refuse), TypeError);
  EXPECT_NO_THROW(detail::check_integer_index(from({0}, {1}, DType::Int32), "test"));
}

TEST(Embedding, LooksUpRowsForAnyIndexShape) {
  Tensor w = seq({5, 3});
  Tensor e = embedding(w, from({1, 4, 0, 0}, {2, 2}, DType::Int64));
  EXPECT_EQ(e.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(values(e), (std::vector<double>{3, 4, 5, 12, 13, 14, 0, 1, 2, 0, 1, 2}));
  EXPECT_THROW(embedding(seq({5}), from({1}, {1}, DType::Int64)), ValueError);
  EXPECT_THROW(embedding(w, from({5}, {1}, DType::Int64)), IndexError);
}

namespace {
// out[p] = x[p with coordinate dim replaced by index[p]], over the positions p of index.
std::vector<double> naive_gather(const Tensor& x, int64_t dim, const Tensor& index) {
  std::vector<double> xv = values(x), iv = values(index), out;
  Strides xs = contiguous_strides(x.shape());
  for (int64_t p = 0; p < index.numel(); ++p) {
    int64_t off = 0, rem = p;
    for (int64_t d = index.ndim() - 1; d >= 0; --d) {
      int64_t c = rem % index.size(d);
      rem /= index.size(d);
      off += (d == dim ? int64_t(iv[p]) : c) * xs[d];
    }
    out.push_back(xv[off]);
  }
  return out;
}

// x with x[p with coordinate dim replaced by index[p]] += src[p] for the positions p of index.
std::vector<double> naive_scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  std::vector<double> out = values(x), iv = values(index), sv = values(src);
  Strides xs = contiguous_strides(x.shape()), ss = contiguous_strides(src.shape());
  for (int64_t p = 0; p < index.numel(); ++p) {
    int64_t off = 0, soff = 0, rem = p;
    for (int64_t d = index.ndim() - 1; d >= 0; --d) {
      int64_t c = rem % index.size(d);
      rem /= index.size(d);
      off += (d == dim ? int64_t(iv[p]) : c) * xs[d];
      soff += c * ss[d];
    }
    out[off] += sv[soff];
  }
  return out;
}
}  // namespace

TEST(Gather, PyTorchExamplesAndSmallerIndex) {
  Tensor x = from({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(values(gather(x, 1, from({0, 0, 1, 0}, {2, 2}, DType::Int64))), (std::vector<double>{1, 1, 4, 3}));
  EXPECT_EQ(values(gather(x, 0, from({0, 1, 1, 0}, {2, 2}, DType::Int64))), (std::vector<double>{1, 4, 3, 2}));
  EXPECT_EQ(values(gather(x, -1, from({1}, {1, 1}, DType::Int64))), (std::vector<double>{2}));
  // Index smaller than x in dims other than dim, including a trailing one.
  Tensor x3 = seq({3, 5, 4});
  Tensor idx = random_ints({2, 7, 3}, DType::Int64, 0, 4);
  Tensor g = gather(x3, 1, idx);
  EXPECT_EQ(g.shape(), (Shape{2, 7, 3}));
  EXPECT_EQ(values(g), naive_gather(x3, 1, idx));
  for (int64_t dim : {0, 2}) {
    Tensor i2 = random_ints({3, 5, 4}, DType::Int64, 0, 2);
    EXPECT_EQ(values(gather(x3.transpose(0, 1).contiguous().transpose(0, 1), dim, i2)), naive_gather(x3, dim, i2));
  }
  for (DType dt : {DType::Bool, DType::Int32, DType::Float16, DType::BFloat16, DType::Float64})
    EXPECT_EQ(values(gather(x3.to(dt), 1, idx)), values(g.to(dt)));
  EXPECT_EQ(values(gather(from({5}, {}), 0, from({0}, {}, DType::Int64))), (std::vector<double>{5}));
}

TEST(Gather, Errors) {
  Tensor x = seq({2, 3});
  EXPECT_THROW(gather(x, 1, from({0, 1}, {2}, DType::Int64)), ValueError);          // ndim differs
  EXPECT_THROW(gather(x, 1, from({0, 0, 0}, {3, 1}, DType::Int64)), ValueError);    // too big off dim
  EXPECT_THROW(gather(x, 1, from({3, 0}, {2, 1}, DType::Int64)), RuntimeError);   // PyTorch's kind
  EXPECT_THROW(gather(x, 1, from({-1, 0}, {2, 1}, DType::Int64)), RuntimeError);
  EXPECT_THROW(gather(x, 2, from({0, 0}, {2, 1}, DType::Int64)), IndexError);
  EXPECT_THROW(gather(x, 1, from({0, 0}, {2, 1}, DType::Float32)), TypeError);
  EXPECT_NO_THROW(gather(x, 1, from({0, 0, 0, 0, 0, 0, 0, 0}, {2, 4}, DType::Int64)));  // dim may be larger
}

TEST(ScatterAdd, PyTorchExamples) {
  Tensor src = ones({2, 5});
  Tensor one_row = from({0, 1, 2, 0, 0}, {1, 5}, DType::Int64);
  EXPECT_EQ(values(scatter_add(zeros({3, 5}), 0, one_row, src)),
            (std::vector<double>{1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0}));
  Tensor two_rows = from({0, 1, 2, 0, 0, 0, 1, 2, 2, 2}, {2, 5}, DType::Int64);
  EXPECT_EQ(values(scatter_add(zeros({3, 5}), 0, two_rows, src)),
            (std::vector<double>{2, 0, 0, 1, 1, 0, 2, 0, 0, 0, 0, 0, 2, 1, 1}));
  Tensor x = seq({2, 3});
  Tensor r = scatter_add(x, 1, from({2, 2}, {2, 1}, DType::Int64), from({10, 20}, {2, 1}));
  EXPECT_EQ(values(r), (std::vector<double>{0, 1, 12, 3, 4, 25}));
  EXPECT_EQ(values(x), (std::vector<double>{0, 1, 2, 3, 4, 5}));  // out of place
}

TEST(ScatterAdd, DuplicateHeavyIndicesMatchSerialSums) {
  // Many updates land on few elements: any race between threads would lose some.
  for (int64_t dim : {0, 1}) {
    Shape xs = dim == 0 ? Shape{4, 600} : Shape{600, 4};
    Shape is = dim == 0 ? Shape{1000, 600} : Shape{600, 1000};
    Tensor index = random_ints(is, DType::Int64, 0, 3);
    for (DType dt : {DType::Float32, DType::Int64, DType::Int32}) {
      Tensor x = random_ints(xs, dt), src = random_ints(is, dt);
      EXPECT_EQ(values(scatter_add(x, dim, index, src)), naive_scatter_add(x, dim, index, src));
    }
  }
  // 3-D, index smaller than x off dim and smaller than src; float16 accumulates exactly here.
  Tensor x = random_ints({3, 4, 5}, DType::Float16), src = random_ints({3, 6, 5}, DType::Float16);
  Tensor index = random_ints({2, 6, 3}, DType::Int64, 0, 3);
  EXPECT_EQ(values(scatter_add(x, 1, index, src)), naive_scatter_add(x, 1, index, src));
  Tensor b = random_ints({3, 4, 5}, DType::BFloat16);
  EXPECT_EQ(values(scatter_add(b, 1, index, src.to(DType::BFloat16))),
            naive_scatter_add(b, 1, index, src.to(DType::BFloat16)));
  EXPECT_EQ(values(scatter_add(from({3}, {}), 0, from({0}, {}, DType::Int64), from({4}, {}))),
            (std::vector<double>{7}));
}

TEST(ScatterAdd, Errors) {
  Tensor x = zeros({3, 5}), src = ones({2, 5});
  EXPECT_THROW(scatter_add(x, 0, from({0, 1}, {2, 1}, DType::Int64), src.to(DType::Float64)), TypeError);
  EXPECT_THROW(scatter_add(x, 0, from({0}, {1}, DType::Int64), src), ValueError);             // ndim
  EXPECT_THROW(scatter_add(x, 0, from({0, 0, 0}, {3, 1}, DType::Int64), src), ValueError);    // > src
  EXPECT_THROW(scatter_add(x, 0, zeros({1, 6}, DType::Int64), ones({1, 6})), ValueError);     // > x off dim
  EXPECT_THROW(scatter_add(x, 0, from({3}, {1, 1}, DType::Int64), src), RuntimeError);  // PyTorch's kind
  EXPECT_THROW(scatter_add(x, 0, from({-1}, {1, 1}, DType::Int64), src), RuntimeError);
  EXPECT_THROW(scatter_add(x, 0, from({0}, {1, 1}, DType::Float32), src), TypeError);
}

// ---- cat, stack, split, tril, triu -------------------------------------------------------------

TEST(Cat, ValuesPromotionAndErrors) {
  Tensor c = cat({seq({2, 3}), from({100, 101}, {2, 1})}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 4}));
  EXPECT_EQ(values(c), (std::vector<double>{0, 1, 2, 100, 3, 4, 5, 101}));
  Tensor r = cat({seq({1, 2}, DType::Int32), seq({2, 2}, DType::Float16).transpose(0, 1)}, -2);
  EXPECT_EQ(r.dtype(), DType::Float16);
  EXPECT_EQ(values(r), (std::vector<double>{0, 1, 0, 2, 1, 3}));
  EXPECT_EQ(cat({seq({2}, DType::Int32), seq({0}, DType::Int64)}, 0).dtype(), DType::Int64);
  EXPECT_THROW(cat({}, 0), ValueError);
  EXPECT_THROW(cat({seq({2, 3}), seq({3})}, 0), ValueError);
  EXPECT_THROW(cat({seq({2, 3}), seq({2, 4})}, 0), ValueError);
  EXPECT_THROW(cat({seq({}), seq({})}, 0), ValueError);
  EXPECT_THROW(cat({seq({2, 3})}, 2), IndexError);
}

TEST(Stack, NewDimAndErrors) {
  std::vector<Tensor> parts = {seq({2, 3}), ones({2, 3}), zeros({2, 3})};
  EXPECT_EQ(stack(parts, 0).shape(), (Shape{3, 2, 3}));
  Tensor s = stack(parts, -1);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 3}));
  EXPECT_EQ(values(s.select(2, 0)), values(parts[0]));
  EXPECT_EQ(values(s.select(2, 1)), values(parts[1]));
  EXPECT_EQ(values(stack({from({1}, {}), from({2}, {})}, 0)), (std::vector<double>{1, 2}));
  EXPECT_THROW(stack({seq({2, 3}), seq({3, 2})}, 0), ValueError);
  EXPECT_THROW(stack(parts, 3), IndexError);
  EXPECT_THROW(stack({}, 0), ValueError);
}

TEST(Split, ChunksSectionsViewsAndErrors) {
  Tensor x = seq({10, 2});
  std::vector<Tensor> parts = split(x, 3, 0);
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[3].shape(), (Shape{1, 2}));
  EXPECT_EQ(values(parts[1]), (std::vector<double>{6, 7, 8, 9, 10, 11}));
  for (const Tensor& p : parts) EXPECT_TRUE(p.is_alias_of(x));
  EXPECT_EQ(split(x, 20, 0).size(), 1u);
  EXPECT_EQ(split(seq({0, 2}), 0, 0).size(), 1u);
  std::vector<Tensor> cols = split(x, std::vector<int64_t>{1, 0, 1}, -1);
  ASSERT_EQ(cols.size(), 3u);
  EXPECT_EQ(cols[1].shape(), (Shape{10, 0}));
  EXPECT_EQ(values(cols[2]), values(x.select(1, 1)));
  EXPECT_THROW(split(x, std::vector<int64_t>{3, 3}, 0), ValueError);
  EXPECT_THROW(split(x, std::vector<int64_t>{11, -1}, 0), ValueError);
  EXPECT_THROW(split(x, 0, 0), ValueError);
  EXPECT_THROW(split(x, -2, 0), ValueError);
  EXPECT_THROW(split(seq({}), 1, 0), ValueError);
}

TEST(TrilTriu, DiagonalsBatchesAndDtypes) {
  Tensor x = seq({3, 4}) + ones({3, 4});
  EXPECT_EQ(values(tril(x)), (std::vector<double>{1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0}));
  EXPECT_EQ(values(tril(x, 1)), (std::vector<double>{1, 2, 0, 0, 5, 6, 7, 0, 9, 10, 11, 12}));
  EXPECT_EQ(values(tril(x, -1)), (std::vector<double>{0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0}));
  EXPECT_EQ(values(triu(x)), (std::vector<double>{1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12}));
  EXPECT_EQ(values(triu(x, -1)), (std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12}));
  Tensor b = triu(seq({2, 2, 2}, DType::Int32) + ones({2, 2, 2}, DType::Int32), 1);
  EXPECT_EQ(b.dtype(), DType::Int32);
  EXPECT_EQ(values(b), (std::vector<double>{0, 2, 0, 0, 0, 6, 0, 0}));
  EXPECT_EQ(tril(ones({3, 3}, DType::Bool)).dtype(), DType::Bool);
  EXPECT_THROW(tril(seq({3})), ValueError);
}

// ---- random --------------------------------------------------------------------------------------

TEST(Philox, KnownAnswerVectors) {
  // From the Random123 distribution (kat_vectors, philox4x32 with 10 rounds).
  Philox4 a = philox4x32_10({{0, 0, 0, 0}}, 0, 0);
  EXPECT_EQ(a.v[0], 0x6627e8d5u);
  EXPECT_EQ(a.v[3], 0x9b00dbd8u);
  Philox4 b = philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(b.v[0], 0x408f276du);
  EXPECT_EQ(b.v[3], 0x6d5451fdu);
  Philox4 c = philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(c.v[0], 0xd16cfe09u);
  EXPECT_EQ(c.v[1], 0x94fdccebu);
  EXPECT_EQ(c.v[2], 0x5001e420u);
  EXPECT_EQ(c.v[3], 0x24126ea1u);
}

TEST(Random, ElementsFollowTheStreamWhateverTheChunking) {
  // Element i of rand is number i of the stream; of randn, numbers 2i and 2i + 1. Long enough to
  // be split across threads.
  const uint64_t seed = 0x123456789abcdefull;
  manual_seed(seed);
  std::vector<double> u = values(rand({100003}));
  PhiloxStream s(seed, 0);
  for (size_t i = 0; i < u.size(); ++i) ASSERT_EQ(u[i], double(s.next() >> 8) / 16777216.0) << "at " << i;
  // The front-end rounds each reservation up to whole blocks of four.
  std::vector<double> n = values(randn({50001}));
  PhiloxStream t(seed, 100004);
  for (size_t i = 0; i < n.size(); ++i) {
    double u1 = double(t.next() >> 8) / 16777216.0, u2 = double(t.next() >> 8) / 16777216.0;
    ASSERT_NEAR(n[i], std::sqrt(-2 * std::log(1 - u1)) * std::cos(6.283185307179586 * u2), 1e-5) << "at " << i;
  }
}

TEST(Random, DropoutKeepsWhatTheStreamSaysWhateverTheChunking) {
  // Element i of a dropout is kept when number offset + i is at least dropout_threshold(p); the
  // offset comes after the rand before it, rounded up to a whole block.
  const uint64_t seed = 99;
  manual_seed(seed);
  rand({5});
  const double p = 0.3;
  std::vector<double> x = values(seq({100003}, DType::Float64)), y = values(dropout(seq({100003}, DType::Float64), p));
  PhiloxStream s(seed, 8);
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_EQ(y[i], s.next() >= dropout_threshold(float(p)) ? x[i] * (1 / (1 - p)) : 0.0) << "at " << i;
}

TEST(Random, ManualSeedRepeatsAndStreamsAdvance) {
  manual_seed(42);
  std::vector<double> a = values(rand({1000})), an = values(randn({1000}));
  manual_seed(42);
  EXPECT_EQ(values(rand({1000})), a);
  EXPECT_EQ(values(randn({1000})), an);
  EXPECT_NE(values(rand({1000})), a);
  manual_seed(43);
  EXPECT_NE(values(rand({1000})), a);
}

TEST(Random, RangesAndMoments) {
  manual_seed(7);
  for (DType dt : {DType::Float16, DType::BFloat16, DType::Float32, DType::Float64}) {
    Tensor u = rand({200000}, dt);
    EXPECT_EQ(u.dtype(), dt);
    std::vector<double> v = values(u);
    double lo = 1, hi = 0, sum = 0, sq = 0;
    for (double x : v) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      sum += x;
      sq += x * x;
    }
    double mean = sum / v.size();
    EXPECT_GE(lo, 0.0);
    EXPECT_LT(hi, 1.0);
    EXPECT_NEAR(mean, 0.5, 0.005) << dtype_name(dt);
    EXPECT_NEAR(sq / v.size() - mean * mean, 1.0 / 12, 0.003) << dtype_name(dt);

    std::vector<double> g = values(randn({200000}, dt));
    double gs = 0, gq = 0;
    for (double x : g) {
      ASSERT_TRUE(std::isfinite(x));
      gs += x;
      gq += x * x;
    }
    EXPECT_NEAR(gs / g.size(), 0.0, 0.015) << dtype_name(dt);
    EXPECT_NEAR(gq / g.size(), 1.0, 0.02) << dtype_name(dt);
  }
  EXPECT_THROW(rand({3}, DType::Int32), TypeError);
}
