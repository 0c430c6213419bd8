// FlashAttention-2 backward (Dao, 2023) for bfloat16 and float16 on tensor cores (sm_80+), the CUDA
// backend's replacement of metal/attention.metal's attention_dq_<dtype>_d<DT> and
// attention_dkv_<dtype>_d<DT> where it takes the launches (src/cuda/flash_attention.h says which). The
// portable attention_delta kernel runs before them: delta = rowsum(dO * O) in float32.
//
// Semantics, as the portable kernels: q and dO [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], contiguous;
// S = scale q k^T, causal masking col > row (top-left aligned); P = exp(S - lse) from the forward's
// natural-log lse, where lse = -inf (a row that saw no key) reads as +inf so that its P is 0;
// dS = P (dP - delta) with dP = dO v^T; dQ = scale dS k, dK = scale dS^T q, dV = P^T dO, written in
// the input dtype. Grouped-query heads are summed in the dK/dV kernel, which walks every query head
// of its kv head: no atomics.
//
// Both kernels are one shape: a CTA of 4 warps owns 64 rows of one side (query rows for dQ, key rows
// for dK/dV), warp w rows 16w..16w+15, whose two operand tiles (q and dO; k and v) stay in shared
// memory for the whole run; it walks the other side in blocks of N rows (64, or 32 at D > 64 to keep
// the accumulators in registers), staging that side's two tiles per block. Per block a warp computes
// its 16 x N scores twice with m16n8k16 mma (S, and dP; transposed for dK/dV, where the rows are
// keys), turns them into P and dS in registers, and accumulates dS (and P) times a staged tile, each
// re-packed from the C fragments into A fragments as the forward does for P v. Tiles live in dynamic
// shared memory, rows padded to D + 8 elements (flash_attention_tiles.cuh); at D = 128 a CTA takes
// 51 KiB, above the 48 KiB a kernel gets without opting in.
#include "flash_attention_tiles.cuh"

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows a CTA owns

// The rows of a streamed block.
template <int D> constexpr int block_rows() { return D <= 64 ? 64 : 32; }

// s = A B^T for the warp's 16 x N scores: A the warp's 16 rows of a [*][D + 8] tile (a points at its
// first row), B an [N][D + 8] tile whose rows are the scores' columns. A comes in as in the forward
// (q), B as the forward's k.
template <bool BF16, int D, int N>
__device__ __forceinline__ void scores(float (&s)[N / 8][4], smem_addr a, smem_addr b, int lane) {
  static_assert(D % 32 == 0, "B fragments are loaded 32 dims at a time");
  constexpr int kStride = D + 8;
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
#pragma unroll
  for (int n = 0; n < N / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
  for (int kp = 0; kp < D / 32; ++kp) {
    u32 a0[4], a1[4];
    ldmatrix_x4(a0, a + u32(a_row * kStride + 32 * kp + a_col) * 2);
    ldmatrix_x4(a1, a + u32(a_row * kStride + 32 * kp + 16 + a_col) * 2);
#pragma unroll
    for (int n = 0; n < N / 8; ++n) {
      u32 bf[4];
      ldmatrix_x4(bf, b + u32((8 * n + (lane & 7)) * kStride + 32 * kp + (lane >> 3) * 8) * 2);
      mma<BF16>(s[n], a0, bf[0], bf[1]);
      mma<BF16>(s[n], a1, bf[2], bf[3]);
    }
  }
}

// acc += P B for the warp's 16 rows: P the 16 x N C fragments (rounded to 16 bits), B an [N][D + 8]
// tile, read transposed as the forward's v.
template <bool BF16, int D, int N>
__device__ __forceinline__ void accumulate(float (&acc)[D / 8][4], const float (&p)[N / 8][4], smem_addr b, int lane) {
  constexpr int kStride = D + 8;
  const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
#pragma unroll
  for (int j = 0; j < N / 16; ++j) {
    const u32 pf[4] = {pack<BF16>(p[2 * j][0], p[2 * j][1]), pack<BF16>(p[2 * j][2], p[2 * j][3]),
                       pack<BF16>(p[2 * j + 1][0], p[2 * j + 1][1]), pack<BF16>(p[2 * j + 1][2], p[2 * j + 1][3])};
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      u32 bf[4];
      ldmatrix_x4_trans(bf, b + u32((16 * j + a_row) * kStride + 16 * dp + a_col) * 2);
      mma<BF16>(acc[2 * dp], pf, bf[0], bf[1]);
      mma<BF16>(acc[2 * dp + 1], pf, bf[2], bf[3]);
    }
  }
}

// Writes scale * acc, the warp's 16 rows, to dst (its first row of a [*, D] matrix), rows below `rows`.
template <bool BF16, int D>
__device__ __forceinline__ void store_rows(u16* dst, const float (&acc)[D / 8][4], long long rows, float scale,
                                           int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (g + 8 * r >= rows) continue;
    u32* row = reinterpret_cast<u32*>(dst + (g + 8 * r) * D + 2 * t);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) row[4 * j] = pack<BF16>(acc[j][2 * r] * scale, acc[j][2 * r + 1] * scale);
  }
}

// The forward's lse of a query row in base 2, for P = exp2(S log2(e) scale - lse): -inf (no key) reads
// as +inf, and so do rows past the end.
__device__ __forceinline__ float backward_lse(const float* lse, long long i, bool valid) {
  const float x = valid ? lse[i] : -infinity();
  return x == -infinity() ? infinity() : x * kLog2e;
}

// dQ: a CTA per (block of 64 query rows, query head, batch), over the key blocks.
template <bool BF16, int D>
__device__ __forceinline__ void flash_dq(const u16* __restrict__ q, const u16* __restrict__ k,
                                         const u16* __restrict__ v, const u16* __restrict__ dout,
                                         const float* __restrict__ lse, const float* __restrict__ delta,
                                         u16* __restrict__ dq, long long lq, long long lk, u32 heads_q, u32 heads_kv,
                                         u32 causal, float scale_log2, float scale) {
  constexpr int N = block_rows<D>(), kStride = D + 8;
  const smem_addr q_smem = shared_address(dynamic_shared());
  const smem_addr do_smem = q_smem + kRows * kStride * 2, k_smem = do_smem + kRows * kStride * 2;
  const smem_addr v_smem = k_smem + N * kStride * 2;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, t = lane % 4;
  const QueryBlock<kRows> block(heads_q, heads_kv, lk, causal);
  const long long r0 = block.r0, head = block.head, key_end = block.key_end;
  const u16* kh = k + block.kv_head * lk * D;
  const u16* vh = v + block.kv_head * lk * D;
  const long long warp_row0 = r0 + 16 * warp;
  const long long rows[2] = {warp_row0 + lane / 4, warp_row0 + lane / 4 + 8};  // this lane's rows: C registers 0-1 and 2-3
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_lse[r] = backward_lse(lse, head * lq + rows[r], rows[r] < lq);
    row_delta[r] = rows[r] < lq ? delta[head * lq + rows[r]] : 0.0f;
  }

  load_tile<kRows, D, kThreads>(q_smem, q + head * lq * D, r0, lq, tid);
  load_tile<kRows, D, kThreads>(do_smem, dout + head * lq * D, r0, lq, tid);
  cp_async_commit();
  float acc[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

  for (long long c0 = 0; c0 < key_end; c0 += N) {
    __syncthreads();  // every warp is done with the last k and v
    load_tile<N, D, kThreads>(k_smem, kh, c0, lk, tid);
    load_tile<N, D, kThreads>(v_smem, vh, c0, lk, tid);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    float p[N / 8][4];
    scores<BF16, D, N>(p, q_smem + u32(16 * warp * kStride) * 2, k_smem, lane);
    const bool edge = c0 + N > lk || (causal && c0 + N - 1 > warp_row0);
#pragma unroll
    for (int n = 0; n < N / 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        p[n][i] = exp2f(p[n][i] * scale_log2 - row_lse[i / 2]);
        if (edge) {
          const long long col = c0 + 8 * n + 2 * t + (i & 1);
          if (col >= lk || (causal && col > rows[i / 2])) p[n][i] = 0.0f;
        }
      }
    float ds[N / 8][4];
    scores<BF16, D, N>(ds, do_smem + u32(16 * warp * kStride) * 2, v_smem, lane);  // dP = dO v^T
#pragma unroll
    for (int n = 0; n < N / 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) ds[n][i] = p[n][i] * (ds[n][i] - row_delta[i / 2]);
    accumulate<BF16, D, N>(acc, ds, k_smem, lane);
  }
  cp_async_wait_all();  // q and dO, when there was no key block
  store_rows<BF16, D>(dq + (head * lq + warp_row0) * D, acc, lq - warp_row0, scale, lane);
}

// dK and dV: a CTA per (block of 64 key rows, kv head, batch), over the query blocks of every query
// head of its group; its warps' scores are transposed (rows keys, columns queries).
template <bool BF16, int D>
__device__ __forceinline__ void flash_dkv(const u16* __restrict__ q, const u16* __restrict__ k,
                                          const u16* __restrict__ v, const u16* __restrict__ dout,
                                          const float* __restrict__ lse, const float* __restrict__ delta,
                                          u16* __restrict__ dk, u16* __restrict__ dv, long long lq, long long lk,
                                          u32 heads_q, u32 heads_kv, u32 causal, float scale_log2, float scale) {
  constexpr int N = block_rows<D>(), kStride = D + 8;
  unsigned char* smem = dynamic_shared();
  const smem_addr k_smem = shared_address(smem), v_smem = k_smem + kRows * kStride * 2;
  const smem_addr q_smem = v_smem + kRows * kStride * 2, do_smem = q_smem + N * kStride * 2;
  float* lse_tile = reinterpret_cast<float*>(smem + (2 * kRows + 2 * N) * kStride * 2);
  float* delta_tile = lse_tile + N;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const u32 hkv = blockIdx.y, b = blockIdx.z, group = heads_q / heads_kv;
  const long long k0 = (long long)blockIdx.x * kRows;
  const long long kv_head = (long long)b * heads_kv + hkv;
  const long long warp_key0 = k0 + 16 * warp;
  const long long keys[2] = {warp_key0 + g, warp_key0 + g + 8};  // this lane's rows: C registers 0-1 and 2-3

  load_tile<kRows, D, kThreads>(k_smem, k + kv_head * lk * D, k0, lk, tid);
  load_tile<kRows, D, kThreads>(v_smem, v + kv_head * lk * D, k0, lk, tid);
  cp_async_commit();
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) dk_acc[j][i] = dv_acc[j][i] = 0.0f;

  const long long q_start = causal ? k0 : 0;  // causal: earlier queries see none of these keys
  for (u32 hq = hkv * group; hq < (hkv + 1) * group; ++hq) {
    const long long head = (long long)b * heads_q + hq;
    for (long long q0 = q_start; q0 < lq; q0 += N) {
      __syncthreads();  // every warp is done with the last query block
      load_tile<N, D, kThreads>(q_smem, q + head * lq * D, q0, lq, tid);
      load_tile<N, D, kThreads>(do_smem, dout + head * lq * D, q0, lq, tid);
      cp_async_commit();
      for (int i = tid; i < N; i += kThreads) {
        lse_tile[i] = backward_lse(lse, head * lq + q0 + i, q0 + i < lq);
        delta_tile[i] = q0 + i < lq ? delta[head * lq + q0 + i] : 0.0f;
      }
      cp_async_wait_all();
      __syncthreads();

      float p[N / 8][4];  // P^T
      scores<BF16, D, N>(p, k_smem + u32(16 * warp * kStride) * 2, q_smem, lane);
      const bool edge = causal && q0 < warp_key0 + 15;
#pragma unroll
      for (int n = 0; n < N / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int col = 8 * n + 2 * t + (i & 1);
          p[n][i] = exp2f(p[n][i] * scale_log2 - lse_tile[col]);
          if (edge && q0 + col < keys[i / 2]) p[n][i] = 0.0f;
        }
      accumulate<BF16, D, N>(dv_acc, p, do_smem, lane);  // dV += P^T dO
      float ds[N / 8][4];
      scores<BF16, D, N>(ds, v_smem + u32(16 * warp * kStride) * 2, do_smem, lane);  // dP^T = v dO^T
#pragma unroll
      for (int n = 0; n < N / 8; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) ds[n][i] = p[n][i] * (ds[n][i] - delta_tile[8 * n + 2 * t + (i & 1)]);
      accumulate<BF16, D, N>(dk_acc, ds, q_smem, lane);  // dK += dS^T q
    }
  }
  cp_async_wait_all();  // k and v, when there was no query block
  store_rows<BF16, D>(dk + (kv_head * lk + warp_key0) * D, dk_acc, lk - warp_key0, scale, lane);
  store_rows<BF16, D>(dv + (kv_head * lk + warp_key0) * D, dv_acc, lk - warp_key0, 1.0f, lane);
}

}  // namespace

// Entry points, by the names flash_attention.cpp launches: flash_attention_dq_<bf16|f16>_d<D>, grid
// (ceil(Lq / 64), Hq, B), and flash_attention_dkv_<bf16|f16>_d<D>, grid (ceil(Lk / 64), Hkv, B); 128
// threads; dynamic shared memory (128 + 2 N) (D + 8) * 2 bytes, and 8 N more for dK/dV.
#define ORCHARD_FLASH_BACKWARD(NAME, BF16, D)                                                                      \
  extern "C" __global__ void __launch_bounds__(kThreads)                                                           \
      flash_attention_dq_##NAME##_d##D(const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse, \
                                       const float* delta, u16* dq, long long lq, long long lk, u32 heads_q,        \
                                       u32 heads_kv, u32 causal, float scale_log2, float scale) {                   \
    flash_dq<BF16, D>(q, k, v, dout, lse, delta, dq, lq, lk, heads_q, heads_kv, causal, scale_log2, scale);        \
  }                                                                                                                 \
  extern "C" __global__ void __launch_bounds__(kThreads) flash_attention_dkv_##NAME##_d##D(                         \
      const u16* q, const u16* k, const u16* v, const u16* dout, const float* lse, const float* delta, u16* dk,     \
      u16* dv, long long lq, long long lk, u32 heads_q, u32 heads_kv, u32 causal, float scale_log2, float scale) {  \
    flash_dkv<BF16, D>(q, k, v, dout, lse, delta, dk, dv, lq, lk, heads_q, heads_kv, causal, scale_log2, scale);   \
  }
#define ORCHARD_FLASH_BACKWARD_DTYPES(D) ORCHARD_FLASH_BACKWARD(bf16, true, D) ORCHARD_FLASH_BACKWARD(f16, false, D)
ORCHARD_FLASH_BACKWARD_DTYPES(32)
ORCHARD_FLASH_BACKWARD_DTYPES(64)
ORCHARD_FLASH_BACKWARD_DTYPES(96)
ORCHARD_FLASH_BACKWARD_DTYPES(128)
