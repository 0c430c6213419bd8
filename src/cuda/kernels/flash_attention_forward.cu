// FlashAttention-2 forward (Dao, 2023) for bfloat16 and float16 on tensor cores (sm_80+), the CUDA
// backend's replacement of metal/attention.metal's attention_forward_<dtype>_d<DT> where it takes the
// launch (src/cuda/flash_attention.h says which). Compiled alone by NVRTC, with no CUDA header: 16-bit
// values are raw `unsigned short` bits, and the tensor-core work is inline PTX.
//
// Semantics, as the portable kernel: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], contiguous, query
// head h reading kv head h / (Hq / Hkv); S = scale q k^T, causal masking col > row (top-left aligned);
// out = softmax(S) v in the input dtype, lse = log(sum exp(S - m)) + m in float32 and natural log. A
// row with no visible key (Lk = 0) gets out 0 and lse -inf; a NaN row sum gives out NaN and lse -inf.
//
// Tiling: a CTA of 4 warps per (block of 64 query rows, query head, batch); warp w owns rows
// 16w..16w+15 of the block and holds their q as mma A fragments in registers for the whole run. The
// CTA walks the keys in blocks of 64 (a causal block stops at its last row's diagonal), staging k and
// v tiles [64][D] in shared memory with cp.async (rows padded to D + 8 elements, so that the 8 rows
// an ldmatrix phase reads fall in distinct banks; rows past Lk are zero-filled). Per key block:
//   wait for k; barrier; start loading v         (overlaps S and the softmax)
//   S = q k^T: m16n8k16 mma, fp32 accumulators, 8 n-tiles of 8 keys per warp
//   online softmax in registers, base 2: p = exp2(S log2(e) scale - m)
//   wait for v; barrier; start loading the next k (overlaps P v)
//   O = diag(alpha) O + P v, P re-packed from the S accumulators into A fragments
// and at the end O / l is written in the input dtype and lse = m ln 2 + log l.
//
// (Fragment layouts: src/cuda/include/tensor_core.cuh.) So:
//   - q: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15) of a 16 x 16 step are reg0..reg3 of A;
//   - k, stored [key][dim], is B = k^T as it is: matrices (8 keys) x (dims 0-7, 8-15, 16-23, 24-31)
//     are the B registers of two k-steps;
//   - v, stored [key][dim], is B with .trans: matrices (keys 0-7 | 8-15) x (dims 0-7 | 8-15) are the
//     B registers of two n-tiles;
//   - P: the C fragments of n-tiles 2j and 2j + 1 are, packed in pairs, the A fragment of k-step j.
#include "flash_attention_tiles.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // query rows of a CTA
constexpr int kKeys = 64;           // keys of a block

template <bool BF16, int D>
__device__ __forceinline__ void flash_forward(const u16* __restrict__ q, const u16* __restrict__ k,
                                              const u16* __restrict__ v, u16* __restrict__ out,
                                              float* __restrict__ lse, long long lq, long long lk, u32 heads_q,
                                              u32 heads_kv, u32 causal, float scale_log2) {
  static_assert(D % 32 == 0, "k fragments are loaded 32 dims at a time");
  constexpr int kStride = D + 8;  // of a shared row, in elements
  __shared__ __align__(16) u16 k_tile[kKeys * kStride];
  __shared__ __align__(16) u16 v_tile[kKeys * kStride];
  const smem_addr k_smem = shared_address(k_tile), v_smem = shared_address(v_tile);

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, t = lane % 4;
  const QueryBlock<kRows> block(heads_q, heads_kv, lk, causal);
  const long long r0 = block.r0, head = block.head, key_end = block.key_end;
  const u16* kh = k + block.kv_head * lk * D;
  const u16* vh = v + block.kv_head * lk * D;
  const long long warp_row0 = r0 + 16 * warp;
  const long long rows[2] = {warp_row0 + lane / 4, warp_row0 + lane / 4 + 8};  // this lane's rows: C registers 0-1 and 2-3

  // The q block goes through v's tile, while k's first block loads.
  load_tile<kKeys, D, kThreads>(v_smem, q + head * lq * D, r0, lq, tid);
  if (key_end > 0) load_tile<kKeys, D, kThreads>(k_smem, kh, 0, lk, tid);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  // ldmatrix row addresses of q and v: rows (lane & 7) + 8 ((lane >> 3) & 1), columns 8 (lane >> 4).
  const u32 a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
  u32 qf[D / 16][4];
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks)
    ldmatrix_x4(qf[ks], v_smem + ((16 * warp + a_row) * kStride + 16 * ks + a_col) * 2);

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-infinity(), -infinity()};  // running row maxima, of S log2(e) scale
  float l[2] = {0.0f, 0.0f};                // this lane's part of the row sums (its columns)

  for (long long c0 = 0; c0 < key_end; c0 += kKeys) {
    cp_async_wait_all();  // k's block
    __syncthreads();      // ... visible to all; every warp is done with the last v and q
    load_tile<kKeys, D, kThreads>(v_smem, vh, c0, lk, tid);
    cp_async_commit();

    // S = q k^T: k rows 8n + (lane & 7), dims 32 kp + 8 (lane >> 3).
    float s[kKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kp = 0; kp < D / 32; ++kp) {
        u32 kf[4];
        ldmatrix_x4(kf, k_smem + ((8 * n + (lane & 7)) * kStride + 32 * kp + (lane >> 3) * 8) * 2);
        mma<BF16>(s[n], qf[2 * kp], kf[0], kf[1]);
        mma<BF16>(s[n], qf[2 * kp + 1], kf[2], kf[3]);
      }
    }

    // Scale to base 2, and mask keys past Lk and, on the diagonal, above it.
    const bool edge = c0 + kKeys > lk || (causal && c0 + kKeys - 1 > warp_row0);
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[n][i] *= scale_log2;
        if (edge) {
          const long long col = c0 + 8 * n + 2 * t + (i & 1);
          if (col >= lk || (causal && col > rows[i / 2])) s[n][i] = -infinity();
        }
      }

    // Online softmax. A row with nothing visible yet keeps max -inf and shifts by 0, so that its p
    // are 0, not NaN.
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[r];
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, shuffle_xor(mx, 1));  // the 4 lanes of a row
      mx = fmaxf(mx, shuffle_xor(mx, 2));
      const float shift = mx == -infinity() ? 0.0f : mx;
      alpha[r] = exp2f(m[r] - shift);
      m[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) {
        s[n][2 * r] = exp2f(s[n][2 * r] - shift);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - shift);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      l[r] = l[r] * alpha[r] + sum;
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][0] *= alpha[0];
      o[j][1] *= alpha[0];
      o[j][2] *= alpha[1];
      o[j][3] *= alpha[1];
    }

    cp_async_wait_all();  // v's block
    __syncthreads();      // ... visible to all; every warp is done with k
    if (c0 + kKeys < key_end) load_tile<kKeys, D, kThreads>(k_smem, kh, c0 + kKeys, lk, tid);
    cp_async_commit();

    // O += P v: v rows 16 j + a_row, dims 16 dp + a_col, transposed.
#pragma unroll
    for (int j = 0; j < kKeys / 16; ++j) {
      const u32 pf[4] = {pack<BF16>(s[2 * j][0], s[2 * j][1]), pack<BF16>(s[2 * j][2], s[2 * j][3]),
                         pack<BF16>(s[2 * j + 1][0], s[2 * j + 1][1]), pack<BF16>(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        u32 vf[4];
        ldmatrix_x4_trans(vf, v_smem + ((16 * j + a_row) * kStride + 16 * dp + a_col) * 2);
        mma<BF16>(o[2 * dp], pf, vf[0], vf[1]);
        mma<BF16>(o[2 * dp + 1], pf, vf[2], vf[3]);
      }
    }
  }

  // out = O / l, lse = m ln 2 + log l (natural log); l = 0 (no key) gives 0 and -inf, as the portable
  // kernel, whose NaN rows also get lse -inf.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r] + shuffle_xor(l[r], 1);
    sum += shuffle_xor(sum, 2);
    const float inv = sum > 0.0f ? 1.0f / sum : (sum != sum ? sum : 0.0f);
    const long long row = rows[r];
    if (row >= lq) continue;
    u32* dst = reinterpret_cast<u32*>(out + (head * lq + row) * D + 2 * t);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) dst[4 * j] = pack<BF16>(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
    if (t == 0) lse[head * lq + row] = sum > 0.0f ? m[r] * kLn2 + logf(sum) : -infinity();
  }
}

}  // namespace

// Entry points, by the names flash_attention.cpp launches: flash_attention_forward_<bf16|f16>_d<D>.
// Grid (ceil(Lq / 64), Hq, B), 128 threads, static shared memory only (at most 34 KiB, at D = 128).
#define ORCHARD_FLASH_FORWARD(NAME, BF16, D)                                                                   \
  extern "C" __global__ void __launch_bounds__(kThreads)                                                       \
      flash_attention_forward_##NAME##_d##D(const u16* q, const u16* k, const u16* v, u16* out, float* lse,   \
                                            long long lq, long long lk, u32 heads_q, u32 heads_kv, u32 causal, \
                                            float scale_log2) {                                                \
    flash_forward<BF16, D>(q, k, v, out, lse, lq, lk, heads_q, heads_kv, causal, scale_log2);                  \
  }
#define ORCHARD_FLASH_FORWARD_DTYPES(D) ORCHARD_FLASH_FORWARD(bf16, true, D) ORCHARD_FLASH_FORWARD(f16, false, D)
ORCHARD_FLASH_FORWARD_DTYPES(32)
ORCHARD_FLASH_FORWARD_DTYPES(64)
ORCHARD_FLASH_FORWARD_DTYPES(96)
ORCHARD_FLASH_FORWARD_DTYPES(128)
