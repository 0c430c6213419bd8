// FlashAttention-2 (Dao, 2023) on the CPU: exact attention over tiles of 96 queries x 96 keys in
// float32, never materialising the [Lq, Lk] score matrix. The tile products run on a small gemm
// micro-kernel; inputs are read in place when they are float32 rows of a multiple of 16.
//
// Forward: one work item per (batch, head, query block) runs over the key blocks with an online
// softmax and saves the row log-sum-exp. Backward: one work item per (batch, kv head, key block)
// runs over the query blocks of every query head in its group, recomputing P = exp(S - lse) and
// accumulating dK and dV in the item and dQ in a per-worker float buffer; the buffers are summed
// at the end, so no two threads ever write the same memory.
//
// Conventions: scores are S = scale * q k^T + mask, -inf where masked (causal: col > row, top-left
// aligned as PyTorch's is_causal). A row whose every score is masked has output 0 and lse = -inf,
// and gets zero gradients (backward treats lse = -inf as +inf, so its P is exp(-inf) = 0, not NaN).
// Dropout keeps score (b, h, row, col) when attention_dropout_keep (philox.h) says so, scaling
// kept probabilities by 1 / (1 - p); backward regenerates the same bits.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu_runtime.h"
#include "parallel.h"
#include "philox.h"
#include "vec_math.h"

namespace orchard::cpu {

namespace {

constexpr int kMR = 6;   // rows of the gemm micro-kernel
constexpr int kNR = 16;  // columns of the gemm micro-kernel: two Vec8
// Query and key rows per tile: multiples of kNR (tile rows are padded to kNR) and of kMR (no
// micro-kernel tails). The tiles of one work item stay in L2.
constexpr int64_t kBlockQ = 96, kBlockK = 96;
static_assert(kBlockQ % kNR == 0 && kBlockK % kNR == 0 && kBlockQ % kMR == 0 && kBlockK % kMR == 0);
constexpr float kInf = std::numeric_limits<float>::infinity();

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// A read-only matrix operand: element (i, k) at data[i * row + k * col], so a transposed view is
// just swapped strides.
struct Mat {
  const float* data;
  int64_t row, col;
};

// C[MR x 16] (+)= A[MR x K] B[K x 16], B and C row-major with leading dims ldb and ldc.
template <int MR>
void micro_kernel(int64_t K, Mat a, const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  Vec8 acc[MR][2];
  for (int r = 0; r < MR; ++r)
    for (int h = 0; h < 2; ++h) acc[r][h] = accumulate ? load8(c + r * ldc + 8 * h) : Vec8{};
#pragma GCC unroll 4
  for (int64_t k = 0; k < K; ++k) {
    const Vec8 b0 = load8(b + k * ldb), b1 = load8(b + k * ldb + 8);
    for (int r = 0; r < MR; ++r) {
      const float ar = a.data[r * a.row + k * a.col];
      acc[r][0] += ar * b0;
      acc[r][1] += ar * b1;
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int h = 0; h < 2; ++h) store8(c + r * ldc + 8 * h, acc[r][h]);
}

// C[M x N] (+)= A[M x K] B[K x N] for N a multiple of 16; every operand fits in L1/L2.
void gemm(int64_t M, int64_t N, int64_t K, Mat a, const float* b, int64_t ldb, float* c, int64_t ldc,
          bool accumulate) {
  using Kernel = void (*)(int64_t, Mat, const float*, int64_t, float*, int64_t, bool);
  static constexpr Kernel kTail[kMR] = {nullptr, micro_kernel<1>, micro_kernel<2>,
                                        micro_kernel<3>, micro_kernel<4>, micro_kernel<5>};
  for (int64_t n = 0; n < N; n += kNR) {
    int64_t m = 0;
    for (; m + kMR <= M; m += kMR)
      micro_kernel<kMR>(K, {a.data + m * a.row, a.row, a.col}, b + n, ldb, c + m * ldc + n, ldc, accumulate);
    if (m < M) kTail[M - m](K, {a.data + m * a.row, a.row, a.col}, b + n, ldb, c + m * ldc + n, ldc, accumulate);
  }
}

// Rows [0, n) of a [*, D] matrix of T as float rows readable up to column Dp: the matrix itself
// when it already is one (float with D == Dp), else a copy in buf with columns D..Dp zero.
template <typename T>
Mat rows_of(const T* src, int64_t n, int64_t D, int64_t Dp, float* buf) {
  if constexpr (std::is_same_v<T, float>)
    if (D == Dp) return {src, D, 1};
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < D; ++d) buf[i * Dp + d] = float(src[i * D + d]);
    std::fill(buf + i * Dp + D, buf + (i + 1) * Dp, 0.0f);
  }
  return {buf, Dp, 1};
}

// Rows [0, n) of a [*, D] matrix times `mul`, transposed into a float [D, ld] tile whose
// columns n..ld are zero.
template <typename T>
void pack_transposed(const T* src, int64_t n, int64_t D, float mul, float* dst, int64_t ld) {
  std::fill(dst, dst + D * ld, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) dst[d * ld + i] = float(src[i * D + d]) * mul;
}

// Everything both passes need to know about the problem, and the one definition of the scores.
struct Problem {
  int64_t B, Hq, Hkv, Lq, Lk, D, Dp;
  AttentionParams p;
  const float* mask;        // null without a mask
  uint32_t drop_threshold;  // dropout_threshold(p); 0 without dropout
  float keep_scale;         // 1 / (1 - p)

  Problem(const Tensor& q, const Tensor& k, const AttentionParams& params)
      : B(q.shape()[0]), Hq(q.shape()[1]), Hkv(k.shape()[1]), Lq(q.shape()[2]), Lk(k.shape()[2]),
        D(q.shape()[3]), Dp(round_up(D, kNR)), p(params),
        mask(params.mask ? params.mask->data_as<float>() : nullptr),
        drop_threshold(dropout_threshold(params.dropout_p)),
        keep_scale(1.0f / (1.0f - params.dropout_p)) {}

  bool dropout() const { return drop_threshold != 0; }
  static int64_t blocks(int64_t L, int64_t block) { return (L + block - 1) / block; }
  // Key columns that query rows below `row_end` can see.
  int64_t key_end(int64_t row_end) const { return p.causal ? std::min(Lk, row_end) : Lk; }

  // Turns the scores scale * q k^T of query rows r0..r0+nr and key columns c0..c0+nc of head
  // (b, h), score (r, j) at s[r * rs + j * cs], into S: adds the mask and sets masked scores to -inf.
  void mask_scores(float* s, int64_t rs, int64_t cs, int64_t b, int64_t h, int64_t r0, int64_t nr, int64_t c0,
                   int64_t nc) const {
    const bool crosses_diagonal = p.causal && c0 + nc - 1 > r0;
    if (!mask && !crosses_diagonal) return;
    for (int64_t r = 0; r < nr; ++r) {
      float* sr = s + r * rs;
      if (mask) {
        const int64_t* ms = p.mask_strides;
        const float* mr = mask + b * ms[0] + h * ms[1] + (r0 + r) * ms[2] + c0 * ms[3];
        for (int64_t j = 0; j < nc; ++j) sr[j * cs] += mr[j * ms[3]];
      }
      const int64_t visible = p.causal ? std::clamp<int64_t>(r0 + r + 1 - c0, 0, nc) : nc;
      for (int64_t j = visible; j < nc; ++j) sr[j * cs] = -kInf;
    }
  }

  // Dropout scales of key columns c0..c0+nc of query row `row` of head (b, h) into z[j * stride]:
  // keep_scale where kept, 0 where dropped. The bits of attention_dropout_keep, computing each
  // Philox block once for its four numbers.
  void dropout_scales(int64_t b, int64_t h, int64_t row, int64_t c0, int64_t nc, float* z, int64_t stride) const {
    uint64_t n = p.offset + uint64_t(((b * Hq + h) * Lq + row) * Lk + c0);
    for (int64_t j = 0; j < nc;) {
      const Philox4 block = philox_block(p.seed, n / 4);
      for (uint64_t lane = n % 4; lane < 4 && j < nc; ++lane, ++j, ++n)
        z[j * stride] = block.v[lane] >= drop_threshold ? keep_scale : 0.0f;
    }
  }
};

// Runs fn(worker, item) for every item in [0, items), handing items out in order to up to
// num_threads() workers; `worker` in [0, workers) names the worker's scratch buffers.
template <typename Fn>
void for_each_item(int64_t items, int64_t workers, const Fn& fn) {
  std::atomic<int64_t> next{0};
  parallel_for(workers, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w)
      for (int64_t item; (item = next.fetch_add(1)) < items;) fn(w, item);
  });
}

int64_t worker_count(int64_t items) { return std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)); }

// Forward over the transposed scores S^T = k (scale q)^T of a tile (keys x queries), so that the
// row statistics of the softmax are elementwise vector operations over the queries, and k and v
// are read in place.
template <typename T>
void forward(const Problem& pb, const T* q, const T* k, const T* v, T* out, float* lse) {
  const int64_t Dp = pb.Dp, D = pb.D, group = pb.Hq / pb.Hkv, heads = pb.B * pb.Hq;
  const int64_t items = heads * Problem::blocks(pb.Lq, kBlockQ);
  const int64_t workers = worker_count(items);
  struct Scratch {
    std::vector<float> qt, kbuf, vbuf, o, st, z, m, l, shift, alpha, sum;
  };
  std::vector<Scratch> scratch(workers);
  for_each_item(items, workers, [&](int64_t w, int64_t item) {
    Scratch& sc = scratch[w];
    if (sc.qt.empty()) {
      for (auto* buf : {&sc.qt, &sc.kbuf, &sc.vbuf, &sc.o}) buf->resize(std::max(kBlockQ, kBlockK) * Dp);
      for (auto* buf : {&sc.st, &sc.z}) buf->resize(kBlockK * kBlockQ);
      for (auto* buf : {&sc.m, &sc.l, &sc.shift, &sc.alpha, &sc.sum}) buf->resize(kBlockQ);
    }
    // Last query blocks first: under causal masking they have the most keys.
    const int64_t head = item % heads, b = head / pb.Hq, h = head % pb.Hq;
    const int64_t r0 = (Problem::blocks(pb.Lq, kBlockQ) - 1 - item / heads) * kBlockQ;
    const int64_t nr = std::min(kBlockQ, pb.Lq - r0), nrp = round_up(nr, kNR);
    const int64_t kv_head = b * pb.Hkv + h / group;
    float *st = sc.st.data(), *o = sc.o.data(), *m = sc.m.data(), *l = sc.l.data();
    float *shift = sc.shift.data(), *alpha = sc.alpha.data(), *sum = sc.sum.data();

    pack_transposed(q + (head * pb.Lq + r0) * D, nr, D, pb.p.scale, sc.qt.data(), kBlockQ);
    std::fill(sc.o.begin(), sc.o.end(), 0.0f);
    std::fill(sc.m.begin(), sc.m.end(), -kInf);
    std::fill(sc.l.begin(), sc.l.end(), 0.0f);
    const int64_t c_end = pb.key_end(r0 + nr);
    for (int64_t c0 = 0; c0 < c_end; c0 += kBlockK) {
      const int64_t nc = std::min(kBlockK, c_end - c0);
      const Mat kr = rows_of(k + (kv_head * pb.Lk + c0) * D, nc, D, Dp, sc.kbuf.data());
      const Mat vr = rows_of(v + (kv_head * pb.Lk + c0) * D, nc, D, Dp, sc.vbuf.data());
      gemm(nc, nrp, D, kr, sc.qt.data(), kBlockQ, st, kBlockQ, false);
      pb.mask_scores(st, 1, kBlockQ, b, h, r0, nr, c0, nc);
      // Online softmax: rescale what each query accumulated so far to its new running max. A
      // query with nothing visible yet keeps max -inf and shifts by 0, so its P is 0, not NaN.
      std::copy(m, m + nrp, shift);
      for (int64_t j = 0; j < nc; ++j)
        for (int64_t i = 0; i < nrp; ++i) shift[i] = std::max(shift[i], st[j * kBlockQ + i]);
      for (int64_t i = 0; i < nrp; ++i) {
        const float m_new = shift[i];
        shift[i] = m_new == -kInf ? 0.0f : m_new;
        alpha[i] = std::exp(m[i] - shift[i]);
        m[i] = m_new;
        sum[i] = 0;
      }
      for (int64_t j = 0; j < nc; ++j)
        for (int64_t i = 0; i < nrp; i += 8) {
          const Vec8 e = exp_nonpositive(load8(st + j * kBlockQ + i) - load8(shift + i));
          store8(st + j * kBlockQ + i, e);
          store8(sum + i, load8(sum + i) + e);
        }
      for (int64_t r = 0; r < nr; ++r) {
        l[r] = l[r] * alpha[r] + sum[r];
        if (alpha[r] != 1.0f)
          for (int64_t d = 0; d < Dp; ++d) o[r * Dp + d] *= alpha[r];
      }
      if (pb.dropout()) {
        float* z = sc.z.data();
        for (int64_t r = 0; r < nr; ++r) pb.dropout_scales(b, h, r0 + r, c0, nc, z + r, kBlockQ);
        for (int64_t j = 0; j < nc; ++j)
          for (int64_t i = 0; i < nr; ++i) st[j * kBlockQ + i] *= z[j * kBlockQ + i];
      }
      gemm(nr, Dp, nc, {st, 1, kBlockQ}, vr.data, vr.row, o, Dp, true);
    }
    for (int64_t r = 0; r < nr; ++r) {
      const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
      T* orow = out + (head * pb.Lq + r0 + r) * D;
      for (int64_t d = 0; d < D; ++d) orow[d] = T(o[r * Dp + d] * inv);
      lse[head * pb.Lq + r0 + r] = l[r] > 0 ? m[r] + std::log(l[r]) : -kInf;
    }
  });
}

// Backward over the scores S = q (scale k)^T of a tile (queries x keys), q and dout read in place.
template <typename T>
void backward(const Problem& pb, const T* q, const T* k, const T* v, const T* out, const float* lse,
              const T* dout, T* dq, T* dk, T* dv) {
  const int64_t Dp = pb.Dp, D = pb.D, group = pb.Hq / pb.Hkv, rows = pb.B * pb.Hq * pb.Lq;
  const int64_t kv_heads = pb.B * pb.Hkv, items = kv_heads * Problem::blocks(pb.Lk, kBlockK);
  const int64_t workers = worker_count(items);
  const float scale = pb.p.scale;

  // Per query row: Di = rowsum(dO * O), and the lse with -inf (a fully masked row) made +inf.
  std::vector<float> delta(rows), lse_b(rows);
  parallel_for(rows, grain_for(2 * D), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += float(dout[i * D + d]) * float(out[i * D + d]);
      delta[i] = acc;
      lse_b[i] = lse[i] == -kInf ? kInf : lse[i];
    }
  });

  // dQ accumulates in a float [rows, Dp] array per worker, summed into dq at the end; the first
  // worker's is dq itself when dq is such an array already (float, D == Dp).
  std::vector<float*> dq_acc;
  if constexpr (std::is_same_v<T, float>)
    if (D == Dp) {
      std::fill(dq, dq + rows * Dp, 0.0f);
      dq_acc.push_back(dq);
    }
  const bool first_is_dq = !dq_acc.empty();
  // From the allocator's cache of large blocks: a fresh vector's pages would fault in on every call.
  std::vector<Tensor> dq_buffers;
  while (dq_acc.size() < size_t(workers)) {
    dq_buffers.push_back(Tensor::empty({rows, Dp}, DType::Float32));
    float* buf = dq_buffers.back().data_as<float>();
    std::fill(buf, buf + rows * Dp, 0.0f);
    dq_acc.push_back(buf);
  }
  struct Scratch {
    std::vector<float> ks, kt, vt, qbuf, dobuf, p, dp, z, dk, dv;
  };
  std::vector<Scratch> scratch(workers);
  for_each_item(items, workers, [&](int64_t w, int64_t item) {
    Scratch& sc = scratch[w];
    if (sc.ks.empty()) {
      for (auto* buf : {&sc.ks, &sc.kt, &sc.vt, &sc.qbuf, &sc.dobuf, &sc.dk, &sc.dv})
        buf->resize(std::max(kBlockQ, kBlockK) * Dp);
      for (auto* buf : {&sc.p, &sc.dp, &sc.z}) buf->resize(kBlockQ * kBlockK);
    }
    // First key blocks first: under causal masking they are seen by the most queries.
    const int64_t kv_head = item % kv_heads, b = kv_head / pb.Hkv;
    const int64_t c0 = item / kv_heads * kBlockK, nc = std::min(kBlockK, pb.Lk - c0), ncp = round_up(nc, kNR);
    const T* kb = k + (kv_head * pb.Lk + c0) * D;
    // K scaled for dQ = scale dS K, with rows nc..ncp zero (dS is finite there, K must be 0).
    std::fill(sc.ks.begin(), sc.ks.end(), 0.0f);
    for (int64_t j = 0; j < nc; ++j)
      for (int64_t d = 0; d < D; ++d) sc.ks[j * Dp + d] = float(kb[j * D + d]) * scale;
    pack_transposed(kb, nc, D, scale, sc.kt.data(), kBlockK);
    pack_transposed(v + (kv_head * pb.Lk + c0) * D, nc, D, 1.0f, sc.vt.data(), kBlockK);
    std::fill(sc.dk.begin(), sc.dk.end(), 0.0f);
    std::fill(sc.dv.begin(), sc.dv.end(), 0.0f);
    float *p = sc.p.data(), *dp = sc.dp.data(), *z = sc.z.data();

    for (int64_t h = kv_head % pb.Hkv * group; h < (kv_head % pb.Hkv + 1) * group; ++h) {
      const int64_t head = b * pb.Hq + h;
      // Causal: only rows >= c0 see these keys.
      for (int64_t r0 = pb.p.causal ? c0 : 0; r0 < pb.Lq; r0 += kBlockQ) {
        const int64_t nr = std::min(kBlockQ, pb.Lq - r0), row0 = head * pb.Lq + r0;
        const Mat qr = rows_of(q + row0 * D, nr, D, Dp, sc.qbuf.data());
        const Mat dor = rows_of(dout + row0 * D, nr, D, Dp, sc.dobuf.data());
        // P = exp(S - lse); columns nc..ncp hold finite junk that only meets the zero rows of ks.
        gemm(nr, ncp, D, qr, sc.kt.data(), kBlockK, p, kBlockK, false);
        pb.mask_scores(p, kBlockK, 1, b, h, r0, nr, c0, nc);
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t j = 0; j < ncp; j += 8)
            store8(p + r * kBlockK + j, exp_nonpositive(load8(p + r * kBlockK + j) - lse_b[row0 + r]));

        // dV += Pd^T dO with Pd = P * Z the probabilities after dropout (in dp for now).
        const float* pd = p;
        if (pb.dropout()) {
          for (int64_t r = 0; r < nr; ++r) {
            float *zr = z + r * kBlockK, *prow = p + r * kBlockK, *pdr = dp + r * kBlockK;
            pb.dropout_scales(b, h, r0 + r, c0, nc, zr, 1);
            for (int64_t j = 0; j < nc; ++j) pdr[j] = prow[j] * zr[j];
          }
          pd = dp;
        }
        gemm(nc, Dp, nr, {pd, 1, kBlockK}, dor.data, dor.row, sc.dv.data(), Dp, true);

        // dS = P * (dP * Z - Di) with dP = dO V^T, into p.
        gemm(nr, ncp, D, dor, sc.vt.data(), kBlockK, dp, kBlockK, false);
        for (int64_t r = 0; r < nr; ++r) {
          float *prow = p + r * kBlockK, *dpr = dp + r * kBlockK;
          const float di = delta[row0 + r];
          if (pb.dropout()) {
            const float* zr = z + r * kBlockK;
            for (int64_t j = 0; j < nc; ++j) prow[j] *= dpr[j] * zr[j] - di;
          } else {
            for (int64_t j = 0; j < nc; ++j) prow[j] *= dpr[j] - di;
          }
        }
        gemm(nr, Dp, ncp, {p, kBlockK, 1}, sc.ks.data(), Dp, dq_acc[w] + row0 * Dp, Dp, true);
        gemm(nc, Dp, nr, {p, 1, kBlockK}, qr.data, qr.row, sc.dk.data(), Dp, true);
      }
    }
    for (int64_t j = 0; j < nc; ++j)
      for (int64_t d = 0; d < D; ++d) {
        dk[(kv_head * pb.Lk + c0 + j) * D + d] = T(sc.dk[j * Dp + d] * scale);
        dv[(kv_head * pb.Lk + c0 + j) * D + d] = T(sc.dv[j * Dp + d]);
      }
  });

  // Sum into the first accumulator, then (unless that is dq) convert into dq.
  if (first_is_dq && workers == 1) return;
  parallel_for(rows, grain_for(workers * D), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* sum = dq_acc[0] + i * Dp;
      for (size_t w = 1; w < dq_acc.size(); ++w)
        for (int64_t d = 0; d < D; ++d) sum[d] += dq_acc[w][i * Dp + d];
      if (!first_is_dq)
        for (int64_t d = 0; d < D; ++d) dq[i * D + d] = T(sum[d]);
    }
  });
}

}  // namespace

void CpuRuntime::attention_forward(const AttentionForwardArgs& a) {
  const auto& [q, k, v, p, out, lse] = a;
  const Problem pb(q, k, p);
  ORCHARD_DISPATCH_FLOATING(q.dtype(), {
    forward<T>(pb, q.data_as<T>(), k.data_as<T>(), v.data_as<T>(), out.data_as<T>(), lse.data_as<float>());
  });
}

void CpuRuntime::attention_backward(const AttentionBackwardArgs& a) {
  const auto& [q, k, v, out, lse, dout, p, dq, dk, dv] = a;
  const Problem pb(q, k, p);
  ORCHARD_DISPATCH_FLOATING(q.dtype(), {
    backward<T>(pb, q.data_as<T>(), k.data_as<T>(), v.data_as<T>(), out.data_as<T>(), lse.data_as<float>(),
                dout.data_as<T>(), dq.data_as<T>(), dk.data_as<T>(), dv.data_as<T>());
  });
}

}  // namespace orchard::cpu
