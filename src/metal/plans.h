// The plans: each turns one Runtime primitive on Metal tensors into the launches that carry it out
// (kernel, grid, threadgroup size, constants, threadgroup memory). Portable C++, shared by the GPU
// backend and the emulator. Operands are already validated by src/core.
#pragma once

#include <string>
#include <vector>

#include "dispatch.h"
#include "runtime.h"

namespace orchard::metal {

using Launches = std::vector<Dispatch>;

// plan_elementwise.cpp
Launches plan_copy(const ElementwiseLoop& loop);
Launches plan_fill(const ElementwiseLoop& loop, Scalar value);
Launches plan_unary(UnaryOp op, const ElementwiseLoop& loop);
Launches plan_binary(BinaryOp op, const ElementwiseLoop& loop);
Launches plan_where(const ElementwiseLoop& loop);
void elementwise_kernel_names(std::vector<std::string>& names);

// plan_random.cpp
Launches plan_random(const Tensor& out, bool normal, uint64_t seed, uint64_t offset);
Launches plan_dropout(const Tensor& in, const Tensor& out, double p, uint64_t seed, uint64_t offset);
void random_kernel_names(std::vector<std::string>& names);

// plan_reduce.cpp
Launches plan_reduce(ReduceOp op, const Tensor& in, const Tensor& out, int64_t outer, int64_t reduced, int64_t inner,
                     int64_t correction);
Launches plan_softmax(const Tensor& in, const Tensor& out, bool log);
void reduce_kernel_names(std::vector<std::string>& names);

// plan_matmul.cpp
Launches plan_matmul(const Tensor& a, const Tensor& b, const Tensor& out);
void matmul_kernel_names(std::vector<std::string>& names);

// plan_index.cpp
Launches plan_index_select(const Tensor& src, const Tensor& index, const Tensor& out, int64_t outer, int64_t inner);
Launches plan_gather(const Tensor& src, const Tensor& index, const Tensor& out, int64_t dim);
Launches plan_scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t dim);
void index_kernel_names(std::vector<std::string>& names);

// plan_training.cpp
Launches plan_layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y,
                                 const Tensor& mean, const Tensor& rstd);
Launches plan_layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                  const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias);
Launches plan_cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                    const Tensor& losses, const Tensor& lse);
Launches plan_cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                     const Tensor& grad_losses, int64_t ignore_index, const Tensor& dlogits);
Launches plan_adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                         const AdamWParams& p);
void training_kernel_names(std::vector<std::string>& names);

// plan_attention.cpp
Launches plan_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                                const Tensor& out, const Tensor& lse);
Launches plan_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                 const Tensor& lse, const Tensor& dout, const AttentionParams& p, const Tensor& dq,
                                 const Tensor& dk, const Tensor& dv);
void attention_kernel_names(std::vector<std::string>& names);

// Every kernel name a plan can request (the test checks each exists in the kernel library).
std::vector<std::string> planned_kernel_names();

// The float dtypes the kernels are instantiated for (Metal has no float64).
inline constexpr DType kFloatDTypes[] = {DType::Float16, DType::BFloat16, DType::Float32};
inline void check_float_dtype(DType t, const char* op) {
  ORCHARD_CHECK(t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32, RuntimeError, "metal: no ", op,
                " kernel for ", dtype_name(t));
}

// Threadgroups needed to cover n items with `per_group` items each.
inline uint32_t groups_for(int64_t n, int64_t per_group) { return uint32_t((n + per_group - 1) / per_group); }

}  // namespace orchard::metal
