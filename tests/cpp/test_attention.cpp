// FlashAttention (flash_attention, scaled_dot_product_attention, the dropout mask): forward and
// the three gradients against attention computed naively in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "autograd.h"
#include "ops.h"
#include "philox.h"

using namespace orchard;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> values(const Tensor& t) {
  Tensor c = t.to(DType::Float64).contiguous();
  return std::vector<double>(c.data_as<double>(), c.data_as<double>() + c.numel());
}

Tensor from(const std::vector<double>& v, const Shape& shape, DType dtype = DType::Float32) {
  Tensor t = empty(shape, DType::Float64);
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(double));  // (data() may be null)
  return t.to(dtype);
}

struct Case {
  int64_t B, Hq, Hkv, Lq, Lk, D;
  bool causal = false;
  double dropout = 0;
  enum Mask { None, Bool, Float } mask = None;
  DType dtype = DType::Float32;
};

std::string name(const Case& c) {
  return detail::concat("B", c.B, " Hq", c.Hq, " Hkv", c.Hkv, " Lq", c.Lq, " Lk", c.Lk, " D", c.D,
                        c.causal ? " causal" : "", " dropout ", c.dropout, " mask ", int(c.mask), " ",
                        dtype_name(c.dtype));
}

// Attention and its gradients in double. `add` is the additive mask [B, Hq, Lq, Lk] (empty: none),
// `keep` the dropout keep-mask (empty: no dropout). Fully masked rows give 0, as the kernel.
struct Reference {
  std::vector<double> out, dq, dk, dv;
};

Reference reference(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, const std::vector<double>& dout, const std::vector<double>& add,
                    const std::vector<double>& keep, double scale) {
  Reference r{std::vector<double>(q.size()), std::vector<double>(q.size()), std::vector<double>(k.size()),
              std::vector<double>(v.size())};
  const int64_t D = c.D, Lk = c.Lk;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h) {
      const int64_t qh = b * c.Hq + h, kh = b * c.Hkv + h / (c.Hq / c.Hkv);
      for (int64_t i = 0; i < c.Lq; ++i) {
        const double* qi = &q[(qh * c.Lq + i) * D];
        const double* gi = &dout[(qh * c.Lq + i) * D];
        const int64_t row = (qh * c.Lq + i) * Lk;
        std::vector<double> p(Lk), z(Lk, 1.0), dp(Lk);
        double mx = -kInf, sum = 0, di = 0;
        for (int64_t j = 0; j < Lk; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += qi[d] * k[(kh * Lk + j) * D + d];
          s = s * scale + (add.empty() ? 0.0 : add[row + j]);
          p[j] = c.causal && j > i ? -kInf : s;
          mx = std::max(mx, p[j]);
        }
        for (int64_t j = 0; j < Lk; ++j) sum += p[j] = mx == -kInf ? 0.0 : std::exp(p[j] - mx);
        for (int64_t j = 0; j < Lk; ++j) {
          p[j] = sum > 0 ? p[j] / sum : 0.0;
          if (!keep.empty()) z[j] = keep[row + j] / (1 - c.dropout);
          double acc = 0;
          for (int64_t d = 0; d < D; ++d) acc += gi[d] * v[(kh * Lk + j) * D + d];
          dp[j] = acc * z[j];
          di += p[j] * dp[j];
          for (int64_t d = 0; d < D; ++d) r.out[(qh * c.Lq + i) * D + d] += p[j] * z[j] * v[(kh * Lk + j) * D + d];
        }
        for (int64_t j = 0; j < Lk; ++j) {
          const double ds = p[j] * (dp[j] - di) * scale;
          for (int64_t d = 0; d < D; ++d) {
            r.dq[(qh * c.Lq + i) * D + d] += ds * k[(kh * Lk + j) * D + d];
            r.dk[(kh * Lk + j) * D + d] += ds * qi[d];
            r.dv[(kh * Lk + j) * D + d] += p[j] * z[j] * gi[d];
          }
        }
      }
    }
  return r;
}

// Max |got - want| over max |want|.
double rel_error(const Tensor& got, const std::vector<double>& want) {
  std::vector<double> g = values(got);
  EXPECT_EQ(g.size(), want.size());
  double err = 0, mag = 1e-30;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::abs(g[i] - want[i]));
    mag = std::max(mag, std::abs(want[i]));
  }
  return err / mag;
}

double tolerance(DType t) { return t == DType::Float32 ? 2e-5 : t == DType::Float16 ? 4e-3 : 3e-2; }

void check_case(const Case& c) {
  SCOPED_TRACE(name(c));
  manual_seed(7);
  Tensor q = randn({c.B, c.Hq, c.Lq, c.D}).to(c.dtype), k = randn({c.B, c.Hkv, c.Lk, c.D}).to(c.dtype),
         v = randn({c.B, c.Hkv, c.Lk, c.D}).to(c.dtype), dout = randn({c.B, c.Hq, c.Lq, c.D}).to(c.dtype);
  for (const Tensor& t : {q, k, v}) autograd::set_requires_grad(t, true);

  // Masks: random scores knocked out (-inf), and query row 1 of every head fully masked.
  Tensor mask;
  std::vector<double> add;
  if (c.mask != Case::None) {
    add = values(randn({c.B, c.Hq, c.Lq, c.Lk}));
    for (size_t i = 0; i < add.size(); ++i) {
      const int64_t row = int64_t(i) / c.Lk % c.Lq;
      if (i % 5 == 2 || row == 1) add[i] = -kInf;
      else if (c.mask == Case::Bool) add[i] = 0;
    }
    std::vector<double> attend(add.size());
    for (size_t i = 0; i < add.size(); ++i) attend[i] = add[i] == 0;
    const Shape scores{c.B, c.Hq, c.Lq, c.Lk};
    mask = c.mask == Case::Bool ? from(attend, scores, DType::Bool) : from(add, scores);
  }
  const uint64_t seed = 99;
  std::vector<double> keep;
  if (c.dropout > 0) keep = values(attention_dropout_mask(c.B, c.Hq, c.Lq, c.Lk, c.dropout, seed));

  const double scale = 1 / std::sqrt(double(c.D));
  Tensor out = flash_attention(q, k, v, std::nullopt, c.dropout, c.causal, seed, mask.defined() ? &mask : nullptr);
  std::vector<Tensor> grads = autograd::grad({out}, {q, k, v}, {dout}, false, false);

  // The reference sees the inputs as the kernel does: rounded to the dtype.
  Reference r = reference(c, values(q), values(k), values(v), values(dout), add, keep, scale);
  const double tol = tolerance(c.dtype);
  EXPECT_LT(rel_error(out, r.out), tol) << "out";
  EXPECT_LT(rel_error(grads[0], r.dq), tol) << "dq";
  EXPECT_LT(rel_error(grads[1], r.dk), tol) << "dk";
  EXPECT_LT(rel_error(grads[2], r.dv), tol) << "dv";
}

TEST(FlashAttention, MatchesReference) {
  const Case cases[] = {
      {1, 1, 1, 5, 7, 3},
      {2, 3, 3, 70, 70, 16, true},
      {1, 4, 2, 97, 130, 59, true},                      // GQA, Lq < Lk, odd head dim
      {1, 4, 2, 130, 97, 40, true},                      // Lq > Lk
      {2, 2, 1, 65, 200, 8, false, 0, Case::Float},      // multi-query, additive mask
      {1, 3, 3, 33, 65, 64, true, 0, Case::Bool},        // causal and a bool mask
      {1, 1, 1, 33, 40, 256, true},
      {1, 2, 2, 17, 29, 1, false, 0, Case::Float},
      {1, 2, 2, 129, 129, 64, true, 0.2},                // dropout
      {1, 2, 1, 67, 93, 80, false, 0.3, Case::Float},
      {1, 2, 2, 70, 90, 64, true, 0, Case::None, DType::BFloat16},
      {1, 2, 1, 70, 90, 72, false, 0.1, Case::Bool, DType::Float16},
  };
  for (const Case& c : cases) check_case(c);
}

TEST(FlashAttention, FullyMaskedRowsGiveZerosNotNaN) {
  Tensor q = randn({1, 1, 4, 8}), k = randn({1, 1, 6, 8}), v = randn({1, 1, 6, 8});
  for (const Tensor& t : {q, k, v}) autograd::set_requires_grad(t, true);
  std::vector<double> attend(24, 1.0);
  for (int j = 0; j < 6; ++j) attend[2 * 6 + j] = 0;  // row 2 sees nothing
  Tensor mask = from(attend, {1, 1, 4, 6}, DType::Bool);
  Tensor out = flash_attention(q, k, v, std::nullopt, 0.0, false, std::nullopt, &mask);
  std::vector<Tensor> g = autograd::grad({out}, {q, k, v}, {ones({1, 1, 4, 8})}, false, false);
  std::vector<double> o = values(out), dq = values(g[0]);
  for (int d = 0; d < 8; ++d) {
    EXPECT_EQ(o[2 * 8 + d], 0.0);
    EXPECT_EQ(dq[2 * 8 + d], 0.0);
  }
  for (const Tensor& t : {out, g[0], g[1], g[2]})
    for (double x : values(t)) ASSERT_TRUE(std::isfinite(x));

  // No keys at all: every row is fully masked.
  Tensor empty_k = zeros({1, 1, 0, 8});
  for (double x : values(flash_attention(q, empty_k, empty_k, std::nullopt, 0.0, false, std::nullopt, nullptr)))
    EXPECT_EQ(x, 0.0);
}

TEST(FlashAttention, DropoutMaskIsPhiloxAndKeepRate) {
  const double p = 0.3;
  Tensor mask = attention_dropout_mask(1, 2, 128, 160, p, 5, 12);
  std::vector<double> keep = values(mask);
  double kept = 0;
  for (size_t i = 0; i < keep.size(); ++i) {
    kept += keep[i];
    ASSERT_EQ(keep[i] != 0, attention_dropout_keep(5, 12 + i, float(p))) << i;
  }
  EXPECT_NEAR(kept / double(keep.size()), 1 - p, 0.01);
  EXPECT_EQ(values(attention_dropout_mask(1, 1, 3, 5, 0.0, 5)), std::vector<double>(15, 1.0));
}

TEST(FlashAttention, DropoutIsDeterministicPerSeed) {
  Tensor q = randn({1, 2, 40, 16}), k = randn({1, 2, 50, 16}), v = randn({1, 2, 50, 16});
  for (const Tensor& t : {q, k, v}) autograd::set_requires_grad(t, true);
  auto run = [&](std::optional<uint64_t> seed) {
    Tensor out = flash_attention(q, k, v, std::nullopt, 0.25, true, seed, nullptr);
    std::vector<Tensor> g = autograd::grad({out}, {q, k, v}, {ones(out.shape())}, false, false);
    return std::vector<std::vector<double>>{values(out), values(g[0]), values(g[1]), values(g[2])};
  };
  EXPECT_EQ(run(3), run(3));
  EXPECT_NE(run(3), run(4));
  // Without a seed: successive calls differ, and manual_seed replays them.
  manual_seed(11);
  auto first = run(std::nullopt);
  EXPECT_NE(first, run(std::nullopt));
  manual_seed(11);
  EXPECT_EQ(first, run(std::nullopt));
}

TEST(FlashAttention, NonContiguousInputs) {
  // [B, L, H, D] storage viewed as [B, H, L, D], as transformers lays out its projections.
  Tensor q = randn({2, 9, 3, 8}).transpose(1, 2), k = randn({2, 11, 3, 8}).transpose(1, 2),
         v = randn({2, 11, 3, 8}).transpose(1, 2);
  Tensor a = flash_attention(q, k, v, 0.5, 0.0, false, std::nullopt, nullptr);
  Tensor b = flash_attention(q.contiguous(), k.contiguous(), v.contiguous(), 0.5, 0.0, false, std::nullopt, nullptr);
  EXPECT_EQ(values(a), values(b));
}

TEST(ScaledDotProductAttention, FlattensBatchDimsAndBroadcastsMasks) {
  Tensor q = randn({2, 3, 2, 5, 8}), k = randn({2, 3, 2, 7, 8}), v = randn({2, 3, 2, 7, 8});
  std::vector<double> attend(35, 1.0);
  attend[3] = attend[20] = 0;
  Tensor mask = from(attend, {5, 7}, DType::Bool);
  Tensor out = scaled_dot_product_attention(q, k, v, &mask, 0.0, false, 0.3);
  EXPECT_EQ(out.shape(), q.shape());
  Tensor full_mask = mask.expand({6, 2, 5, 7}).contiguous();
  Tensor want = flash_attention(q.reshape({6, 2, 5, 8}), k.reshape({6, 2, 7, 8}), v.reshape({6, 2, 7, 8}), 0.3,
                                0.0, false, std::nullopt, &full_mask);
  EXPECT_EQ(values(out), values(want));

  // [H, L, E] with grouped-query attention.
  Tensor q3 = randn({4, 6, 8}), kv3 = randn({2, 6, 8});
  EXPECT_EQ(scaled_dot_product_attention(q3, kv3, kv3, nullptr, 0.0, true, std::nullopt, true).shape(), q3.shape());
  EXPECT_THROW(scaled_dot_product_attention(q3, kv3, kv3, nullptr), ValueError);
}

TEST(FlashAttention, RejectsBadInput) {
  Tensor q = randn({1, 4, 8, 16}), kv = randn({1, 2, 8, 16});
  auto fa = [](const Tensor& q, const Tensor& k, const Tensor& v, double p = 0.0) {
    return flash_attention(q, k, v, std::nullopt, p, false, std::nullopt, nullptr);
  };
  EXPECT_THROW(fa(q, kv, kv, 1.0), ValueError);
  EXPECT_THROW(fa(q, kv, kv, -0.1), ValueError);
  EXPECT_THROW(fa(randn({1, 1, 2, 257}), randn({1, 1, 2, 257}), randn({1, 1, 2, 257})), ValueError);
  EXPECT_THROW(fa(randn({1, 1, 2, 0}), randn({1, 1, 2, 0}), randn({1, 1, 2, 0})), ValueError);
  EXPECT_THROW(fa(q, randn({1, 3, 8, 16}), randn({1, 3, 8, 16})), ValueError);  // 4 heads vs 3
  EXPECT_THROW(fa(q, randn({2, 2, 8, 16}), randn({2, 2, 8, 16})), ValueError);  // batch
  EXPECT_THROW(fa(q, randn({1, 2, 8, 8}), randn({1, 2, 8, 8})), ValueError);    // head dim
  EXPECT_THROW(fa(q, kv, randn({1, 2, 9, 16})), ValueError);                     // k vs v length
  EXPECT_THROW(fa(q.reshape({4, 8, 16}), kv, kv), ValueError);
  EXPECT_THROW(fa(q.to(DType::Int64), kv.to(DType::Int64), kv.to(DType::Int64)), TypeError);
  EXPECT_THROW(fa(q.to(DType::Float16), kv, kv), TypeError);
  Tensor bad_mask = zeros({3, 9});
  EXPECT_THROW(flash_attention(q, kv, kv, std::nullopt, 0.0, false, std::nullopt, &bad_mask), ValueError);
  try {
    fa(q, randn({1, 3, 8, 16}), randn({1, 3, 8, 16}));
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 4, 8, 16]"), std::string::npos) << e.what();
  }
}

}  // namespace
