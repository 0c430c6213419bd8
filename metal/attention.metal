// FlashAttention-2 (Dao, 2023) forward and backward, matching src/cpu/attention.cpp: exact attention
// over tiles in float32, never materialising the [Lq, Lk] score matrix.
//
// - attention_forward_<dtype>_d<DT>: one threadgroup per (query block, query head, batch); each
//   simdgroup owns 8 query rows and runs over the key blocks with an online softmax, keeping its
//   8 x D output in simdgroup matrices, and saves the row log-sum-exp.
// - attention_delta_<dtype>: D_i = rowsum(dO * O) in float32, one thread per query row, its row read
//   through threadgroup memory by its simdgroup.
// - attention_dq_<dtype>_d<DT>: one threadgroup per (query block, query head, batch) recomputes
//   P = exp(S - lse) over the key blocks and accumulates dQ = scale dS K in simdgroup matrices.
// - attention_dkv_<dtype>_d<DT>: one threadgroup per (key block, kv head, batch) runs over the query
//   blocks of every query head of its group (grouped-query attention sums them here, no atomics),
//   recomputing P^T and accumulating dV = Pd^T dO and dK = scale dS^T Q.
//
// Tiles of q, k, v and dO are staged in threadgroup memory as float, rows of a tier's width DT
// (attention_params.h) with the columns D..ceil(D/8)*8 and the rows past the sequence ends zero;
// the products are 8x8 simdgroup matrices in float32 whatever the input dtype, over the ceil(D/8)
// column blocks D needs. Elementwise work (masks, softmax, dropout) runs on the lanes, from 8 x N
// score tiles a simdgroup stores to its own threadgroup scratch.
//
// Conventions (as the CPU): S = scale q k^T + mask, -inf where masked (causal: col > row). A row
// whose scores are all masked gets output 0 and lse = -inf, and zero gradients (the backward reads
// lse = -inf as +inf, so P = exp(S - lse) is 0, not NaN). Dropout keeps score (b, h, row, col) when
// attention_dropout_keep (src/core/philox.h) says so and scales it by 1 / (1 - p); the forward's
// row sums are taken before dropout. The backward regenerates the same bits.
#include "common.h"
#include "attention_params.h"
#include "../src/core/philox.h"

// Rows [row0, row0 + rows) of a [*, D] matrix (rows at or past `valid` read as zero) times `mul`,
// as floats into a [rows, DT] tile; columns D..ceil(D/8)*8 are zero, later ones are never read.
// Every thread of the threadgroup takes part.
template <typename T, uint DT>
inline void attn_stage(threadgroup float* dst, device const T* src, int64_t row0, int64_t valid, uint rows, uint d,
                       float mul, uint tid, uint threads) {
  const uint d8 = (d + 7) / 8 * 8;
  for (uint e = tid; e < rows * d8; e += threads) {
    const uint r = e / d8, c = e - r * d8;
    const int64_t row = row0 + int64_t(r);
    dst[r * DT + c] = (row < valid && c < d) ? float(src[row * int64_t(d) + c]) * mul : 0.0f;
  }
}

// out[8 x 8NB] (row stride ldo) = a[8 x D] b[8NB x D]^T over the first nt 8-wide column blocks of
// the tiles a and b (row stride DT). Called by every lane of one simdgroup.
template <uint NB, uint DT>
inline void attn_product_abt(threadgroup float* out, uint ldo, threadgroup float* a, threadgroup float* b, uint nt) {
  for (uint j = 0; j < NB; ++j) {
    simdgroup_float8x8 acc = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    for (uint t = 0; t < DT / 8; ++t) {
      if (t < nt) {
        simdgroup_float8x8 x, y;
        simdgroup_load(x, a + t * 8, DT);
        simdgroup_load(y, b + j * 8 * DT + t * 8, DT, ulong2(0, 0), true);
        simdgroup_multiply_accumulate(acc, x, y, acc);
      }
    }
    simdgroup_store(acc, out + j * 8, ldo);
  }
}

// acc[t] += a[8 x 8NB] (row stride lda) b[8NB x D] (row stride DT) for the first nt column blocks.
template <uint NB, uint DT>
inline void attn_product_ab(thread simdgroup_float8x8* acc, threadgroup float* a, uint lda, threadgroup float* b,
                            uint nt) {
  simdgroup_float8x8 x[NB];
  for (uint j = 0; j < NB; ++j) simdgroup_load(x[j], a + j * 8, lda);
  for (uint t = 0; t < DT / 8; ++t) {
    if (t < nt) {
      for (uint j = 0; j < NB; ++j) {
        simdgroup_float8x8 y;
        simdgroup_load(y, b + j * 8 * DT + t * 8, DT);
        simdgroup_multiply_accumulate(acc[t], x[j], y, acc[t]);
      }
    }
  }
}

// Writes rows [0, valid) of the 8 x D matrix held in acc, times mul (and, with ROW_MUL, times row r's
// factor row_mul[9 r], a diagonal's entries), to dst (row stride d) as T, through the simdgroup's
// 8 x 8NB scratch `stage`. Called by every lane of one simdgroup.
template <typename T, uint NB, uint DT, bool ROW_MUL>
inline void attn_write_rows(thread simdgroup_float8x8* acc, threadgroup float* stage, device T* dst, uint valid,
                            uint d, uint nt, float mul, threadgroup float* row_mul, uint lane) {
  for (uint t0 = 0; t0 < DT / 8; t0 += NB) {
    if (t0 < nt) {
      for (uint j = 0; j < NB; ++j)
        if (t0 + j < nt) simdgroup_store(acc[t0 + j], stage + j * 8, 8 * NB);
      simdgroup_barrier(mem_flags::mem_threadgroup);
      for (uint e = lane; e < 64 * NB; e += 32) {
        const uint r = e / (8 * NB), c = t0 * 8 + e % (8 * NB);
        if (r < valid && c < d) dst[int64_t(r) * d + c] = T(ROW_MUL ? stage[e] * mul * row_mul[9 * r] : stage[e] * mul);
      }
      simdgroup_barrier(mem_flags::mem_threadgroup);
    }
  }
}

// Dropout scales of `n` consecutive scores whose first is Philox number `first`: keep_scale where
// attention_dropout_keep keeps the score, 0 where it drops it (each Philox block computed once).
template <uint N>
inline void attn_dropout_scales(thread float* z, uint64_t first, constant AttentionKernelParams& p) {
  orchard::Philox4 block = orchard::philox_block(p.seed, first / 4);
  for (uint j = 0; j < N; ++j) {
    const uint64_t n = first + j;
    if (j > 0 && n % 4 == 0) block = orchard::philox_block(p.seed, n / 4);
    z[j] = block.v[n % 4] >= p.drop_threshold ? p.keep_scale : 0.0f;
  }
}

// The score of query row `row` and key column `col` of head (b, h), given s = scale q k^T: adds the
// mask and masks the causal triangle and columns past the keys. `row` must be a real query row.
inline float attn_score(float s, int64_t row, int64_t col, uint b, uint h, device const float* mask,
                        constant AttentionKernelParams& p) {
  if (col >= p.lk) return -INFINITY;
  if (p.has_mask)
    s += mask[int64_t(b) * p.mask_strides[0] + int64_t(h) * p.mask_strides[1] + row * p.mask_strides[2] +
              col * p.mask_strides[3]];
  if (p.causal && col > row) return -INFINITY;
  return s;
}

inline int64_t attn_min(int64_t a, int64_t b) { return a < b ? a : b; }
// How many of the 8 rows from row0 lie before `end`.
inline uint attn_rows_before(int64_t end, int64_t row0) { return end - row0 <= 0 ? 0u : (end - row0 >= 8 ? 8u : uint(end - row0)); }

// m[t] = diag m[t] for the first nt blocks: a per-row scaling, as the diagonal's zeros add exactly 0
// (the factors must be finite, and so must m: 0 x NaN would spread a row's NaN to the others).
template <uint DT>
inline void attn_scale_rows(thread simdgroup_float8x8* m, threadgroup float* diag, uint nt) {
  simdgroup_float8x8 dm;
  simdgroup_load(dm, diag, 8);
  for (uint t = 0; t < DT / 8; ++t) {
    if (t < nt) {
      simdgroup_float8x8 r;
      simdgroup_multiply(r, dm, m[t]);
      m[t] = r;
    }
  }
}

// The backward's lse of a query row: -inf (a fully masked row) becomes +inf, so its P is 0.
inline float attn_backward_lse(device const float* lse, int64_t i) {
  const float x = lse[i];
  return x == -INFINITY ? INFINITY : x;
}

// ---- forward ---------------------------------------------------------------------------------

// Threadgroup memory: q [8 NSG, DT] (times scale), k and v [BK, DT], and per simdgroup an 8 x BK
// score tile, an 8 x 8 diagonal matrix (the rows' rescaling factors) and 32 partial row maxima.
template <typename T, uint DT, uint NSG, uint BK>
[[kernel]] void attention_forward(device const T* q [[buffer(0)]], device const T* k [[buffer(1)]],
                                  device const T* v [[buffer(2)]], device const float* mask [[buffer(3)]],
                                  device T* out [[buffer(4)]], device float* lse [[buffer(5)]],
                                  constant AttentionKernelParams& p [[buffer(6)]],
                                  threadgroup float* q_tile [[threadgroup(0)]],
                                  threadgroup float* k_tile [[threadgroup(1)]],
                                  threadgroup float* v_tile [[threadgroup(2)]],
                                  threadgroup float* scratch [[threadgroup(3)]],
                                  uint3 group [[threadgroup_position_in_grid]],
                                  uint tid [[thread_index_in_threadgroup]],
                                  uint sg [[simdgroup_index_in_threadgroup]],
                                  uint lane [[thread_index_in_simdgroup]]) {
  const uint BQ = 8 * NSG, NB = BK / 8, CPL = BK / 4, THREADS = 32 * NSG;
  const uint h = group.y, b = group.z, d = p.head_dim, nt = (d + 7) / 8;
  const int64_t lq = p.lq, lk = p.lk;
  const int64_t r0 = int64_t(p.blocks - 1 - group.x) * BQ;  // last query blocks first: the most keys when causal
  const int64_t head = int64_t(b) * p.heads_q + h, kv_head = int64_t(b) * p.heads_kv + h / p.group;
  device const T* kh = k + kv_head * lk * d;
  device const T* vh = v + kv_head * lk * d;
  attn_stage<T, DT>(q_tile, q + head * lq * d, r0, lq, BQ, d, p.scale, tid, THREADS);

  threadgroup float* s_tile = scratch + sg * (8 * BK + 96);
  threadgroup float* diag = s_tile + 8 * BK;
  threadgroup float* lane_max = diag + 64;
  for (uint e = lane; e < 64; e += 32) diag[e] = 0.0f;
  simdgroup_float8x8 o[DT / 8];
  for (uint t = 0; t < DT / 8; ++t) o[t] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

  // Lane l handles row l / 4 of the simdgroup's 8 and the CPL consecutive columns from (l % 4) CPL
  // of each score tile; the four lanes of a row combine their maxima through lane_max (one
  // simdgroup barrier, where shuffles would cost more), and keep partial row sums that are added
  // once at the end.
  const uint row = lane / 4, col = (lane % 4) * CPL;
  const int64_t sg_row0 = r0 + 8 * sg, grow = sg_row0 + row;
  const bool row_valid = grow < lq;
  const int64_t key_end = p.causal ? attn_min(lk, r0 + BQ) : lk;
  const int64_t sg_key_end = p.causal ? attn_min(lk, sg_row0 + 8) : lk;  // keys any of the simdgroup's rows sees
  const uint64_t drop_row = p.offset + uint64_t(((int64_t(b) * p.heads_q + h) * lq + grow) * lk);
  float m = -INFINITY, l = 0.0f;

  for (int64_t c0 = 0; c0 < key_end; c0 += BK) {
    threadgroup_barrier(mem_flags::mem_threadgroup);  // every simdgroup is done with the last k and v
    attn_stage<T, DT>(k_tile, kh, c0, lk, BK, d, 1.0f, tid, THREADS);
    attn_stage<T, DT>(v_tile, vh, c0, lk, BK, d, 1.0f, tid, THREADS);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (c0 >= sg_key_end) continue;  // all masked for this simdgroup (uniform within it)

    attn_product_abt<NB, DT>(s_tile, BK, q_tile + 8 * sg * DT, k_tile, nt);
    simdgroup_barrier(mem_flags::mem_threadgroup);
    float s[CPL];
    float tile_max = -INFINITY;
    for (uint j = 0; j < CPL; ++j) {
      const float x = s_tile[row * BK + col + j];
      s[j] = row_valid ? attn_score(x, grow, c0 + col + j, b, h, mask, p) : -INFINITY;
      tile_max = nan_max(tile_max, s[j]);
    }
    lane_max[lane] = tile_max;
    simdgroup_barrier(mem_flags::mem_threadgroup);
    tile_max = nan_max(nan_max(lane_max[4 * row], lane_max[4 * row + 1]), nan_max(lane_max[4 * row + 2], lane_max[4 * row + 3]));
    // Online softmax: rescale what the row accumulated so far to its new running max. A row with
    // nothing visible yet keeps max -inf and shifts by 0, so its P is 0, not NaN; a NaN score makes
    // the max NaN (nan_max: MSL's max would skip it), and so the row.
    const float m_new = nan_max(m, tile_max);
    const float shift = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp(m - shift);
    m = m_new;
    float sum = 0.0f;
    for (uint j = 0; j < CPL; ++j) {
      s[j] = exp(s[j] - shift);
      sum += s[j];
    }
    l = l * alpha + sum;
    if (p.drop_threshold != 0 && row_valid) {
      float z[CPL];
      attn_dropout_scales<CPL>(z, drop_row + uint64_t(c0 + col), p);
      for (uint j = 0; j < CPL; ++j) s[j] *= z[j];
    }
    // The product takes a NaN probability or factor (a NaN or infinite q or mask) as 0, so that it
    // cannot reach the other rows through the matrices; l keeps it, which makes the row NaN below.
    for (uint j = 0; j < CPL; ++j) s_tile[row * BK + col + j] = isnan(s[j]) ? 0.0f : s[j];
    if (lane % 4 == 0) diag[row * 9] = isnan(alpha) ? 0.0f : alpha;
    simdgroup_barrier(mem_flags::mem_threadgroup);

    // o = diag(alpha) o + P v
    attn_scale_rows<DT>(o, diag, nt);
    attn_product_ab<NB, DT>(o, s_tile, BK, v_tile, nt);
  }

  simdgroup_barrier(mem_flags::mem_threadgroup);  // every lane has read the scratch
  float row_sum = l + simd_shuffle_xor(l, ushort(1));
  row_sum += simd_shuffle_xor(row_sum, ushort(2));
  if (lane % 4 == 0) {
    diag[row * 9] = row_sum > 0.0f ? 1.0f / row_sum : (isnan(row_sum) ? row_sum : 0.0f);  // 0: all masked
    if (row_valid) lse[head * lq + grow] = row_sum > 0.0f ? m + log(row_sum) : -INFINITY;
  }
  simdgroup_barrier(mem_flags::mem_threadgroup);
  const uint valid = attn_rows_before(lq, sg_row0);
  attn_write_rows<T, NB, DT, true>(o, s_tile, out + (head * lq + sg_row0) * d, valid, d, nt, 1.0f, diag, lane);
}

// ---- backward --------------------------------------------------------------------------------

// A simdgroup takes 32 rows, 32 columns at a time: its lanes load each row's columns together
// (adjacent addresses; a thread walking its own row alone would have the lanes read a row apart),
// then every lane sums its own row in column order, so D_i has the bits of a plain loop, which the
// dP - D_i of the dQ and dK/dV kernels cancels against. Threadgroup memory: per simdgroup, O and dO
// tiles of 32 x ORCHARD_ATTENTION_DELTA_STRIDE.
template <typename T>
[[kernel]] void attention_delta(device const T* out [[buffer(0)]], device const T* dout [[buffer(1)]],
                                device float* delta [[buffer(2)]], constant AttentionRowsParams& p [[buffer(3)]],
                                threadgroup T* tiles [[threadgroup(0)]],
                                uint group [[threadgroup_position_in_grid]],
                                uint sg [[simdgroup_index_in_threadgroup]],
                                uint simdgroups [[simdgroups_per_threadgroup]],
                                uint lane [[thread_index_in_simdgroup]]) {
  const uint stride = ORCHARD_ATTENTION_DELTA_STRIDE;
  threadgroup T* o_tile = tiles + sg * 2 * 32 * stride;
  threadgroup T* do_tile = o_tile + 32 * stride;
  const int64_t row0 = (int64_t(group) * simdgroups + sg) * 32;
  float acc = 0.0f;
  for (uint d0 = 0; d0 < p.head_dim; d0 += 32) {
    const uint d = d0 + lane;
    for (uint r = 0; r < 32; ++r) {
      const int64_t row = row0 + r;
      const bool inside = row < p.rows && d < p.head_dim;
      o_tile[r * stride + lane] = inside ? out[row * p.head_dim + d] : T(0);
      do_tile[r * stride + lane] = inside ? dout[row * p.head_dim + d] : T(0);
    }
    simdgroup_barrier(mem_flags::mem_threadgroup);
    const uint columns = min(32u, p.head_dim - d0);
    for (uint c = 0; c < columns; ++c) acc += float(do_tile[lane * stride + c]) * float(o_tile[lane * stride + c]);
    simdgroup_barrier(mem_flags::mem_threadgroup);
  }
  if (row0 + lane < p.rows) delta[row0 + lane] = acc;
}

// Threadgroup memory: q (times scale) and dO [8 NSG, DT]; k and v [BK, DT] (one buffer when SHARED:
// v first, then k); per simdgroup two 8 x BK tiles (scores then dS, and dP).
template <typename T, uint DT, uint NSG, uint BK, bool SHARED>
[[kernel]] void attention_dq(device const T* q [[buffer(0)]], device const T* k [[buffer(1)]],
                             device const T* v [[buffer(2)]], device const float* mask [[buffer(3)]],
                             device const T* dout [[buffer(4)]], device const float* lse [[buffer(5)]],
                             device const float* delta [[buffer(6)]], device T* dq [[buffer(7)]],
                             constant AttentionKernelParams& p [[buffer(8)]],
                             threadgroup float* q_tile [[threadgroup(0)]],
                             threadgroup float* do_tile [[threadgroup(1)]],
                             threadgroup float* kv_tile [[threadgroup(2)]],
                             threadgroup float* scratch [[threadgroup(3)]],
                             uint3 group [[threadgroup_position_in_grid]],
                             uint tid [[thread_index_in_threadgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]],
                             uint lane [[thread_index_in_simdgroup]]) {
  const uint BQ = 8 * NSG, NB = BK / 8, CPL = BK / 4, THREADS = 32 * NSG;
  const uint h = group.y, b = group.z, d = p.head_dim, nt = (d + 7) / 8;
  const int64_t lq = p.lq, lk = p.lk;
  const int64_t r0 = int64_t(p.blocks - 1 - group.x) * BQ;
  const int64_t head = int64_t(b) * p.heads_q + h, kv_head = int64_t(b) * p.heads_kv + h / p.group;
  device const T* kh = k + kv_head * lk * d;
  device const T* vh = v + kv_head * lk * d;
  threadgroup float* k_tile = kv_tile;
  threadgroup float* v_tile = SHARED ? kv_tile : kv_tile + BK * DT;
  attn_stage<T, DT>(q_tile, q + head * lq * d, r0, lq, BQ, d, p.scale, tid, THREADS);
  attn_stage<T, DT>(do_tile, dout + head * lq * d, r0, lq, BQ, d, 1.0f, tid, THREADS);

  threadgroup float* s_tile = scratch + sg * (16 * BK);
  threadgroup float* dp_tile = s_tile + 8 * BK;
  simdgroup_float8x8 acc[DT / 8];
  for (uint t = 0; t < DT / 8; ++t) acc[t] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

  // Lane l: row l / 4, columns (l % 4) CPL .. + CPL of each tile (consecutive Philox numbers).
  const uint row = lane / 4, col = (lane % 4) * CPL;
  const int64_t sg_row0 = r0 + 8 * sg, grow = sg_row0 + row;
  const bool row_valid = grow < lq;
  const float row_lse = row_valid ? attn_backward_lse(lse, head * lq + grow) : INFINITY;
  const float row_delta = row_valid ? delta[head * lq + grow] : 0.0f;
  const int64_t key_end = p.causal ? attn_min(lk, r0 + BQ) : lk;
  const int64_t sg_key_end = p.causal ? attn_min(lk, sg_row0 + 8) : lk;
  const uint64_t drop_row = p.offset + uint64_t(((int64_t(b) * p.heads_q + h) * lq + grow) * lk);

  for (int64_t c0 = 0; c0 < key_end; c0 += BK) {
    const bool active = c0 < sg_key_end;  // uniform within the simdgroup
    threadgroup_barrier(mem_flags::mem_threadgroup);
    attn_stage<T, DT>(v_tile, vh, c0, lk, BK, d, 1.0f, tid, THREADS);
    if (!SHARED) attn_stage<T, DT>(k_tile, kh, c0, lk, BK, d, 1.0f, tid, THREADS);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (active) attn_product_abt<NB, DT>(dp_tile, BK, do_tile + 8 * sg * DT, v_tile, nt);  // dP = dO v^T
    if (SHARED) {
      threadgroup_barrier(mem_flags::mem_threadgroup);
      attn_stage<T, DT>(k_tile, kh, c0, lk, BK, d, 1.0f, tid, THREADS);
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (!active) continue;
    attn_product_abt<NB, DT>(s_tile, BK, q_tile + 8 * sg * DT, k_tile, nt);  // S = scale q k^T
    simdgroup_barrier(mem_flags::mem_threadgroup);
    // dS = P * (dP * Z - D_i) with P = exp(S - lse) before dropout and Z the dropout scales.
    float z[CPL];
    for (uint j = 0; j < CPL; ++j) z[j] = 1.0f;
    if (p.drop_threshold != 0 && row_valid) attn_dropout_scales<CPL>(z, drop_row + uint64_t(c0 + col), p);
    for (uint j = 0; j < CPL; ++j) {
      const uint e = row * BK + col + j;
      const float x = row_valid ? attn_score(s_tile[e], grow, c0 + col + j, b, h, mask, p) : -INFINITY;
      const float pr = exp(x - row_lse);
      s_tile[e] = pr * (dp_tile[e] * z[j] - row_delta);
    }
    simdgroup_barrier(mem_flags::mem_threadgroup);
    attn_product_ab<NB, DT>(acc, s_tile, BK, k_tile, nt);  // dQ += dS k (times scale at the end)
  }

  simdgroup_barrier(mem_flags::mem_threadgroup);
  const uint valid = attn_rows_before(lq, sg_row0);
  attn_write_rows<T, NB, DT, false>(acc, s_tile, dq + (head * lq + sg_row0) * d, valid, d, nt, p.scale, s_tile, lane);
}

// Threadgroup memory: k and v [8 NSG, DT] (one buffer when SHARED, restaged per query block: k
// then v); q (times scale) and dO [BQ, DT]; per simdgroup two 8 x BQ tiles (P^T then Pd^T, and dP^T
// then dS^T); then the query block's lse and D_i [BQ] each.
template <typename T, uint DT, uint NSG, uint BQ, bool SHARED>
[[kernel]] void attention_dkv(device const T* q [[buffer(0)]], device const T* k [[buffer(1)]],
                              device const T* v [[buffer(2)]], device const float* mask [[buffer(3)]],
                              device const T* dout [[buffer(4)]], device const float* lse [[buffer(5)]],
                              device const float* delta [[buffer(6)]], device T* dk [[buffer(7)]],
                              device T* dv [[buffer(8)]], constant AttentionKernelParams& p [[buffer(9)]],
                              threadgroup float* kv_tile [[threadgroup(0)]],
                              threadgroup float* q_tile [[threadgroup(1)]],
                              threadgroup float* do_tile [[threadgroup(2)]],
                              threadgroup float* scratch [[threadgroup(3)]],
                              uint3 group [[threadgroup_position_in_grid]],
                              uint tid [[thread_index_in_threadgroup]],
                              uint sg [[simdgroup_index_in_threadgroup]],
                              uint lane [[thread_index_in_simdgroup]]) {
  const uint BK = 8 * NSG, NB = BQ / 8, KPL = BQ / 4, THREADS = 32 * NSG;
  const uint kv_h = group.y, b = group.z, d = p.head_dim, nt = (d + 7) / 8;
  const int64_t lq = p.lq, lk = p.lk;
  const int64_t c0 = int64_t(group.x) * BK, sg_key0 = c0 + 8 * sg;
  const int64_t kv_head = int64_t(b) * p.heads_kv + kv_h;
  device const T* kh = k + kv_head * lk * d;
  device const T* vh = v + kv_head * lk * d;
  threadgroup float* k_tile = kv_tile;
  threadgroup float* v_tile = SHARED ? kv_tile : kv_tile + BK * DT;
  if (!SHARED) {
    attn_stage<T, DT>(k_tile, kh, c0, lk, BK, d, 1.0f, tid, THREADS);
    attn_stage<T, DT>(v_tile, vh, c0, lk, BK, d, 1.0f, tid, THREADS);
  }
  threadgroup float* pt_tile = scratch + sg * (16 * BQ);
  threadgroup float* dpt_tile = pt_tile + 8 * BQ;
  threadgroup float* lse_tile = scratch + NSG * 16 * BQ;
  threadgroup float* delta_tile = lse_tile + BQ;
  simdgroup_float8x8 dk_acc[DT / 8], dv_acc[DT / 8];
  for (uint t = 0; t < DT / 8; ++t) {
    dk_acc[t] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    dv_acc[t] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
  }

  // Lane l: query column l % BQ and the KPL consecutive keys from (l / BQ) KPL of the simdgroup's 8
  // (consecutive Philox numbers).
  const uint qcol = lane % BQ, key = (lane / BQ) * KPL;
  const int64_t gkey = sg_key0 + key;
  const bool sg_has_keys = sg_key0 < lk;

  for (uint hh = 0; hh < p.group; ++hh) {
    const uint h = kv_h * p.group + hh;
    const int64_t head = int64_t(b) * p.heads_q + h;
    for (int64_t r0 = p.causal ? c0 : 0; r0 < lq; r0 += BQ) {  // causal: rows before c0 see none of these keys
      threadgroup_barrier(mem_flags::mem_threadgroup);
      attn_stage<T, DT>(q_tile, q + head * lq * d, r0, lq, BQ, d, p.scale, tid, THREADS);
      attn_stage<T, DT>(do_tile, dout + head * lq * d, r0, lq, BQ, d, 1.0f, tid, THREADS);
      for (uint i = tid; i < BQ; i += THREADS) {
        const int64_t r = r0 + i;
        lse_tile[i] = r < lq ? attn_backward_lse(lse, head * lq + r) : INFINITY;
        delta_tile[i] = r < lq ? delta[head * lq + r] : 0.0f;
      }
      if (SHARED) attn_stage<T, DT>(k_tile, kh, c0, lk, BK, d, 1.0f, tid, THREADS);
      threadgroup_barrier(mem_flags::mem_threadgroup);
      // Whether any query of the block sees any of the simdgroup's keys (uniform within it).
      const bool active = sg_has_keys && (!p.causal || r0 + BQ - 1 >= sg_key0);
      if (active) attn_product_abt<NB, DT>(pt_tile, BQ, k_tile + 8 * sg * DT, q_tile, nt);  // S^T = k (scale q)^T
      if (SHARED) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
        attn_stage<T, DT>(v_tile, vh, c0, lk, BK, d, 1.0f, tid, THREADS);
        threadgroup_barrier(mem_flags::mem_threadgroup);
      }
      if (!active) continue;
      attn_product_abt<NB, DT>(dpt_tile, BQ, v_tile + 8 * sg * DT, do_tile, nt);  // dP^T = v dO^T
      simdgroup_barrier(mem_flags::mem_threadgroup);
      const int64_t qrow = r0 + qcol;
      const bool q_valid = qrow < lq;
      float z[KPL];
      for (uint j = 0; j < KPL; ++j) z[j] = 1.0f;
      if (p.drop_threshold != 0 && q_valid && gkey < lk)
        attn_dropout_scales<KPL>(z, p.offset + uint64_t((head * lq + qrow) * lk + gkey), p);
      const float row_lse = lse_tile[qcol], row_delta = delta_tile[qcol];
      for (uint j = 0; j < KPL; ++j) {
        const uint e = (key + j) * BQ + qcol;
        const float x = q_valid ? attn_score(pt_tile[e], qrow, gkey + j, b, h, mask, p) : -INFINITY;
        const float pr = exp(x - row_lse);
        pt_tile[e] = pr * z[j];                                   // Pd^T
        dpt_tile[e] = pr * (dpt_tile[e] * z[j] - row_delta);      // dS^T
      }
      simdgroup_barrier(mem_flags::mem_threadgroup);
      attn_product_ab<NB, DT>(dv_acc, pt_tile, BQ, do_tile, nt);   // dV += Pd^T dO
      attn_product_ab<NB, DT>(dk_acc, dpt_tile, BQ, q_tile, nt);   // dK += dS^T (scale q)
    }
  }

  simdgroup_barrier(mem_flags::mem_threadgroup);
  const uint valid = attn_rows_before(lk, sg_key0);
  attn_write_rows<T, NB, DT, false>(dk_acc, pt_tile, dk + (kv_head * lk + sg_key0) * d, valid, d, nt, 1.0f, pt_tile,
                                    lane);
  attn_write_rows<T, NB, DT, false>(dv_acc, pt_tile, dv + (kv_head * lk + sg_key0) * d, valid, d, nt, 1.0f, pt_tile,
                                    lane);
}

// ---- instantiations --------------------------------------------------------------------------

#define ORCHARD_ATTENTION(name, T, DT, FS, FB, QS, QB, KS, KB, SH)                                  \
  ORCHARD_KERNEL("attention_forward_" #name "_d" #DT, attention_forward, T, DT, FS, FB)            \
  ORCHARD_KERNEL("attention_dq_" #name "_d" #DT, attention_dq, T, DT, QS, QB, SH)                  \
  ORCHARD_KERNEL("attention_dkv_" #name "_d" #DT, attention_dkv, T, DT, KS, KB, SH)
#define ORCHARD_ATTENTION_TIER(DT, FS, FB, QS, QB, KS, KB, SH)   \
  ORCHARD_ATTENTION(float16, half, DT, FS, FB, QS, QB, KS, KB, SH) \
  ORCHARD_ATTENTION(bfloat16, bfloat, DT, FS, FB, QS, QB, KS, KB, SH) \
  ORCHARD_ATTENTION(float32, float, DT, FS, FB, QS, QB, KS, KB, SH)
ORCHARD_ATTENTION_TIERS(ORCHARD_ATTENTION_TIER)

#define ORCHARD_ATTENTION_DELTA(name, T) ORCHARD_KERNEL("attention_delta_" #name, attention_delta, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_ATTENTION_DELTA)
