// Fused training kernels: layer norm (forward, dx, and the weight/bias gradients as column sums),
// cross-entropy (log-softmax + NLL forward, softmax - onehot backward), the AdamW step and loss
// scaling's unscale with its inf check. They compute exactly what src/cpu/training.cpp computes, in
// float for every float dtype, with float32 statistics (mean, rstd, log-sum-exp) and moments.
//
// Row kernels give each row to a team of `threads_per_row` threads (whole simdgroups; several teams
// per threadgroup when rows are short). A team reduces with simd_sum/simd_max, then across its
// simdgroups through threadgroup memory (one float per simdgroup of the threadgroup). Teams whose
// row lies past the end still reach every barrier: they just have nothing to load.
#include "common.h"
#include "training_params.h"

// ---- team reductions -------------------------------------------------------------------------

// The sum over the `simds` simdgroups starting at `first` (one team) of every lane's `v`; every
// thread of the team gets the same value (the partials are added in one order by all).
// `simds` is the same for every team of the threadgroup, so the early return is uniform.
inline float training_team_sum(float v, threadgroup float* shared, uint simd_group, uint simd_lane, uint first,
                               uint simds) {
  v = simd_sum(v);
  if (simds == 1) return v;
  if (simd_lane == 0) shared[simd_group] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float total = 0.0f;
  for (uint s = 0; s < simds; ++s) total += shared[first + s];
  threadgroup_barrier(mem_flags::mem_threadgroup);  // `shared` is reused by the next reduction
  return total;
}

// As training_team_sum, for the maximum; NaN when any lane's `v` is (common.h).
inline float training_team_max(float v, threadgroup float* shared, uint simd_group, uint simd_lane, uint first,
                               uint simds) {
  v = simd_nan_max(v);
  if (simds == 1) return v;
  if (simd_lane == 0) shared[simd_group] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float total = -INFINITY;
  for (uint s = 0; s < simds; ++s) total = nan_max(total, shared[first + s]);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return total;
}

// ---- layer norm ------------------------------------------------------------------------------

// y = (x - mean) * rstd * weight + bias over rows of n; mean and rstd (float32) saved per row.
// Two passes for the statistics (mean, then the squared deviations), as the CPU kernel.
template <typename T>
[[kernel]] void layer_norm_forward(device const T* x [[buffer(0)]], device const T* weight [[buffer(1)]],
                                   device const T* bias [[buffer(2)]], device T* y [[buffer(3)]],
                                   device float* mean [[buffer(4)]], device float* rstd [[buffer(5)]],
                                   constant TrainingRowParams& p [[buffer(6)]],
                                   threadgroup float* shared [[threadgroup(0)]],
                                   uint group [[threadgroup_position_in_grid]],
                                   uint threads [[threads_per_threadgroup]],
                                   uint tid [[thread_index_in_threadgroup]],
                                   uint simd_group [[simdgroup_index_in_threadgroup]],
                                   uint simd_lane [[thread_index_in_simdgroup]]) {
  const uint width = p.threads_per_row, lane = tid % width, team = tid / width, simds = width / 32;
  const int64_t row = int64_t(group) * (threads / width) + team;
  const bool active = row < p.rows;
  const int64_t n = active ? p.n : 0;  // inactive teams join the reductions with nothing
  device const T* xr = x + (active ? row : 0) * p.n;
  device T* yr = y + (active ? row : 0) * p.n;

  float sum = 0.0f;
  for (int64_t i = lane; i < n; i += width) sum += float(xr[i]);
  const float mu = training_team_sum(sum, shared, simd_group, simd_lane, team * simds, simds) / float(p.n);
  float sq = 0.0f;
  for (int64_t i = lane; i < n; i += width) {
    const float d = float(xr[i]) - mu;
    sq += d * d;
  }
  const float var = training_team_sum(sq, shared, simd_group, simd_lane, team * simds, simds) / float(p.n);
  const float inv = 1.0f / sqrt(var + p.eps);
  for (int64_t i = lane; i < n; i += width) yr[i] = T((float(xr[i]) - mu) * inv * float(weight[i]) + float(bias[i]));
  if (active && lane == 0) {
    mean[row] = mu;
    rstd[row] = inv;
  }
}

// dx = rstd * (dy * w - mean(dy * w) - xhat * mean(dy * w * xhat)) per row, xhat = (x - mean) * rstd.
template <typename T>
[[kernel]] void layer_norm_backward(device const T* dy [[buffer(0)]], device const T* x [[buffer(1)]],
                                    device const T* weight [[buffer(2)]], device const float* mean [[buffer(3)]],
                                    device const float* rstd [[buffer(4)]], device T* dx [[buffer(5)]],
                                    constant TrainingRowParams& p [[buffer(6)]],
                                    threadgroup float* shared [[threadgroup(0)]],
                                    uint group [[threadgroup_position_in_grid]],
                                    uint threads [[threads_per_threadgroup]],
                                    uint tid [[thread_index_in_threadgroup]],
                                    uint simd_group [[simdgroup_index_in_threadgroup]],
                                    uint simd_lane [[thread_index_in_simdgroup]]) {
  const uint width = p.threads_per_row, lane = tid % width, team = tid / width, simds = width / 32;
  const int64_t row = int64_t(group) * (threads / width) + team;
  const bool active = row < p.rows;
  const int64_t n = active ? p.n : 0;
  const int64_t base = (active ? row : 0) * p.n;
  device const T* xr = x + base;
  device const T* gr = dy + base;
  device T* out = dx + base;
  const float mu = active ? mean[row] : 0.0f, inv = active ? rstd[row] : 0.0f;

  float sum_gw = 0.0f, sum_gw_xhat = 0.0f;
  for (int64_t i = lane; i < n; i += width) {
    const float xhat = (float(xr[i]) - mu) * inv, gw = float(gr[i]) * float(weight[i]);
    sum_gw += gw;
    sum_gw_xhat += gw * xhat;
  }
  const float a = training_team_sum(sum_gw, shared, simd_group, simd_lane, team * simds, simds) / float(p.n);
  const float b = training_team_sum(sum_gw_xhat, shared, simd_group, simd_lane, team * simds, simds) / float(p.n);
  for (int64_t i = lane; i < n; i += width) {
    const float xhat = (float(xr[i]) - mu) * inv;
    out[i] = T(inv * (float(gr[i]) * float(weight[i]) - a - xhat * b));
  }
}

// The weight and bias gradients are column sums over rows of dy * xhat and dy. Thread (column c,
// block b) sums the rows of its block in order and writes dweight[b * n + c], dbias[b * n + c]:
// float32 partials (Partial, added up by layer_norm_column_reduce) or, with a single block, the
// gradients themselves in T. No atomics: every output has one writer. (Partial is a template
// parameter rather than the output type so that float32's two variants are distinct instances.)
template <typename T, bool Partial> struct LayerNormColumnOut { typedef T type; };
template <typename T> struct LayerNormColumnOut<T, true> { typedef float type; };

template <typename T, bool Partial>
[[kernel]] void layer_norm_column_sums(device const T* dy [[buffer(0)]], device const T* x [[buffer(1)]],
                                       device const float* mean [[buffer(2)]], device const float* rstd [[buffer(3)]],
                                       device typename LayerNormColumnOut<T, Partial>::type* dweight [[buffer(4)]],
                                       device typename LayerNormColumnOut<T, Partial>::type* dbias [[buffer(5)]],
                                       constant LayerNormColumnParams& p [[buffer(6)]],
                                       uint2 pos [[thread_position_in_grid]]) {
  typedef typename LayerNormColumnOut<T, Partial>::type Out;
  const int64_t c = pos.x, b = pos.y;
  if (c >= p.n || b >= p.blocks) return;
  const int64_t r0 = b * p.rows_per_block, r1 = r0 + p.rows_per_block < p.rows ? r0 + p.rows_per_block : p.rows;
  float w = 0.0f, s = 0.0f;
  for (int64_t r = r0; r < r1; ++r) {
    const float g = float(dy[r * p.n + c]);
    w += g * ((float(x[r * p.n + c]) - mean[r]) * rstd[r]);
    s += g;
  }
  dweight[b * p.n + c] = Out(w);
  dbias[b * p.n + c] = Out(s);
}

// dweight[c] = sum over blocks of the float32 partials, in block order (so in row order).
template <typename T>
[[kernel]] void layer_norm_column_reduce(device const float* partial_w [[buffer(0)]],
                                         device const float* partial_b [[buffer(1)]], device T* dweight [[buffer(2)]],
                                         device T* dbias [[buffer(3)]], constant LayerNormColumnParams& p [[buffer(4)]],
                                         uint c [[thread_position_in_grid]]) {
  if (c >= p.n) return;
  float w = 0.0f, s = 0.0f;
  for (int64_t b = 0; b < p.blocks; ++b) {
    w += partial_w[b * p.n + c];
    s += partial_b[b * p.n + c];
  }
  dweight[c] = T(w);
  dbias[c] = T(s);
}

#define ORCHARD_LAYER_NORM(name, T)                                                           \
  ORCHARD_KERNEL("layer_norm_forward_" #name, layer_norm_forward, T)                          \
  ORCHARD_KERNEL("layer_norm_backward_" #name, layer_norm_backward, T)                        \
  ORCHARD_KERNEL("layer_norm_column_sums_" #name "_partial", layer_norm_column_sums, T, true) \
  ORCHARD_KERNEL("layer_norm_column_sums_" #name "_final", layer_norm_column_sums, T, false)  \
  ORCHARD_KERNEL("layer_norm_column_reduce_" #name, layer_norm_column_reduce, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_LAYER_NORM)

// ---- cross-entropy ---------------------------------------------------------------------------

// Per row of `n` logits: lse = max + log(sum(exp(x - max))) and loss = lse - x[target] (0 for rows
// whose target is ignore_index), both float32.
template <typename T>
[[kernel]] void cross_entropy_forward(device const T* logits [[buffer(0)]], device const int64_t* targets [[buffer(1)]],
                                      device float* losses [[buffer(2)]], device float* lse [[buffer(3)]],
                                      constant TrainingRowParams& p [[buffer(4)]],
                                      threadgroup float* shared [[threadgroup(0)]],
                                      uint group [[threadgroup_position_in_grid]],
                                      uint threads [[threads_per_threadgroup]],
                                      uint tid [[thread_index_in_threadgroup]],
                                      uint simd_group [[simdgroup_index_in_threadgroup]],
                                      uint simd_lane [[thread_index_in_simdgroup]]) {
  const uint width = p.threads_per_row, lane = tid % width, team = tid / width, simds = width / 32;
  const int64_t row = int64_t(group) * (threads / width) + team;
  const bool active = row < p.rows;
  const int64_t n = active ? p.n : 0;
  device const T* xr = logits + (active ? row : 0) * p.n;

  float mx = -INFINITY;
  for (int64_t i = lane; i < n; i += width) mx = nan_max(mx, float(xr[i]));
  mx = training_team_max(mx, shared, simd_group, simd_lane, team * simds, simds);
  float sum = 0.0f;
  for (int64_t i = lane; i < n; i += width) sum += exp(float(xr[i]) - mx);
  const float l = mx + log(training_team_sum(sum, shared, simd_group, simd_lane, team * simds, simds));
  if (active && lane == 0) {
    const int64_t t = targets[row];
    lse[row] = l;
    losses[row] = t == p.ignore_index ? 0.0f : l - float(xr[t]);
  }
}

// dlogits[r, c] = grad[r] * (exp(x - lse[r]) - (c == target[r])), zero for ignored rows. One thread
// per logit (x: class, y: row). The target's entry is rounded to T before subtracting grad, as on
// the CPU.
template <typename T>
[[kernel]] void cross_entropy_backward(device const T* logits [[buffer(0)]], device const int64_t* targets [[buffer(1)]],
                                       device const float* lse [[buffer(2)]], device const float* grad [[buffer(3)]],
                                       device T* dlogits [[buffer(4)]],
                                       constant CrossEntropyBackwardParams& p [[buffer(5)]],
                                       uint2 pos [[thread_position_in_grid]]) {
  const int64_t c = pos.x, r = pos.y;
  if (c >= p.classes || r >= p.rows) return;
  const int64_t t = targets[r], i = r * p.classes + c;
  if (t == p.ignore_index) {
    dlogits[i] = T(0.0f);
    return;
  }
  const float g = grad[r];
  T d = T(g * exp(float(logits[i]) - lse[r]));
  if (c == t) d = T(float(d) - g);
  dlogits[i] = d;
}

#define ORCHARD_CROSS_ENTROPY(name, T)                                           \
  ORCHARD_KERNEL("cross_entropy_forward_" #name, cross_entropy_forward, T)       \
  ORCHARD_KERNEL("cross_entropy_backward_" #name, cross_entropy_backward, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_CROSS_ENTROPY)

// ---- AdamW -----------------------------------------------------------------------------------

// One in-place AdamW step per element (PyTorch's rule, float32 moments), one thread per element.
template <typename T>
[[kernel]] void adamw_step(device T* param [[buffer(0)]], device const T* grad [[buffer(1)]],
                           device float* exp_avg [[buffer(2)]], device float* exp_avg_sq [[buffer(3)]],
                           constant AdamWStepParams& p [[buffer(4)]], uint i [[thread_position_in_grid]]) {
  if (i >= p.n) return;
  const float g = float(grad[i]);
  const float m = p.beta1 * exp_avg[i] + (1.0f - p.beta1) * g;
  const float v = p.beta2 * exp_avg_sq[i] + (1.0f - p.beta2) * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  const float denom = sqrt(v) * p.inv_sqrt_bc2 + p.eps;
  param[i] = T(float(param[i]) * p.decay - p.step * m / denom);
}

#define ORCHARD_ADAMW(name, T) ORCHARD_KERNEL("adamw_step_" #name, adamw_step, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_ADAMW)

// ---- loss scaling ----------------------------------------------------------------------------

// grad *= inv_scale in place, one thread per element, and found_inf = 1.0f when the element was inf
// or NaN (left alone otherwise). Every launch over every gradient may set the one flag, so it is
// written atomically: as the bits of 1.0f through atomic_uint, which every MSL version has. Threads
// store only on an inf or NaN, which training rarely meets.
template <typename T>
[[kernel]] void amp_unscale(device T* grad [[buffer(0)]], device atomic_uint* found_inf [[buffer(1)]],
                            device const float* inv_scale [[buffer(2)]], constant AmpUnscaleParams& p [[buffer(3)]],
                            uint i [[thread_position_in_grid]]) {
  if (i >= p.n) return;
  const float v = float(grad[i]);
  if (!isfinite(v)) atomic_store_explicit(found_inf, as_type<uint>(1.0f), memory_order_relaxed);
  grad[i] = T(v * inv_scale[0]);
}

#define ORCHARD_AMP_UNSCALE(name, T) ORCHARD_KERNEL("amp_unscale_" #name, amp_unscale, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_AMP_UNSCALE)
