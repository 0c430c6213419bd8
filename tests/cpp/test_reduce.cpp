// Reductions and softmax through the public front-ends: output shapes (keepdim, axis tuples,
// negative axes, size-0 and size-1 dims, 0-d), values against double-precision loops over every
// layout the CPU kernels take ([outer, r, inner] with inner == 1 and inner > 1, the reduced dim
// split across threads), dtypes, NaN/inf semantics and accuracy on long rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops.h"

using namespace orchard;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A contiguous tensor with element i = f(i), written directly into its memory.
template <typename F> Tensor make(const Shape& shape, DType dtype, F f) {
  Tensor t = empty(shape, dtype);
  ORCHARD_DISPATCH(dtype, {
    T* p = t.data_as<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = T(compute_t<T>(f(i)));
  });
  return t;
}

// Deterministic values in [-3, 3] with no exact ties.
Tensor wavy(const Shape& shape, DType dtype = DType::Float32) {
  return make(shape, dtype, [](int64_t i) { return 3.0 * std::sin(0.37 * double(i) + 0.1); });
}

// The elements of t in row-major order, read through its strides.
std::vector<double> read(const Tensor& t) {
  std::vector<double> out;
  std::vector<int64_t> idx(t.ndim(), 0);
  for (int64_t n = 0; n < t.numel(); ++n) {
    int64_t off = 0;
    for (int64_t d = 0; d < t.ndim(); ++d) off += idx[d] * t.strides()[d];
    ORCHARD_DISPATCH(t.dtype(), out.push_back(double(compute_t<T>(t.data_as<T>()[off]))));
    for (int64_t d = t.ndim() - 1; d >= 0 && ++idx[d] == t.shape()[d]; --d) idx[d] = 0;
  }
  return out;
}

// The elements reduced into each output of a reduction of x over `dims` (empty: all), each group
// in the row-major order of the reduced dims; outputs in the row-major order of the kept dims.
std::vector<std::vector<double>> groups(const Tensor& x, std::vector<int64_t> dims) {
  int64_t nd = x.ndim();
  for (int64_t& d : dims) d = d < 0 ? d + nd : d;
  std::vector<bool> reduced(nd, dims.empty());
  for (int64_t d : dims) reduced[d] = true;
  int64_t n_out = 1;
  for (int64_t d = 0; d < nd; ++d) n_out *= reduced[d] ? 1 : x.shape()[d];
  std::vector<std::vector<double>> g(n_out);
  std::vector<double> v = read(x);
  std::vector<int64_t> idx(nd, 0);
  for (double value : v) {
    int64_t o = 0;
    for (int64_t d = 0; d < nd; ++d)
      if (!reduced[d]) o = o * x.shape()[d] + idx[d];
    g[o].push_back(value);
    for (int64_t d = nd - 1; d >= 0 && ++idx[d] == x.shape()[d]; --d) idx[d] = 0;
  }
  return g;
}

// PyTorch semantics in double: NaN propagates through max/min, arg ops give the first extreme
// (or first NaN), var divides by max(n - correction, 0), logsumexp of nothing or of -infs is -inf.
double reference(ReduceOp op, const std::vector<double>& g, int64_t correction) {
  double sum = 0;
  for (double v : g) sum += v;
  bool is_max = op == ReduceOp::Max || op == ReduceOp::ArgMax || op == ReduceOp::LogSumExp;
  size_t best = 0;
  for (size_t k = 1; k < g.size() && !std::isnan(g[best]); ++k)
    if (std::isnan(g[k]) || (is_max ? g[k] > g[best] : g[k] < g[best])) best = k;
  switch (op) {
    case ReduceOp::Sum: return sum;
    case ReduceOp::Mean: return sum / double(g.size());
    case ReduceOp::Max:
    case ReduceOp::Min: return g[best];
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin: return double(best);
    case ReduceOp::Var: {
      double mean = sum / double(g.size()), ss = 0;
      for (double v : g) ss += (v - mean) * (v - mean);
      return ss / double(std::max<int64_t>(int64_t(g.size()) - correction, 0));
    }
    case ReduceOp::LogSumExp: {
      if (g.empty()) return -kInf;
      double shift = std::isinf(g[best]) ? 0.0 : g[best], s = 0;
      for (double v : g) s += std::exp(v - shift);
      return std::log(s) + shift;
    }
  }
  return kNaN;
}

std::vector<double> reference(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                              int64_t correction = 1) {
  std::vector<double> out;
  for (const auto& g : groups(x, dims)) out.push_back(reference(op, g, correction));
  return out;
}

// Softmax of x along dim in double, in row-major order of x.
std::vector<double> reference_softmax(const Tensor& x, int64_t dim, bool log) {
  int64_t nd = x.ndim(), d = dim < 0 ? dim + nd : dim;
  int64_t n = x.shape()[d], inner = 1;
  for (int64_t i = d + 1; i < nd; ++i) inner *= x.shape()[i];
  std::vector<double> v = read(x), out(v.size());
  for (size_t base = 0; base < v.size(); base += size_t(n * inner))
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t k) -> double& { return v[base + size_t(k * inner + j)]; };
      double m = -kInf, s = 0;
      for (int64_t k = 0; k < n; ++k) m = std::max(m, at(k));
      for (int64_t k = 0; k < n; ++k) s += std::exp(at(k) - m);
      for (int64_t k = 0; k < n; ++k)
        out[base + size_t(k * inner + j)] = log ? at(k) - m - std::log(s) : std::exp(at(k) - m) / s;
    }
  return out;
}

// Equal within atol + rtol * |want|; NaN matches NaN and infinities must match exactly.
void expect_close(const Tensor& got, const std::vector<double>& want, double rtol, double atol,
                  const std::string& what = "") {
  std::vector<double> g = read(got);
  ASSERT_EQ(g.size(), want.size()) << what;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(want[i]) || std::isinf(want[i])) {
      EXPECT_TRUE(std::isnan(want[i]) ? std::isnan(g[i]) : g[i] == want[i])
          << what << " [" << i << "]: got " << g[i] << ", want " << want[i];
    } else {
      EXPECT_NEAR(g[i], want[i], atol + rtol * std::fabs(want[i])) << what << " [" << i << "]";
    }
  }
}

const std::vector<std::vector<int64_t>> kDimSets = {{0}, {1}, {2}, {-1}, {0, 1}, {1, 2}, {0, 2}, {-3, -1}, {0, 1, 2}, {}};
const ReduceOp kValueOps[] = {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Var,
                              ReduceOp::LogSumExp};

std::string describe(ReduceOp op, const std::vector<int64_t>& dims) {
  static const char* names[] = {"sum", "mean", "amax", "amin", "argmax", "argmin", "var", "logsumexp"};
  std::string s = std::string(names[int(op)]) + " dims {";
  for (int64_t d : dims) s += std::to_string(d) + ",";
  return s + "}";
}

}  // namespace

TEST(ReduceShapes, KeepdimTuplesNegativeAndAllAxes) {
  Tensor x = wavy({2, 3, 4});
  EXPECT_EQ(sum(x, {1}).shape(), (Shape{2, 4}));
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(mean(x, {-1}).shape(), (Shape{2, 3}));
  EXPECT_EQ(amax(x, {-1}, true).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(var(x, {0, 2}).shape(), (Shape{3}));
  EXPECT_EQ(var(x, {0, 2}, 1, true).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(logsumexp(x, {-3, -2}).shape(), (Shape{4}));
  EXPECT_EQ(amin(x, {2, 0}).shape(), (Shape{3}));
  EXPECT_EQ(sum(x).shape(), Shape{});
  EXPECT_EQ(sum(x, {}, true).shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(sum(x, {0, 1, 2}, true).shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(reduce(ReduceOp::Mean, x, {1, 2}, false).shape(), (Shape{2}));
  EXPECT_EQ(argmax(x, 1).shape(), (Shape{2, 4}));
  EXPECT_EQ(argmin(x, -1, true).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(argmax(x, std::nullopt).shape(), Shape{});
  EXPECT_EQ(argmax(x, std::nullopt, true).shape(), (Shape{1, 1, 1}));
  EXPECT_EQ(softmax(x, 1).shape(), x.shape());
  EXPECT_EQ(log_softmax(x, -1).shape(), x.shape());
  EXPECT_THROW(sum(x, {3}), IndexError);
  EXPECT_THROW(sum(x, {1, -2}), ValueError);
}

TEST(ReduceShapes, SizeZeroSizeOneAndScalars) {
  Tensor e = wavy({0, 3});
  EXPECT_EQ(sum(e, {0}).shape(), (Shape{3}));
  expect_close(sum(e, {0}), {0, 0, 0}, 0, 0, "sum over empty");
  EXPECT_EQ(sum(e, {1}).shape(), (Shape{0}));
  EXPECT_EQ(sum(e, {1}, true).shape(), (Shape{0, 1}));
  expect_close(mean(e, {0}), {kNaN, kNaN, kNaN}, 0, 0, "mean over empty");
  expect_close(var(e, {0}), {kNaN, kNaN, kNaN}, 0, 0, "var over empty");
  expect_close(logsumexp(e, {0}), {-kInf, -kInf, -kInf}, 0, 0, "logsumexp over empty");
  expect_close(sum(e), {0}, 0, 0, "sum of empty");
  EXPECT_THROW(amax(e, {0}), ValueError);
  EXPECT_THROW(amin(e), ValueError);
  EXPECT_THROW(argmax(e, std::nullopt), ValueError);
  EXPECT_THROW(argmin(e, 0), ValueError);
  EXPECT_EQ(amax(e, {1}).shape(), (Shape{0}));
  EXPECT_EQ(argmax(e, 1).shape(), (Shape{0}));
  EXPECT_EQ(softmax(e, 1).shape(), (Shape{0, 3}));
  EXPECT_EQ(softmax(wavy({3, 0}), 1).shape(), (Shape{3, 0}));

  Tensor x = wavy({3, 1, 4});
  std::vector<double> xv = read(x);
  expect_close(sum(x, {1}), xv, 0, 0, "sum over a size-1 dim");
  expect_close(amax(x, {1}, true), xv, 0, 0, "amax over a size-1 dim");
  expect_close(argmax(x, 1), std::vector<double>(12, 0.0), 0, 0, "argmax over a size-1 dim");
  expect_close(var(x, {1}, 0), std::vector<double>(12, 0.0), 0, 0, "var, correction 0");
  expect_close(var(x, {1}), std::vector<double>(12, kNaN), 0, 0, "var of one element");
  expect_close(softmax(x, 1), std::vector<double>(12, 1.0), 1e-7, 0, "softmax over a size-1 dim");

  Tensor s = full({}, 2.5);
  EXPECT_EQ(sum(s).shape(), Shape{});
  expect_close(sum(s, {0}), {2.5}, 0, 0, "sum of a 0-d tensor");
  expect_close(mean(s, {-1}, true), {2.5}, 0, 0, "mean of a 0-d tensor");
  expect_close(argmax(s, 0), {0}, 0, 0, "argmax of a 0-d tensor");
  EXPECT_EQ(argmax(s, std::nullopt, true).shape(), Shape{});
  expect_close(softmax(s, 0), {1.0}, 0, 0, "softmax of a 0-d tensor");
  expect_close(log_softmax(s, -1), {0.0}, 0, 0, "log_softmax of a 0-d tensor");
}

TEST(ReduceValues, EveryOpOverEveryAxisSet) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    double tol = dtype == DType::Float32 ? 1e-5 : 1e-12;
    Tensor x = wavy({3, 4, 5}, dtype);
    for (const auto& dims : kDimSets)
      for (ReduceOp op : kValueOps) {
        std::vector<double> want = reference(op, x, dims);
        expect_close(reduce(op, x, dims, false), want, tol, tol, describe(op, dims));
        Tensor kept = reduce(op, x, dims, true);
        EXPECT_EQ(kept.ndim(), 3);
        expect_close(kept, want, tol, tol, describe(op, dims) + " keepdim");
        EXPECT_EQ(kept.dtype(), dtype);
      }
  }
}

TEST(ReduceValues, WideInnerDimsAndManyOuterRows) {
  // inner > 512 spans several column tiles; many short rows exercise the per-row path.
  Tensor x = wavy({3, 7, 1100});
  Tensor rows = wavy({2000, 3});
  for (ReduceOp op : kValueOps) {
    expect_close(reduce(op, x, {1}, false), reference(op, x, {1}), 2e-6, 2e-6, describe(op, {1}));
    expect_close(reduce(op, rows, {1}, false), reference(op, rows, {1}), 2e-6, 2e-6, describe(op, {1}));
    expect_close(reduce(op, rows, {0}, false), reference(op, rows, {0}), 2e-5, 2e-5, describe(op, {0}));
  }
}

TEST(ReduceValues, VarianceCorrections) {
  Tensor x = wavy({4, 6});
  for (int64_t c : {0, 1, 2, 5})
    expect_close(var(x, {1}, c), reference(ReduceOp::Var, x, {1}, c), 2e-6, 2e-6, "correction " + std::to_string(c));
  // r - correction <= 0 divides by zero: inf when the deviations are nonzero, NaN when they are 0.
  expect_close(var(x, {1}, 6), std::vector<double>(4, kInf), 0, 0, "correction == r");
  expect_close(var(x, {1}, 9), std::vector<double>(4, kInf), 0, 0, "correction > r");
  expect_close(var(full({2, 3}, 1.5), {1}, 3), {kNaN, kNaN}, 0, 0, "constant rows, correction == r");
  expect_close(var(full({2, 3}, 1.5), {1}), {0, 0}, 0, 0, "constant rows");
}

TEST(ReduceValues, NonContiguousInputs) {
  Tensor base = wavy({6, 5, 4});
  Tensor t = base.transpose(0, 2);                           // [4, 5, 6], strides (1, 4, 20)
  Tensor p = base.permute({1, 0, 2}).slice(2, 1, 4, 2);      // [5, 6, 2], strided, offset 1
  ASSERT_FALSE(t.is_contiguous());
  ASSERT_FALSE(p.is_contiguous());
  for (const Tensor& x : {t, p}) {
    for (const auto& dims : kDimSets)
      for (ReduceOp op : kValueOps)
        expect_close(reduce(op, x, dims, false), reference(op, x, dims), 2e-6, 2e-6, describe(op, dims));
    for (int64_t d = 0; d < 3; ++d) {
      expect_close(argmax(x, d), reference(ReduceOp::ArgMax, x, {d}), 0, 0, "argmax");
      expect_close(argmin(x, d), reference(ReduceOp::ArgMin, x, {d}), 0, 0, "argmin");
      expect_close(softmax(x, d), reference_softmax(x, d, false), 1e-6, 1e-7, "softmax");
      expect_close(log_softmax(x, d), reference_softmax(x, d, true), 1e-6, 1e-6, "log_softmax");
    }
  }
}

TEST(ArgReduce, FirstIndexOfTiesAlongEveryDimAndFlattened) {
  // Values in {0..4} repeat, so most slices hold several copies of their extreme.
  for (DType dtype : {DType::Float32, DType::Int32, DType::Int64, DType::Float16, DType::BFloat16}) {
    Tensor x = make({4, 5, 6}, dtype, [](int64_t i) { return double((i * 7) % 5); });
    for (int64_t d : {0, 1, 2, -1}) {
      expect_close(argmax(x, d), reference(ReduceOp::ArgMax, x, {d}), 0, 0, "argmax dim " + std::to_string(d));
      expect_close(argmin(x, d, true), reference(ReduceOp::ArgMin, x, {d}), 0, 0, "argmin dim " + std::to_string(d));
    }
    expect_close(argmax(x, std::nullopt), reference(ReduceOp::ArgMax, x, {}), 0, 0, "flat argmax");
    expect_close(argmin(x, std::nullopt, true), reference(ReduceOp::ArgMin, x, {}), 0, 0, "flat argmin");
    EXPECT_EQ(argmax(x, 0).dtype(), DType::Int64);
  }
  Tensor b = make({3, 4}, DType::Bool, [](int64_t i) { return double(i % 3 == 2); });
  expect_close(argmax(b, 1), {2, 1, 0}, 0, 0, "bool argmax");
  expect_close(argmin(b, 0), {0, 0, 1, 0}, 0, 0, "bool argmin");
}

TEST(ReduceDtypes, IntegerBoolAndHalfPrecision) {
  Tensor i = make({3, 2}, DType::Int32, [](int64_t k) { return k % 2 ? -7.0 : 2e9; });
  Tensor s = sum(i, {0});
  EXPECT_EQ(s.dtype(), DType::Int64);
  EXPECT_EQ(s.data_as<int64_t>()[0], int64_t(6000000000));
  EXPECT_EQ(s.data_as<int64_t>()[1], -21);
  EXPECT_EQ(amax(i).dtype(), DType::Int32);
  expect_close(amax(i, {1}), {2e9, 2e9, 2e9}, 0, 0, "int32 amax");
  expect_close(amin(i), {-7}, 0, 0, "int32 amin");
  Tensor l = make({5}, DType::Int64, [](int64_t k) { return double(k * k) - 3; });
  expect_close(sum(l), {-15 + 30}, 0, 0, "int64 sum");
  expect_close(amin(l), {-3}, 0, 0, "int64 amin");
  EXPECT_EQ(logsumexp(l, {0}).dtype(), DType::Float32);
  expect_close(logsumexp(l, {0}), reference(ReduceOp::LogSumExp, l, {0}), 1e-6, 0, "int64 logsumexp");
  EXPECT_THROW(mean(l), TypeError);
  EXPECT_THROW(var(i), TypeError);
  EXPECT_THROW(softmax(l, 0), TypeError);

  Tensor b = make({4, 3}, DType::Bool, [](int64_t k) { return double(k % 4 == 1); });
  EXPECT_EQ(sum(b).dtype(), DType::Int64);
  expect_close(sum(b, {0}), {1, 1, 1}, 0, 0, "bool sum");
  EXPECT_EQ(amax(b).dtype(), DType::Bool);
  expect_close(amax(b, {1}), {1, 1, 0, 1}, 0, 0, "bool amax");
  expect_close(amin(b, {0}), {0, 0, 0}, 0, 0, "bool amin");

  // 16-bit floats accumulate in float: a float16 accumulator would stop at 2048 and a bfloat16 at 256.
  Tensor h = full({4096}, 1.0, DType::Float16);
  EXPECT_EQ(sum(h).dtype(), DType::Float16);
  expect_close(sum(h), {4096}, 0, 0, "float16 sum");
  expect_close(mean(h), {1}, 0, 0, "float16 mean");
  expect_close(sum(full({1000, 2}, 1.0, DType::BFloat16), {0}), {1000, 1000}, 0, 0, "bfloat16 column sum");
  for (DType dtype : {DType::Float16, DType::BFloat16}) {
    Tensor x = wavy({6, 40}, dtype);
    for (ReduceOp op : kValueOps)
      expect_close(reduce(op, x, {1}, false), reference(op, x, {1}), 1e-2, 1e-2, describe(op, {1}));
    expect_close(softmax(x, 1), reference_softmax(x, 1, false), 1e-2, 1e-3, "16-bit softmax");
  }
}

TEST(ReduceSpecialValues, NanAndInfinities) {
  // Rows: NaN in the middle, two NaNs, infinities, all -inf, all +inf.
  const double rows[5][4] = {{1, kNaN, 3, 0}, {kNaN, 2, kNaN, 5}, {kInf, -kInf, 0, 2},
                             {-kInf, -kInf, -kInf, -kInf}, {kInf, 1, kInf, 0}};
  for (DType dtype : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16}) {
    Tensor x = make({5, 4}, dtype, [&](int64_t i) { return rows[i / 4][i % 4]; });
    Tensor xt = x.transpose(0, 1).contiguous();  // the same slices down columns
    for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax, ReduceOp::ArgMin, ReduceOp::Sum, ReduceOp::LogSumExp}) {
      std::vector<double> want = reference(op, x, {1});
      expect_close(reduce(op, x, {1}, false), want, 1e-6, 1e-6, describe(op, {1}));
      expect_close(reduce(op, xt, {0}, false), want, 1e-6, 1e-6, describe(op, {0}));
    }
    expect_close(amax(x), {kNaN}, 0, 0, "amax of all");
    expect_close(argmax(x, std::nullopt), {1}, 0, 0, "flat argmax finds the first NaN");
  }
  std::vector<double> lse = read(logsumexp(make({5, 4}, DType::Float32, [&](int64_t i) { return rows[i / 4][i % 4]; }), {1}));
  EXPECT_TRUE(std::isnan(lse[0]));
  EXPECT_EQ(lse[3], -kInf);
  EXPECT_EQ(lse[4], kInf);

  Tensor s = make({3, 3}, DType::Float32, [](int64_t i) {
    const double v[9] = {-kInf, -kInf, -kInf, -kInf, 0, 1, 1000, 1001, 999};
    return v[i];
  });
  expect_close(softmax(s, 1), reference_softmax(s, 1, false), 1e-6, 1e-7, "softmax with infinities");
  std::vector<double> sm = read(softmax(s, 1)), lsm = read(log_softmax(s, 1));
  for (int k = 0; k < 3; ++k) {
    EXPECT_TRUE(std::isnan(sm[k])) << "softmax of an all -inf row is NaN";
    EXPECT_TRUE(std::isnan(lsm[k])) << "log_softmax of an all -inf row is NaN";
  }
  EXPECT_EQ(sm[3], 0.0);
  EXPECT_EQ(lsm[3], -kInf);
  std::vector<double> want = reference_softmax(s, 1, true);
  expect_close(log_softmax(s, 1).slice(0, 1, 3), std::vector<double>(want.begin() + 3, want.end()), 1e-6, 1e-6,
               "log_softmax of large and -inf values");
}

TEST(Softmax, EveryDimMatchesReferenceAndRowsSumToOne) {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    Tensor x = wavy({3, 5, 7}, dtype);
    for (int64_t d : {0, 1, 2, -1, -3}) {
      Tensor y = softmax(x, d);
      EXPECT_EQ(y.dtype(), dtype);
      expect_close(y, reference_softmax(x, d, false), 1e-6, 1e-7, "softmax dim " + std::to_string(d));
      expect_close(sum(y, {d}), std::vector<double>(105 / x.shape()[(d + 3) % 3], 1.0), 1e-6, 0, "row sums");
      expect_close(log_softmax(x, d), reference_softmax(x, d, true), 1e-6, 1e-6, "log_softmax dim " + std::to_string(d));
    }
  }
  Tensor wide = wavy({4, 5000});  // rows longer than one pairwise leaf
  expect_close(softmax(wide, 1), reference_softmax(wide, 1, false), 1e-5, 1e-9, "wide softmax");
  expect_close(log_softmax(wide, 1), reference_softmax(wide, 1, true), 1e-6, 1e-5, "wide log_softmax");
}

TEST(ReduceAccuracy, LongRowsAndColumnsStayCloseToDouble) {
  // Positive values, so the sum cannot hide error through cancellation.
  auto value = [](int64_t i) { return 0.1 + std::fmod(double(i) * 0.6180339887, 1.0); };
  const int64_t n = int64_t(1) << 20;
  Tensor row = make({n}, DType::Float32, value);
  double want = reference(ReduceOp::Sum, row, {0})[0];
  EXPECT_NEAR(read(sum(row))[0], want, 1e-6 * want);
  EXPECT_NEAR(read(mean(row))[0], want / double(n), 1e-6 * want / double(n));
  expect_close(var(row), reference(ReduceOp::Var, row, {}), 1e-5, 0, "long row var");
  expect_close(logsumexp(row, {0}), reference(ReduceOp::LogSumExp, row, {0}), 1e-6, 0, "long row logsumexp");

  Tensor cols = make({n, 2}, DType::Float32, value);  // reduced down the columns
  expect_close(sum(cols, {0}), reference(ReduceOp::Sum, cols, {0}), 1e-6, 0, "long column sum");
  expect_close(var(cols, {0}), reference(ReduceOp::Var, cols, {0}), 1e-5, 0, "long column var");

  Tensor rows = make({3, 300000}, DType::Float32, value);  // a few rows too long for one task
  expect_close(sum(rows, {1}), reference(ReduceOp::Sum, rows, {1}), 1e-6, 0, "few long rows");

  // A periodic pattern makes rounding errors add up rather than cancel; NumPy's pairwise sum is
  // within 1.2e-7 of the exact value here.
  Tensor periodic = make({int64_t(1) << 22}, DType::Float32, [](int64_t i) { return i % 3 ? 0.1 : 1.3; });
  expect_close(sum(periodic), reference(ReduceOp::Sum, periodic, {}), 2e-7, 0, "periodic row");
  Tensor periodic_cols = periodic.reshape({int64_t(1) << 21, 2});
  expect_close(sum(periodic_cols, {0}), reference(ReduceOp::Sum, periodic_cols, {0}), 2e-7, 0, "periodic columns");
}

TEST(ArgReduce, FirstExtremeAcrossLongRowsAndColumns) {
  // Long enough that the reduced dim is split between threads: the first copy must still win.
  const int64_t n = int64_t(1) << 20;
  auto with = [&](const Shape& shape, std::vector<std::pair<int64_t, double>> marks) {
    return make(shape, DType::Float32, [&](int64_t i) {
      for (auto [at, v] : marks)
        if (i == at) return v;
      return std::sin(double(i));
    });
  };
  expect_close(argmax(with({n}, {{900000, 5}, {3, 5}}), 0), {3}, 0, 0, "tie across chunks");
  expect_close(argmin(with({n}, {{n - 1, -5}, {700000, -5}}), 0), {700000}, 0, 0, "tie in the last chunk");
  expect_close(argmax(with({n}, {{800000, kNaN}, {700000, kNaN}, {5, 9}}), 0), {700000}, 0, 0, "first NaN");
  expect_close(amax(with({n}, {{n - 2, kNaN}}), {0}), {kNaN}, 0, 0, "NaN in the last chunk");
  expect_close(amin(with({n}, {{123, -7}}), {0}), {-7}, 0, 0, "min in the first chunk");
  // Columns: [n/2, 2] reduced over dim 0.
  Tensor c = with({n / 2, 2}, {{2 * 400000 + 1, 5}, {2 * 10 + 1, 5}, {2 * 300000, -5}, {2 * 400000, -5}});
  expect_close(argmax(c, 0), {reference(ReduceOp::ArgMax, c, {0})[0], 10}, 0, 0, "column argmax ties");
  expect_close(argmin(c, 0), {300000, reference(ReduceOp::ArgMin, c, {0})[1]}, 0, 0, "column argmin ties");
}
