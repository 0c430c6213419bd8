// Attention computed naively in double precision, the reference of the native FlashAttention
// kernels' tests: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], contiguous, query head h reading kv head
// h / (Hq / Hkv); S = scale q k^T, causal masking key col > query row (top-left aligned).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace orchard::test {

struct AttentionShape {
  long long batch, heads_q, heads_kv, lq, lk, d;
  bool causal;
  double scale;

  long long q_size() const { return batch * heads_q * lq * d; }
  long long kv_size() const { return batch * heads_kv * lk * d; }
};

struct AttentionForward {
  std::vector<double> out;  // [B, Hq, Lq, D]; 0 for a row with no visible key
  std::vector<double> lse;  // [B, Hq, Lq], natural log; -inf for a row with no visible key
};

struct AttentionGrads {
  std::vector<double> dq, dk, dv;  // shaped as q, k, v
};

namespace detail {

// Calls f(head, kv_head, row, p, lse) for every query row of every (batch, query head): head and
// kv_head count over batches too, p is the row's softmax over Lk keys (0 where masked), lse its
// log-sum-exp of S (-inf when no key is visible).
template <class F>
void for_each_attention_row(const AttentionShape& s, const std::vector<double>& q, const std::vector<double>& k,
                            F f) {
  std::vector<double> p(size_t(s.lk));
  for (long long b = 0; b < s.batch; ++b)
    for (long long h = 0; h < s.heads_q; ++h) {
      const long long head = b * s.heads_q + h, kv_head = b * s.heads_kv + h / (s.heads_q / s.heads_kv);
      for (long long i = 0; i < s.lq; ++i) {
        const double* qi = &q[size_t((head * s.lq + i) * s.d)];
        const long long visible = s.causal ? std::min(s.lk, i + 1) : s.lk;
        double m = -std::numeric_limits<double>::infinity(), sum = 0;
        for (long long j = 0; j < visible; ++j) {
          const double* kj = &k[size_t((kv_head * s.lk + j) * s.d)];
          double dot = 0;
          for (long long c = 0; c < s.d; ++c) dot += qi[c] * kj[c];
          p[size_t(j)] = s.scale * dot;
          m = std::max(m, p[size_t(j)]);
        }
        for (long long j = 0; j < visible; ++j) sum += p[size_t(j)] = std::exp(p[size_t(j)] - m);
        for (long long j = 0; j < s.lk; ++j) p[size_t(j)] = j < visible ? p[size_t(j)] / sum : 0.0;
        f(head, kv_head, i, p, visible > 0 ? m + std::log(sum) : -std::numeric_limits<double>::infinity());
      }
    }
}

}  // namespace detail

inline AttentionForward attention_forward_reference(const AttentionShape& s, const std::vector<double>& q,
                                                    const std::vector<double>& k, const std::vector<double>& v) {
  AttentionForward r{std::vector<double>(size_t(s.q_size())), std::vector<double>(size_t(s.batch * s.heads_q * s.lq))};
  detail::for_each_attention_row(s, q, k, [&](long long head, long long kv_head, long long i,
                                              const std::vector<double>& p, double lse) {
    r.lse[size_t(head * s.lq + i)] = lse;
    double* oi = &r.out[size_t((head * s.lq + i) * s.d)];
    for (long long j = 0; j < s.lk; ++j)
      for (long long c = 0; c < s.d; ++c) oi[c] += p[size_t(j)] * v[size_t((kv_head * s.lk + j) * s.d + c)];
  });
  return r;
}

// The gradients of sum(dout * out) with respect to q, k and v, as the backward kernels compute
// them: dP = dout v^T, dS = P (dP - delta) with delta = rowsum(dout * out) (out from
// attention_forward_reference), dq = scale dS k, dk = scale dS^T q, dv = P^T dout; dk and dv of a
// kv head sum over its query heads.
inline AttentionGrads attention_backward_reference(const AttentionShape& s, const std::vector<double>& q,
                                                   const std::vector<double>& k, const std::vector<double>& v,
                                                   const std::vector<double>& dout) {
  const std::vector<double> out = attention_forward_reference(s, q, k, v).out;
  AttentionGrads r{std::vector<double>(size_t(s.q_size())), std::vector<double>(size_t(s.kv_size())),
                   std::vector<double>(size_t(s.kv_size()))};
  detail::for_each_attention_row(s, q, k, [&](long long head, long long kv_head, long long i,
                                              const std::vector<double>& p, double) {
    const size_t row = size_t((head * s.lq + i) * s.d);
    double delta = 0;
    for (long long c = 0; c < s.d; ++c) delta += dout[row + size_t(c)] * out[row + size_t(c)];
    for (long long j = 0; j < s.lk; ++j) {
      const size_t kv_row = size_t((kv_head * s.lk + j) * s.d);
      double dp = 0;
      for (long long c = 0; c < s.d; ++c) dp += dout[row + size_t(c)] * v[kv_row + size_t(c)];
      const double ds = p[size_t(j)] * (dp - delta);
      for (long long c = 0; c < s.d; ++c) {
        r.dv[kv_row + size_t(c)] += p[size_t(j)] * dout[row + size_t(c)];
        r.dk[kv_row + size_t(c)] += s.scale * ds * q[row + size_t(c)];
        r.dq[row + size_t(c)] += s.scale * ds * k[kv_row + size_t(c)];
      }
    }
  });
  return r;
}

}  // namespace orchard::test
