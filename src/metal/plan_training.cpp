// Plans for the fused training kernels (metal/training.metal): layer norm forward and backward,
// cross-entropy forward and backward, the AdamW step and loss scaling's unscale. Operands arrive
// contiguous and validated by src/core/ops_training.cpp; statistics, losses, log-sum-exps and moments
// are float32.
//
// Block sizes
// - Row kernels (layer norm forward and dx, cross-entropy forward) give each row to a team of W
//   threads, W a power of two in [32, 256] chosen so that each thread handles about 8 elements of
//   the row (kElementsPerThread): enough independent loads per thread to hide memory latency, while
//   short rows still spread over a whole simdgroup and long rows over 256 threads. Teams of one
//   simdgroup reduce with simd_sum/simd_max alone; wider teams add their simdgroups' partials
//   through threadgroup memory (one float per simdgroup). A threadgroup packs 256 / W teams (rows),
//   so it always has up to 256 threads: a size at which an Apple GPU core keeps several threadgroups
//   resident, and the emulator's cap (it runs each thread of a cooperative group as an OS thread and
//   wakes all of them at every barrier).
// - Layer-norm weight/bias gradients are column sums over rows, done without atomics in two
//   launches: thread (column c, row block b) sums its block's rows into a float32 partial, then one
//   thread per column adds up the blocks. Blocks are chosen so that the first launch has about 64K
//   threads (enough to fill the largest Apple GPUs), each block at least 32 rows (so the partials are
//   small next to the inputs) and at most 1024 blocks (so the second launch's per-column loop stays
//   short). A single block writes the gradients directly. Since blocks * n < 64K + n, the float32
//   scratch holds under 512 KiB + 8 n bytes.
// - Cross-entropy backward, AdamW and unscale are elementwise: one thread per element, 256 per
//   threadgroup (for cross-entropy a 2-D group of classes x rows, so that short rows still fill it).
// Apple GPUs run 32-wide simdgroups; the plans and kernels assume that width.
#include <algorithm>
#include <cmath>
#include <functional>

#include "launch_split.h"
#include "plans.h"
#include "training_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kSimdWidth = 32;
constexpr uint32_t kMaxThreads = 256;
constexpr int64_t kElementsPerThread = 8;
// Threadgroups of one row launch at most: 2^20 * 256 threads stay well under 2^32.
constexpr int64_t kMaxRowGroups = int64_t(1) << 20;
// Column sums: the target thread count of the partial-sum launch, and the block bounds.
constexpr int64_t kColumnTargetThreads = int64_t(1) << 16;
constexpr int64_t kMinRowsPerBlock = 32;
constexpr int64_t kMaxBlocks = 1024;
// Threadgroups along y of one launch at most (a conservative grid limit).
constexpr int64_t kMaxGroupsY = 65535;

// ---- kernel names: the plans and training_kernel_names build them with these -----------------

std::string kernel_name(const char* op, DType t, const char* variant = nullptr) {
  std::string name = std::string(op) + "_" + dtype_name(t);
  if (variant) name += std::string("_") + variant;
  return name;
}
std::string layer_norm_forward_kernel(DType t) { return kernel_name("layer_norm_forward", t); }
std::string layer_norm_backward_kernel(DType t) { return kernel_name("layer_norm_backward", t); }
std::string layer_norm_column_sums_kernel(DType t, bool partial) {
  return kernel_name("layer_norm_column_sums", t, partial ? "partial" : "final");
}
std::string layer_norm_column_reduce_kernel(DType t) { return kernel_name("layer_norm_column_reduce", t); }
std::string cross_entropy_forward_kernel(DType t) { return kernel_name("cross_entropy_forward", t); }
std::string cross_entropy_backward_kernel(DType t) { return kernel_name("cross_entropy_backward", t); }
std::string adamw_step_kernel(DType t) { return kernel_name("adamw_step", t); }
std::string amp_unscale_kernel(DType t) { return kernel_name("amp_unscale", t); }

// ---- launch helpers --------------------------------------------------------------------------

uint32_t pow2_at_least(int64_t v, uint32_t lo, uint32_t hi) {
  uint32_t p = lo;
  while (p < hi && p < v) p *= 2;
  return p;
}

// Binds tensor t from its element `element` on (element 0 is t's first).
Launch& bind_at(Launch& launch, const Tensor& t, int64_t element) {
  return launch.buffer(t.storage()->data(), size_t(t.offset() + element) * t.itemsize());
}

// Row launches over `rows` rows of `n` (see "Block sizes" above). bind(launch, first_row) binds the
// kernel's buffers for the rows from first_row on; the TrainingRowParams follow them.
Launches row_launches(const std::string& kernel, int64_t rows, int64_t n, TrainingRowParams p,
                      const std::function<void(Launch&, int64_t)>& bind) {
  const uint32_t width = pow2_at_least((n + kElementsPerThread - 1) / kElementsPerThread, kSimdWidth, kMaxThreads);
  const uint32_t teams = uint32_t(std::min<int64_t>(kMaxThreads / width, rows));
  const uint32_t threads = width * teams;
  // One float per simdgroup for the team reductions; Metal wants threadgroup memory in 16-byte units.
  const uint32_t shared_bytes = (threads / kSimdWidth * uint32_t(sizeof(float)) + 15) / 16 * 16;
  const int64_t per_launch = kMaxRowGroups * teams;
  Launches out;
  for (int64_t r0 = 0; r0 < rows; r0 += per_launch) {
    const int64_t count = std::min(per_launch, rows - r0);
    p.rows = count;
    p.n = n;
    p.threads_per_row = width;
    Launch launch(kernel);
    bind(launch, r0);
    launch.constants(p).threadgroup_memory(shared_bytes);
    out.push_back(launch.grid({groups_for(count, teams)}, {threads}));
  }
  return out;
}

}  // namespace

Launches plan_layer_norm_forward(const LayerNormForwardArgs& args) {
  const auto& [x, weight, bias, eps, y, mean, rstd] = args;
  const DType t = x.dtype();
  check_float_dtype(t, "layer_norm");
  const int64_t n = weight.numel(), rows = n ? x.numel() / n : 0;
  if (rows == 0) return {};
  TrainingRowParams p{};
  p.eps = eps;
  return row_launches(layer_norm_forward_kernel(t), rows, n, p, [&](Launch& l, int64_t r0) {
    bind_at(l, x, r0 * n).buffer(weight).buffer(bias);
    bind_at(l, y, r0 * n);
    bind_at(l, mean, r0);
    bind_at(l, rstd, r0);
  });
}

Launches plan_layer_norm_backward(const LayerNormBackwardArgs& args) {
  const auto& [dy, x, weight, mean, rstd, dx, dweight, dbias] = args;
  const DType t = x.dtype();
  check_float_dtype(t, "layer_norm");
  const int64_t n = weight.numel(), rows = n ? x.numel() / n : 0;
  if (rows == 0) return {};
  ORCHARD_CHECK(n < kMaxLaunchThreads, RuntimeError, "metal: layer_norm over ", n,
                " elements per row; the Metal kernels take fewer than 2^31");

  // dx: one team per row.
  Launches out = row_launches(layer_norm_backward_kernel(t), rows, n, TrainingRowParams{},
                              [&](Launch& l, int64_t r0) {
                                bind_at(l, dy, r0 * n);
                                bind_at(l, x, r0 * n).buffer(weight);
                                bind_at(l, mean, r0);
                                bind_at(l, rstd, r0);
                                bind_at(l, dx, r0 * n);
                              });

  // dweight, dbias: column sums over row blocks (see "Block sizes" above).
  int64_t blocks = std::max<int64_t>(1, std::min({(kColumnTargetThreads + n - 1) / n,
                                                  (rows + kMinRowsPerBlock - 1) / kMinRowsPerBlock, kMaxBlocks}));
  const int64_t rows_per_block = (rows + blocks - 1) / blocks;
  blocks = (rows + rows_per_block - 1) / rows_per_block;
  const LayerNormColumnParams cp{rows, n, rows_per_block, blocks};
  // x: columns (adjacent threads read adjacent elements of a row), y: blocks; 256 threads.
  const uint32_t tx = pow2_at_least(n, 1, kMaxThreads);
  const uint32_t ty = pow2_at_least(blocks, 1, kMaxThreads / tx);
  const Size3 sum_groups{groups_for(n, tx), groups_for(blocks, ty), 1}, sum_threads{tx, ty, 1};
  if (blocks == 1) {
    Launch l(layer_norm_column_sums_kernel(t, false));
    l.buffer(dy).buffer(x).buffer(mean).buffer(rstd).buffer(dweight).buffer(dbias).constants(cp);
    out.push_back(l.grid(sum_groups, sum_threads));
    return out;
  }
  // Partials [2, blocks, n]: the weight's, then the bias's.
  Tensor scratch = Tensor::empty({2, blocks, n}, DType::Float32, x.device());  // Metal, or CUDA
  Launch partial(layer_norm_column_sums_kernel(t, true));
  partial.buffer(dy).buffer(x).buffer(mean).buffer(rstd).buffer(scratch);
  bind_at(partial, scratch, blocks * n).constants(cp);
  out.push_back(partial.grid(sum_groups, sum_threads));
  Launch reduce(layer_norm_column_reduce_kernel(t));
  reduce.buffer(scratch);
  bind_at(reduce, scratch, blocks * n).buffer(dweight).buffer(dbias).constants(cp);
  out.push_back(reduce.grid({groups_for(n, kMaxThreads)}, {kMaxThreads}));
  out.back().keep_alive.push_back(scratch);
  return out;
}

Launches plan_cross_entropy_forward(const CrossEntropyForwardArgs& args) {
  const auto& [logits, targets, ignore_index, losses, lse] = args;
  const DType t = logits.dtype();
  check_float_dtype(t, "cross_entropy");
  const int64_t rows = targets.numel(), classes = rows ? logits.numel() / rows : 0;
  if (rows == 0) return {};
  TrainingRowParams p{};
  p.ignore_index = ignore_index;
  return row_launches(cross_entropy_forward_kernel(t), rows, classes, p, [&](Launch& l, int64_t r0) {
    bind_at(l, logits, r0 * classes);
    bind_at(l, targets, r0);
    bind_at(l, losses, r0);
    bind_at(l, lse, r0);
  });
}

Launches plan_cross_entropy_backward(const CrossEntropyBackwardArgs& args) {
  const auto& [logits, targets, lse, grad_losses, ignore_index, dlogits] = args;
  const DType t = logits.dtype();
  check_float_dtype(t, "cross_entropy");
  const int64_t rows = targets.numel(), classes = rows ? logits.numel() / rows : 0;
  if (rows == 0 || classes == 0) return {};
  ORCHARD_CHECK(classes < kMaxLaunchThreads, RuntimeError, "metal: cross_entropy over ", classes,
                " classes; the Metal kernels take fewer than 2^31");
  // x: classes, y: rows, 256 threads: short rows share a threadgroup instead of idling most of it.
  const uint32_t tx = pow2_at_least(classes, 1, kMaxThreads), ty = kMaxThreads / tx;
  const int64_t per_launch = kMaxGroupsY * ty;
  Launches out;
  for (int64_t r0 = 0; r0 < rows; r0 += per_launch) {
    const int64_t count = std::min(per_launch, rows - r0);
    const CrossEntropyBackwardParams p{count, classes, ignore_index};
    Launch l(cross_entropy_backward_kernel(t));
    bind_at(l, logits, r0 * classes);
    bind_at(l, targets, r0);
    bind_at(l, lse, r0);
    bind_at(l, grad_losses, r0);
    bind_at(l, dlogits, r0 * classes).constants(p);
    out.push_back(l.grid({groups_for(classes, tx), groups_for(count, ty), 1}, {tx, ty, 1}));
  }
  return out;
}

Launches plan_adamw_step(const AdamWStepArgs& args) {
  const auto& [param, grad, exp_avg, exp_avg_sq, p] = args;
  const DType t = param.dtype();
  check_float_dtype(t, "adamw_step");
  const int64_t n = param.numel();
  // The constants as src/cpu/training.cpp derives them, in float.
  AdamWStepParams q{};
  q.beta1 = p.beta1;
  q.beta2 = p.beta2;
  q.eps = p.eps;
  q.decay = 1.0f - p.lr * p.weight_decay;
  q.step = p.lr / p.bias_correction1;
  q.inv_sqrt_bc2 = 1.0f / std::sqrt(p.bias_correction2);
  Launches out;
  for (int64_t i0 = 0; i0 < n; i0 += kMaxLaunchThreads) {
    q.n = std::min(kMaxLaunchThreads, n - i0);
    Launch l(adamw_step_kernel(t));
    bind_at(l, param, i0);
    bind_at(l, grad, i0);
    bind_at(l, exp_avg, i0);
    bind_at(l, exp_avg_sq, i0).constants(q);
    out.push_back(l.grid({groups_for(q.n, kMaxThreads)}, {kMaxThreads}));
  }
  return out;
}

Launches plan_amp_unscale(const AmpUnscaleArgs& args) {
  const auto& [grad, found_inf, inv_scale] = args;
  const DType t = grad.dtype();
  check_float_dtype(t, "amp_unscale");
  const int64_t n = grad.numel();
  Launches out;
  for (int64_t i0 = 0; i0 < n; i0 += kMaxLaunchThreads) {
    const AmpUnscaleParams q{std::min(kMaxLaunchThreads, n - i0)};
    Launch l(amp_unscale_kernel(t));
    bind_at(l, grad, i0);
    bind_at(l, found_inf, 0);
    bind_at(l, inv_scale, 0).constants(q);
    out.push_back(l.grid({groups_for(q.n, kMaxThreads)}, {kMaxThreads}));
  }
  return out;
}

void training_kernel_names(std::vector<std::string>& names) {
  for (DType t : kFloatDTypes) {
    names.push_back(layer_norm_forward_kernel(t));
    names.push_back(layer_norm_backward_kernel(t));
    names.push_back(layer_norm_column_sums_kernel(t, true));
    names.push_back(layer_norm_column_sums_kernel(t, false));
    names.push_back(layer_norm_column_reduce_kernel(t));
    names.push_back(cross_entropy_forward_kernel(t));
    names.push_back(cross_entropy_backward_kernel(t));
    names.push_back(adamw_step_kernel(t));
    names.push_back(amp_unscale_kernel(t));
  }
}

}  // namespace orchard::metal
