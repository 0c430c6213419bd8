// The native CUDA kernels (src/cuda/kernels/*.cu), compiled as C++ with tests/cpp/cuda_host and run
// on the CPU (cuda_host/launch_on_cpu.h), against attention in double precision computed from the
// same 16-bit inputs (cuda_host/attention_reference.h): machines without a GPU check them too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda_host/attention_reference.h"
#include "cuda_host/launch_on_cpu.h"
#include "half.h"

// The entry points of flash_attention_forward.cu.
#define ORCHARD_DECLARE_FORWARD(NAME, D)                                                                         \
  extern "C" void flash_attention_forward_##NAME##_d##D(const uint16_t* q, const uint16_t* k, const uint16_t* v, \
                                                        uint16_t* out, float* lse, long long lq, long long lk,    \
                                                        uint32_t heads_q, uint32_t heads_kv, uint32_t causal,     \
                                                        float scale_log2);
#define ORCHARD_DECLARE_FORWARD_DTYPES(D) ORCHARD_DECLARE_FORWARD(bf16, D) ORCHARD_DECLARE_FORWARD(f16, D)
ORCHARD_DECLARE_FORWARD_DTYPES(32)
ORCHARD_DECLARE_FORWARD_DTYPES(64)
ORCHARD_DECLARE_FORWARD_DTYPES(96)
ORCHARD_DECLARE_FORWARD_DTYPES(128)

using orchard::cuda_host::launch_on_cpu;
using orchard::test::AttentionShape;

namespace {

constexpr double kLog2e = 1.4426950408889634;
constexpr unsigned kForwardThreads = 128, kForwardRows = 64;  // of a CTA

using ForwardKernel = decltype(&flash_attention_forward_bf16_d64);

ForwardKernel forward_kernel(bool bf16, long long d) {
  switch (d) {
    case 32: return bf16 ? flash_attention_forward_bf16_d32 : flash_attention_forward_f16_d32;
    case 64: return bf16 ? flash_attention_forward_bf16_d64 : flash_attention_forward_f16_d64;
    case 96: return bf16 ? flash_attention_forward_bf16_d96 : flash_attention_forward_f16_d96;
    case 128: return bf16 ? flash_attention_forward_bf16_d128 : flash_attention_forward_f16_d128;
  }
  return nullptr;
}

double widen(uint16_t bits, bool bf16) {
  return bf16 ? double(orchard::bits_float(uint32_t(bits) << 16)) : double(orchard::Half::to_float(bits));
}

// A tensor of values around N(0, 1) rounded to bfloat16 or float16: the kernel's bits, and the same
// values for the reference.
struct Tensor16 {
  std::vector<uint16_t> bits;
  std::vector<double> values;
};

Tensor16 random_tensor(long long n, bool bf16, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  Tensor16 t;
  for (long long i = 0; i < n; ++i) {
    const float x = normal(rng);
    t.bits.push_back(bf16 ? orchard::BFloat16::from_float(x) : orchard::Half::from_float(x));
    t.values.push_back(widen(t.bits.back(), bf16));
  }
  return t;
}

// The largest |actual - expected| / max(1, |expected|) (0 where both are the same infinity), and where.
struct MaxError {
  double error = 0;
  size_t index = 0;
};
template <class Actual>
MaxError max_error(const std::vector<Actual>& actual, const std::vector<double>& expected) {
  MaxError m;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double a = double(actual[i]), e = expected[i];
    const double error = a == e ? 0.0 : std::fabs(a - e) / std::max(1.0, std::fabs(e));
    if (!(error <= m.error)) m = {error, i};  // NaN included
  }
  return m;
}

struct ForwardCase {
  bool bf16;
  AttentionShape shape;
};

std::string case_name(const ForwardCase& c) {
  const AttentionShape& s = c.shape;
  return std::string(c.bf16 ? "bf16" : "f16") + "_d" + std::to_string(s.d) + (s.causal ? "_causal" : "") +
         "_b" + std::to_string(s.batch) + "_h" + std::to_string(s.heads_q) + "_" + std::to_string(s.heads_kv) +
         "_lq" + std::to_string(s.lq) + "_lk" + std::to_string(s.lk);
}

class FlashAttentionForward : public testing::TestWithParam<ForwardCase> {};

TEST_P(FlashAttentionForward, MatchesDoublePrecision) {
  const bool bf16 = GetParam().bf16;
  const AttentionShape& s = GetParam().shape;
  std::mt19937 rng(7);
  const Tensor16 q = random_tensor(s.q_size(), bf16, rng), k = random_tensor(s.kv_size(), bf16, rng),
                 v = random_tensor(s.kv_size(), bf16, rng);
  // Poisoned, so that an element the kernel does not write fails.
  std::vector<uint16_t> out(size_t(s.q_size()), 0x7fff);
  std::vector<float> lse(size_t(s.batch * s.heads_q * s.lq), std::numeric_limits<float>::quiet_NaN());

  const dim3 grid(unsigned((s.lq + kForwardRows - 1) / kForwardRows), unsigned(s.heads_q), unsigned(s.batch));
  launch_on_cpu(forward_kernel(bf16, s.d), grid, kForwardThreads, 0, q.bits.data(), k.bits.data(), v.bits.data(),
                out.data(), lse.data(), s.lq, s.lk, uint32_t(s.heads_q), uint32_t(s.heads_kv), uint32_t(s.causal),
                float(s.scale * kLog2e));

  const orchard::test::AttentionForward expected =
      orchard::test::attention_forward_reference(s, q.values, k.values, v.values);
  std::vector<double> actual_out;
  for (uint16_t bits : out) actual_out.push_back(widen(bits, bf16));
  // Within a unit in the last place at 1 of the input dtype (relative past 1): the kernel rounds P to
  // 16 bits before P v, and out. (The largest errors seen are 0.6 units, and 1e-7 on lse.)
  const MaxError out_error = max_error(actual_out, expected.out), lse_error = max_error(lse, expected.lse);
  EXPECT_LE(out_error.error, bf16 ? 0x1p-7 : 0x1p-10) << "out[" << out_error.index << "]";
  EXPECT_LE(lse_error.error, 1e-6) << "lse[" << lse_error.index << "]";
}

// The reference's gradients are those of sum(dout * out), by central differences (the backward
// kernels' tests rely on them).
TEST(CudaNativeReference, BackwardIsTheForwardsGradient) {
  for (bool causal : {false, true}) {
    const AttentionShape s{1, 2, 1, 5, 7, 4, causal, 0.5};
    std::mt19937 rng(3);
    std::normal_distribution<double> normal;
    const auto random = [&](long long n) {
      std::vector<double> x(static_cast<size_t>(n));
      for (double& e : x) e = normal(rng);
      return x;
    };
    std::vector<double> q = random(s.q_size()), k = random(s.kv_size()), v = random(s.kv_size());
    const std::vector<double> dout = random(s.q_size());
    const orchard::test::AttentionGrads grads = orchard::test::attention_backward_reference(s, q, k, v, dout);
    const auto loss = [&] {
      const std::vector<double> out = orchard::test::attention_forward_reference(s, q, k, v).out;
      double sum = 0;
      for (size_t i = 0; i < out.size(); ++i) sum += dout[i] * out[i];
      return sum;
    };
    for (auto [x, dx] : {std::pair{&q, &grads.dq}, std::pair{&k, &grads.dk}, std::pair{&v, &grads.dv}})
      for (size_t i = 0; i < x->size(); ++i) {
        const double saved = (*x)[i], h = 1e-6;
        (*x)[i] = saved + h;
        const double up = loss();
        (*x)[i] = saved - h;
        const double down = loss();
        (*x)[i] = saved;
        EXPECT_NEAR((*dx)[i], (up - down) / (2 * h), 1e-7) << (causal ? "causal, " : "") << "element " << i;
      }
  }
}

// Lq != Lk, not multiples of the 64-row blocks, and query heads sharing a kv head (GQA) throughout:
// every dtype and head size with one query block (non-causal) or two (causal, more queries than
// keys: the last rows see every key), and a batch of more heads at D = 32. (The CPU runs a kernel's
// threads as threads of its own, about 60 us a warp-collective operation: the shapes stay small.)
std::vector<ForwardCase> forward_cases() {
  const auto shape = [](long long batch, long long heads_q, long long heads_kv, long long lq, long long lk,
                        long long d, bool causal) {
    return AttentionShape{batch, heads_q, heads_kv, lq, lk, d, causal, 1 / std::sqrt(double(d))};
  };
  std::vector<ForwardCase> cases;
  for (bool bf16 : {true, false})
    for (long long d : {32, 64, 96, 128}) {
      cases.push_back({bf16, shape(1, 2, 1, 40, 90, d, false)});
      cases.push_back({bf16, shape(1, 2, 1, 90, 70, d, true)});
    }
  cases.push_back({true, shape(2, 4, 2, 70, 90, 32, false)});
  cases.push_back({false, shape(2, 4, 2, 90, 70, 32, true)});
  cases.push_back({true, shape(1, 2, 1, 70, 0, 64, false)});  // no key: out 0, lse -inf
  cases.push_back({false, shape(1, 2, 1, 70, 0, 64, true)});
  return cases;
}
void PrintTo(const ForwardCase& c, std::ostream* os) { *os << case_name(c); }
INSTANTIATE_TEST_SUITE_P(CudaNative, FlashAttentionForward, testing::ValuesIn(forward_cases()),
                         [](const testing::TestParamInfo<ForwardCase>& info) { return case_name(info.param); });

}  // namespace

// The entry points of flash_attention_backward.cu.
#define ORCHARD_DECLARE_BACKWARD(NAME, D)                                                                         \
  extern "C" void flash_attention_dq_##NAME##_d##D(const uint16_t* q, const uint16_t* k, const uint16_t* v,     \
                                                   const uint16_t* dout, const float* lse, const float* delta,   \
                                                   uint16_t* dq, long long lq, long long lk, uint32_t heads_q,   \
                                                   uint32_t heads_kv, uint32_t causal, float scale_log2,         \
                                                   float scale);                                                 \
  extern "C" void flash_attention_dkv_##NAME##_d##D(const uint16_t* q, const uint16_t* k, const uint16_t* v,    \
                                                    const uint16_t* dout, const float* lse, const float* delta,  \
                                                    uint16_t* dk, uint16_t* dv, long long lq, long long lk,      \
                                                    uint32_t heads_q, uint32_t heads_kv, uint32_t causal,        \
                                                    float scale_log2, float scale);
#define ORCHARD_DECLARE_BACKWARD_DTYPES(D) ORCHARD_DECLARE_BACKWARD(bf16, D) ORCHARD_DECLARE_BACKWARD(f16, D)
ORCHARD_DECLARE_BACKWARD_DTYPES(32)
ORCHARD_DECLARE_BACKWARD_DTYPES(64)
ORCHARD_DECLARE_BACKWARD_DTYPES(96)
ORCHARD_DECLARE_BACKWARD_DTYPES(128)

namespace {

using DqKernel = decltype(&flash_attention_dq_bf16_d64);
using DkvKernel = decltype(&flash_attention_dkv_bf16_d64);

template <class Kernel>
Kernel pick(bool bf16, long long d, Kernel bf16_32, Kernel f16_32, Kernel bf16_64, Kernel f16_64, Kernel bf16_96,
            Kernel f16_96, Kernel bf16_128, Kernel f16_128) {
  switch (d) {
    case 32: return bf16 ? bf16_32 : f16_32;
    case 64: return bf16 ? bf16_64 : f16_64;
    case 96: return bf16 ? bf16_96 : f16_96;
    case 128: return bf16 ? bf16_128 : f16_128;
  }
  return nullptr;
}

// The dynamic shared memory of a backward CTA, as src/cuda/flash_attention.cpp sizes it.
size_t backward_shared(long long d, bool dkv) {
  const size_t n = d <= 64 ? 64 : 32;
  return (2 * kForwardRows + 2 * n) * size_t(d + 8) * 2 + (dkv ? 8 * n : 0);
}

class FlashAttentionBackward : public testing::TestWithParam<ForwardCase> {};

// dq, dk and dv from the reference forward's lse and delta = rowsum(dout * out) (what the forward
// and the portable attention_delta kernel hand the backward on the GPU).
TEST_P(FlashAttentionBackward, MatchesDoublePrecision) {
  const bool bf16 = GetParam().bf16;
  const AttentionShape& s = GetParam().shape;
  std::mt19937 rng(11);
  const Tensor16 q = random_tensor(s.q_size(), bf16, rng), k = random_tensor(s.kv_size(), bf16, rng),
                 v = random_tensor(s.kv_size(), bf16, rng), dout = random_tensor(s.q_size(), bf16, rng);
  const orchard::test::AttentionForward forward =
      orchard::test::attention_forward_reference(s, q.values, k.values, v.values);
  std::vector<float> lse(forward.lse.begin(), forward.lse.end()), delta(lse.size());
  for (size_t row = 0; row < delta.size(); ++row) {
    double sum = 0;
    for (long long c = 0; c < s.d; ++c) sum += dout.values[row * size_t(s.d) + size_t(c)] * forward.out[row * size_t(s.d) + size_t(c)];
    delta[row] = float(sum);
  }
  // Poisoned, so that an element the kernels do not write fails.
  std::vector<uint16_t> dq(size_t(s.q_size()), 0x7fff), dk(size_t(s.kv_size()), 0x7fff), dv(dk);

  const float scale_log2 = float(s.scale * kLog2e), scale = float(s.scale);
  const DqKernel dq_kernel = pick<DqKernel>(
      bf16, s.d, flash_attention_dq_bf16_d32, flash_attention_dq_f16_d32, flash_attention_dq_bf16_d64,
      flash_attention_dq_f16_d64, flash_attention_dq_bf16_d96, flash_attention_dq_f16_d96,
      flash_attention_dq_bf16_d128, flash_attention_dq_f16_d128);
  const DkvKernel dkv_kernel = pick<DkvKernel>(
      bf16, s.d, flash_attention_dkv_bf16_d32, flash_attention_dkv_f16_d32, flash_attention_dkv_bf16_d64,
      flash_attention_dkv_f16_d64, flash_attention_dkv_bf16_d96, flash_attention_dkv_f16_d96,
      flash_attention_dkv_bf16_d128, flash_attention_dkv_f16_d128);
  const auto blocks = [](long long n) { return unsigned((n + kForwardRows - 1) / kForwardRows); };
  if (s.lq > 0)
    launch_on_cpu(dq_kernel, dim3(blocks(s.lq), unsigned(s.heads_q), unsigned(s.batch)), kForwardThreads,
                  backward_shared(s.d, false), q.bits.data(), k.bits.data(), v.bits.data(), dout.bits.data(),
                  lse.data(), delta.data(), dq.data(), s.lq, s.lk, uint32_t(s.heads_q), uint32_t(s.heads_kv),
                  uint32_t(s.causal), scale_log2, scale);
  launch_on_cpu(dkv_kernel, dim3(blocks(s.lk), unsigned(s.heads_kv), unsigned(s.batch)), kForwardThreads,
                backward_shared(s.d, true), q.bits.data(), k.bits.data(), v.bits.data(), dout.bits.data(),
                lse.data(), delta.data(), dk.data(), dv.data(), s.lq, s.lk, uint32_t(s.heads_q),
                uint32_t(s.heads_kv), uint32_t(s.causal), scale_log2, scale);

  const orchard::test::AttentionGrads expected =
      orchard::test::attention_backward_reference(s, q.values, k.values, v.values, dout.values);
  const auto widened = [bf16](const std::vector<uint16_t>& bits) {
    std::vector<double> values;
    for (uint16_t b : bits) values.push_back(widen(b, bf16));
    return values;
  };
  // The kernels round P and dS to 16 bits before their products, and the results: within two units
  // in the last place at 1 of the input dtype (relative past 1). (The largest errors seen are 1.2
  // units.)
  const double tolerance = bf16 ? 0x1p-6 : 0x1p-9;
  const MaxError dq_error = max_error(widened(dq), expected.dq), dk_error = max_error(widened(dk), expected.dk),
                 dv_error = max_error(widened(dv), expected.dv);
  EXPECT_LE(dq_error.error, tolerance) << "dq[" << dq_error.index << "]";
  EXPECT_LE(dk_error.error, tolerance) << "dk[" << dk_error.index << "]";
  EXPECT_LE(dv_error.error, tolerance) << "dv[" << dv_error.index << "]";
}

// As the forward's, with Lq = 0 (dk and dv zero) in place of Lk = 0.
std::vector<ForwardCase> backward_cases() {
  std::vector<ForwardCase> cases;
  for (ForwardCase c : forward_cases())
    if (c.shape.lk > 0) cases.push_back(c);
  cases.push_back({true, {1, 2, 1, 0, 70, 64, false, 0.125}});
  cases.push_back({false, {1, 2, 1, 0, 70, 64, true, 0.125}});
  return cases;
}
INSTANTIATE_TEST_SUITE_P(CudaNative, FlashAttentionBackward, testing::ValuesIn(backward_cases()),
                         [](const testing::TestParamInfo<ForwardCase>& info) { return case_name(info.param); });

}  // namespace
