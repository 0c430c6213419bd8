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

// plan_<name> for every primitive of ORCHARD_RUNTIME_PRIMITIVES (runtime.h), in the plan file of its
// family: plan_random.cpp (random, dropout), plan_reduce.cpp (reduce, softmax), plan_matmul.cpp,
// plan_index.cpp (index_select, gather, scatter_add), plan_training.cpp (layer norm, cross-entropy,
// AdamW), plan_attention.cpp, plan_sort.cpp, plan_scan.cpp.
#define ORCHARD_PLAN(name, Args) Launches plan_##name(const Args& args);
ORCHARD_RUNTIME_PRIMITIVES(ORCHARD_PLAN)
#undef ORCHARD_PLAN

// plan_random.cpp
void random_kernel_names(std::vector<std::string>& names);

// plan_reduce.cpp
void reduce_kernel_names(std::vector<std::string>& names);

// plan_matmul.cpp
void matmul_kernel_names(std::vector<std::string>& names);
// out += a @ b (Runtime::matmul_accumulate), the product's launch adding out's values in float.
Launches plan_matmul_accumulate(const MatmulArgs& args);
// The kernel of a float product (a MatmulParams launch: out, a, b, params), which backends with a
// native matmul (cuBLAS) replace by name.
std::string matmul_tiled_kernel(DType t);

// plan_index.cpp
void index_kernel_names(std::vector<std::string>& names);

// plan_training.cpp
void training_kernel_names(std::vector<std::string>& names);

// plan_sort.cpp (sort), plan_scan.cpp (cumsum)
void sort_kernel_names(std::vector<std::string>& names);
void scan_kernel_names(std::vector<std::string>& names);

// plan_attention.cpp
void attention_kernel_names(std::vector<std::string>& names);
// The forward, dQ and dK/dV kernels of dtype t for the head-dim tier dt (attention_params.h), which
// backends with a native attention (CUDA's tensor cores) replace by name.
std::string attention_forward_kernel(DType t, uint32_t dt);
std::string attention_dq_kernel(DType t, uint32_t dt);
std::string attention_dkv_kernel(DType t, uint32_t dt);

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
