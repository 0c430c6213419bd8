// Plans for FlashAttention forward and backward (kernels in metal/attention.metal, conventions as
// src/cpu/attention.cpp).
//
// Forward: one launch, a threadgroup per (query block, query head, batch). Backward: three
// launches, with no atomics: D_i = rowsum(dO * O) into a float32 scratch, then dQ with a threadgroup
// per query block and dK/dV with a threadgroup per key block, both recomputing P from q, k and lse
// and regenerating the dropout bits. Grouped-query heads are summed inside the dK/dV kernel, which
// loops over the query heads of its kv head.
//
// Block sizes (ORCHARD_ATTENTION_TIERS in metal/attention_params.h, checked against the budget below
// at compile time). A head dim D runs in the smallest tier DT >= D of {32, 64, 96, 128, 192, 256};
// tiles are staged as float rows of DT, and the kernels only multiply the ceil(D / 8) column blocks D
// needs (D = 40 in tier 64 does 5 blocks of 8, not 8), so a tier only sets memory and block shapes,
// and six tiers keep the instantiations few.
//  - Products are 8x8 simdgroup_float8x8 matrices (the Apple GPU families with simdgroup matrices,
//    Apple7+), accumulating in float32 for every input dtype: a simdgroup owns 8 query rows (forward,
//    dQ) or 8 key rows (dK/dV), so a block of 8 NSG rows takes NSG simdgroups (32..128 threads); the
//    other block side (BK keys, or BQ queries for dK/dV) is a multiple of 8 as well.
//  - Threadgroup memory, 32 KiB on every Apple GPU, holds the float tiles: forward q [8 NSG, DT], k
//    and v [BK, DT], and per simdgroup an 8 x BK score tile, an 8 x 8 diagonal and 32 partial maxima;
//    dQ q and dO [8 NSG, DT], k and v [BK, DT], two 8 x BK tiles per simdgroup; dK/dV k and v
//    [8 NSG, DT], q and dO [BQ, DT], two 8 x BQ tiles per simdgroup, lse and D_i [BQ]. The tiers use
//    24.5-29.5 KiB: the tiles that stream (k, v; q, dO for dK/dV) as long as the budget allows.
//  - Registers: the forward keeps its 8 x D output as DT / 8 matrices (2 floats per lane each, so 64
//    at DT = 256), dQ likewise; dK/dV keeps two such sets (128 floats per lane at DT = 256, where the
//    compiler will spill: that tier favours fitting at all).
//  - Per block, the threadgroup meets at two barriers (staging), each simdgroup at two simdgroup
//    barriers (three in the forward: its rows' maxima meet through threadgroup memory rather than
//    four shuffle rounds), and the row sums are added once at the end. With fixed costs per block,
//    long streamed blocks pay off: the barrier count over a whole problem is Lq Lk / BK per thread
//    (forward, dQ; Lq Lk / BQ for dK/dV), whatever NSG. (On the emulator, where each barrier wakes
//    every thread of the group, this count sets the run time.) NSG trades against the streamed block
//    for memory; more simdgroups share each staged k/v tile, so we keep 2-4 where they fit.
//  - The resulting shapes, (NSG, streamed block) for forward / dQ / dK/dV:
//      DT = 32: (4, 64) / (2, 64) / (4, 32); DT = 64: (4, 32) / (2, 32) / (2, 32) -- the widest the
//      budget allows (BQ <= 32: the dK/dV lanes take one query column each);
//      DT = 96: (4, 16) / (2, 16) / (2, 16); DT = 128: (2, 16) / (2, 8) / (2, 8); DT = 192: (2, 8) /
//      (1, 8) / (1, 8) -- the backward holds twice the tiles (q with dO, k with v) of the forward;
//      DT = 256: (1, 8) for all three; even then q, dO, k and v take 4 x 8 KiB, so the backward
//      kernels stage k and v through one buffer in turn (two more barriers per block, and dK/dV
//      restages its own k and v for every query block).
#include <algorithm>

#include "attention_params.h"
#include "philox.h"
#include "plans.h"

namespace orchard::metal {

namespace {

struct Tier {
  uint32_t dt;
  uint32_t fwd_sg, fwd_bk;  // forward: simdgroups (8 query rows each), key block
  uint32_t dq_sg, dq_bk;    // dQ: simdgroups (8 query rows each), key block
  uint32_t dkv_sg, dkv_bq;  // dK/dV: simdgroups (8 key rows each), query block
  bool shared_kv;           // the backward stages k and v through one buffer

  // Threadgroup memory, in floats, of each [[threadgroup(i)]] of the kernels.
  std::vector<uint32_t> forward_memory() const {
    return {8 * fwd_sg * dt, fwd_bk * dt, fwd_bk * dt, fwd_sg * (8 * fwd_bk + 96)};
  }
  std::vector<uint32_t> dq_memory() const {
    return {8 * dq_sg * dt, 8 * dq_sg * dt, (shared_kv ? 1 : 2) * dq_bk * dt, dq_sg * 16 * dq_bk};
  }
  std::vector<uint32_t> dkv_memory() const {
    return {(shared_kv ? 1 : 2) * 8 * dkv_sg * dt, dkv_bq * dt, dkv_bq * dt, dkv_sg * 16 * dkv_bq + 2 * dkv_bq};
  }
};

#define ORCHARD_ATTENTION_TIER_ENTRY(DT, FS, FB, QS, QB, KS, KB, SH) Tier{DT, FS, FB, QS, QB, KS, KB, SH},
constexpr Tier kTiers[] = {ORCHARD_ATTENTION_TIERS(ORCHARD_ATTENTION_TIER_ENTRY)};
#undef ORCHARD_ATTENTION_TIER_ENTRY

constexpr uint32_t kMaxThreadgroupBytes = 32 * 1024;

constexpr bool fits(const Tier& t) {
  const uint32_t fwd = 8 * t.fwd_sg * t.dt + 2 * t.fwd_bk * t.dt + t.fwd_sg * (8 * t.fwd_bk + 96);
  const uint32_t dq = 16 * t.dq_sg * t.dt + (t.shared_kv ? 1 : 2) * t.dq_bk * t.dt + t.dq_sg * 16 * t.dq_bk;
  const uint32_t dkv = (t.shared_kv ? 1 : 2) * 8 * t.dkv_sg * t.dt + 2 * t.dkv_bq * t.dt + t.dkv_sg * 16 * t.dkv_bq +
                       2 * t.dkv_bq;
  const bool shapes = t.dt % 8 == 0 && t.fwd_bk % 8 == 0 && t.dq_bk % 8 == 0 && t.dkv_bq % 8 == 0 && t.dkv_bq <= 32 &&
                      t.fwd_sg * 32 <= 128 && t.dq_sg * 32 <= 128 && t.dkv_sg * 32 <= 128;
  return shapes && 4 * fwd <= kMaxThreadgroupBytes && 4 * dq <= kMaxThreadgroupBytes &&
         4 * dkv <= kMaxThreadgroupBytes;
}
constexpr bool all_fit() {
  for (const Tier& t : kTiers)
    if (!fits(t)) return false;
  return true;
}
static_assert(all_fit(), "an attention tier exceeds 32 KiB of threadgroup memory or its block shapes");
static_assert(kTiers[sizeof(kTiers) / sizeof(kTiers[0]) - 1].dt == kMaxHeadDim, "the last tier must cover kMaxHeadDim");

const Tier& tier_for(int64_t head_dim) {
  for (const Tier& t : kTiers)
    if (head_dim <= int64_t(t.dt)) return t;
  throw RuntimeError("metal: attention head dimension " + std::to_string(head_dim) + " is above kMaxHeadDim");
}

const DType kAttentionDTypes[] = {DType::Float16, DType::BFloat16, DType::Float32};

std::string delta_kernel(DType t) { return std::string("attention_delta_") + dtype_name(t); }

int64_t blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

uint32_t checked_u32(int64_t n, const char* what) {
  ORCHARD_CHECK(n >= 0 && n <= int64_t(UINT32_MAX), RuntimeError, "metal: attention ", what, " ", n,
                " exceeds a launch's 32-bit grid");
  return uint32_t(n);
}

AttentionKernelParams kernel_params(const Tensor& q, const Tensor& k, const AttentionParams& p, int64_t block) {
  AttentionKernelParams a{};
  for (int i = 0; i < 4; ++i) a.mask_strides[i] = p.mask ? p.mask_strides[i] : 0;
  a.seed = p.seed;
  a.offset = p.offset;
  a.lq = q.size(2);
  a.lk = k.size(2);
  a.heads_q = checked_u32(q.size(1), "heads");
  a.heads_kv = checked_u32(k.size(1), "heads");
  a.group = a.heads_q / a.heads_kv;
  a.head_dim = uint32_t(q.size(3));
  a.blocks = block ? checked_u32(blocks(a.lq, block), "query blocks") : 0;
  a.causal = p.causal;
  a.has_mask = p.mask != nullptr;
  // As src/cpu/attention.cpp computes them, so both devices keep the same scores and scale them alike.
  a.drop_threshold = dropout_threshold(p.dropout_p);
  a.keep_scale = 1.0f / (1.0f - p.dropout_p);
  a.scale = p.scale;
  return a;
}

// The float mask, or without one the float32 lse in its place: every [[buffer]] a kernel uses must
// be bound (Metal's API validation rejects a missing one) with an offset aligned for its type, and
// the kernels read the mask only when has_mask is set.
const Tensor& mask_or_lse(const AttentionParams& p, const Tensor& lse) { return p.mask ? *p.mask : lse; }

// Work estimate (Dispatch::work) of a kernel that computes every score of (b, query head, row, key)
// and `products` matrix products over the head dim with each: 2 operations per multiply-add, plus
// a few dozen per score for its mask, exponential and dropout. A causal mask skips about half the
// blocks; counting them all errs on the side of committing sooner.
uint64_t score_work(const Tensor& q, const Tensor& k, uint64_t products) {
  constexpr uint64_t kPerScore = 32;
  const uint64_t scores = uint64_t(q.size(0)) * uint64_t(q.size(1)) * uint64_t(q.size(2)) * uint64_t(k.size(2));
  const uint64_t d8 = (uint64_t(q.size(3)) + 7) / 8 * 8;
  return scores * (2 * products * d8 + kPerScore);
}

Launch& with_memory(Launch& launch, const std::vector<uint32_t>& floats) {
  for (uint32_t n : floats) launch.threadgroup_memory(n * uint32_t(sizeof(float)));
  return launch;
}

}  // namespace

Launches plan_attention_forward(const AttentionForwardArgs& args) {
  const auto& [q, k, v, p, out, lse] = args;
  const int64_t B = q.size(0), Hq = q.size(1), Lq = q.size(2);
  if (B * Hq * Lq == 0) return {};
  const Tier& t = tier_for(q.size(3));
  const int64_t bq = 8 * t.fwd_sg;
  const AttentionKernelParams a = kernel_params(q, k, p, bq);
  Launch launch(attention_forward_kernel(q.dtype(), t.dt));
  launch.buffer(q).buffer(k).buffer(v).buffer(mask_or_lse(p, lse)).buffer(out).buffer(lse).constants(a);
  launch.work(score_work(q, k, 2));  // S = q k^T, O = P v
  with_memory(launch, t.forward_memory());
  return {launch.grid({a.blocks, checked_u32(Hq, "heads"), checked_u32(B, "batch")}, {32 * t.fwd_sg})};
}

Launches plan_attention_backward(const AttentionBackwardArgs& args) {
  const auto& [q, k, v, out, lse, dout, p, dq, dk, dv] = args;
  const int64_t B = q.size(0), Hq = q.size(1), Lq = q.size(2), Hkv = k.size(1), Lk = k.size(2), D = q.size(3);
  const Tier& t = tier_for(D);
  const DType dtype = q.dtype();
  Launches launches;

  // D_i = rowsum(dO * O), float32, one thread per query row: two simdgroups of 32 rows a
  // threadgroup, each with an O and a dO tile (attention.metal).
  const int64_t rows = B * Hq * Lq;
  Tensor delta = Tensor::empty({std::max<int64_t>(rows, 1)}, DType::Float32, q.device());  // Metal, or CUDA
  if (rows > 0) {
    constexpr uint32_t kThreads = 64, kTileBytes = 2 * 32 * ORCHARD_ATTENTION_DELTA_STRIDE;  // times the item size
    const AttentionRowsParams rp{rows, uint32_t(D), 0};
    Launch launch(delta_kernel(dtype));
    launch.buffer(out).buffer(dout).buffer(delta).constants(rp);
    launch.threadgroup_memory(kThreads / 32 * kTileBytes * uint32_t(itemsize(dtype)));
    launches.push_back(launch.grid({groups_for(checked_u32(rows, "rows"), kThreads)}, {kThreads}));

    // dQ: a threadgroup per (query block, query head, batch).
    const AttentionKernelParams a = kernel_params(q, k, p, 8 * t.dq_sg);
    Launch dq_launch(attention_dq_kernel(dtype, t.dt));
    dq_launch.buffer(q).buffer(k).buffer(v).buffer(mask_or_lse(p, lse)).buffer(dout).buffer(lse).buffer(delta)
        .buffer(dq).constants(a);
    dq_launch.work(score_work(q, k, 3));  // S = q k^T, dP = dO v^T, dQ = dS k
    with_memory(dq_launch, t.dq_memory());
    launches.push_back(dq_launch.grid({a.blocks, checked_u32(Hq, "heads"), checked_u32(B, "batch")}, {32 * t.dq_sg}));
  }

  // dK, dV: a threadgroup per (key block, kv head, batch), over the query heads of its group. With
  // no queries (Lq = 0) it writes zeros.
  if (B * Hkv * Lk > 0) {
    const AttentionKernelParams a = kernel_params(q, k, p, 0);
    Launch launch(attention_dkv_kernel(dtype, t.dt));
    launch.buffer(q).buffer(k).buffer(v).buffer(mask_or_lse(p, lse)).buffer(dout).buffer(lse).buffer(delta)
        .buffer(dk).buffer(dv).constants(a);
    launch.work(score_work(q, k, 4));  // S^T, dP^T, dV = P^T dO, dK = dS^T q
    with_memory(launch, t.dkv_memory());
    launches.push_back(launch.grid(
        {checked_u32(blocks(Lk, 8 * t.dkv_sg), "key blocks"), checked_u32(Hkv, "heads"), checked_u32(B, "batch")},
        {32 * t.dkv_sg}));
  }
  // The launches read and write delta after this function returns: they keep it alive.
  for (Dispatch& d : launches) d.keep_alive.push_back(delta);
  return launches;
}

std::string attention_forward_kernel(DType t, uint32_t dt) {
  return std::string("attention_forward_") + dtype_name(t) + "_d" + std::to_string(dt);
}
std::string attention_dq_kernel(DType t, uint32_t dt) {
  return std::string("attention_dq_") + dtype_name(t) + "_d" + std::to_string(dt);
}
std::string attention_dkv_kernel(DType t, uint32_t dt) {
  return std::string("attention_dkv_") + dtype_name(t) + "_d" + std::to_string(dt);
}

void attention_kernel_names(std::vector<std::string>& names) {
  for (DType dtype : kAttentionDTypes) {
    names.push_back(delta_kernel(dtype));
    for (const Tier& t : kTiers) {
      names.push_back(attention_forward_kernel(dtype, t.dt));
      names.push_back(attention_dq_kernel(dtype, t.dt));
      names.push_back(attention_dkv_kernel(dtype, t.dt));
    }
  }
}

}  // namespace orchard::metal
