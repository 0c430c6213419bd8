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
Launches plan_random(const RandomArgs& args);
Launches plan_dropout(const DropoutArgs& args);
void random_kernel_names(std::vector<std::string>& names);

// plan_reduce.cpp
Launches plan_reduce(const ReduceArgs& args);
Launches plan_softmax(const SoftmaxArgs& args);
void reduce_kernel_names(std::vector<std::string>& names);

// plan_matmul.cpp
Launches plan_matmul(const MatmulArgs& args);
void matmul_kernel_names(std::vector<std::string>& names);

// plan_index.cpp
Launches plan_index_select(const IndexSelectArgs& args);
Launches plan_gather(const GatherArgs& args);
Launches plan_scatter_add(const GatherArgs& args);
void index_kernel_names(std::vector<std::string>& names);

// plan_training.cpp
Launches plan_layer_norm_forward(const LayerNormForwardArgs& args);
Launches plan_layer_norm_backward(const LayerNormBackwardArgs& args);
Launches plan_cross_entropy_forward(const CrossEntropyForwardArgs& args);
Launches plan_cross_entropy_backward(const CrossEntropyBackwardArgs& args);
Launches plan_adamw_step(const AdamWStepArgs& args);
void training_kernel_names(std::vector<std::string>& names);

// plan_attention.cpp
Launches plan_attention_forward(const AttentionForwardArgs& args);
Launches plan_attention_backward(const AttentionBackwardArgs& args);
void attention_kernel_names(std::vector<std::string>& names);

// Every kernel name a plan can request (the test checks each exists in the kernel library).
std::vector<std::string> planned_kernel_names();

// The dtypes Metal tensors may have (Metal has no float64), and the float ones among them.
inline constexpr DType kMetalDTypes[] = {DType::Bool,    DType::Int32,    DType::Int64,
                                         DType::Float16, DType::BFloat16, DType::Float32};
inline constexpr DType kFloatDTypes[] = {DType::Float16, DType::BFloat16, DType::Float32};
inline constexpr bool is_metal_dtype(DType t) {
  for (DType m : kMetalDTypes)
    if (m == t) return true;
  return false;
}
inline void check_float_dtype(DType t, const char* op) {
  ORCHARD_CHECK(t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32, RuntimeError, "metal: no ", op,
                " kernel for ", dtype_name(t));
}

// Threadgroups needed to cover n items with `per_group` items each.
inline uint32_t groups_for(int64_t n, int64_t per_group) { return uint32_t((n + per_group - 1) / per_group); }

}  // namespace orchard::metal
