// Kernels that exercise the emulator itself (tests/cpp/test_metal.cpp): threadgroup memory and
// barriers, simdgroup functions and matrices, and the mistakes it must report instead of hanging.
#include "../../../metal/common.h"

// out[i] = in[n - 1 - i] within a threadgroup of n threads, through threadgroup memory.
template <typename T>
[[kernel]] void check_reverse(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                              threadgroup T* shared [[threadgroup(0)]], uint i [[thread_index_in_threadgroup]],
                              uint n [[threads_per_threadgroup]], uint g [[threadgroup_position_in_grid]]) {
  shared[i] = in[g * n + i];
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[g * n + i] = shared[n - 1 - i];
}
ORCHARD_KERNEL("check_reverse_float32", check_reverse, float)

// Per lane: [sum, max, exclusive prefix sum, value of lane + 1 (shuffle down), lane 3's value].
template <typename T>
[[kernel]] void check_simd(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                           uint i [[thread_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]) {
  const T x = in[i];
  out[5 * i + 0] = simd_sum(x);
  out[5 * i + 1] = simd_max(x);
  out[5 * i + 2] = simd_prefix_exclusive_sum(x);
  out[5 * i + 3] = simd_shuffle_down(x, ushort(1));
  out[5 * i + 4] = simd_broadcast(x, ushort(3));
}
ORCHARD_KERNEL("check_simd_float32", check_simd, float)

// c = a @ b for 8x8 matrices with one simdgroup.
template <typename T>
[[kernel]] void check_simdgroup_matrix(device T* c [[buffer(0)]], device const T* a [[buffer(1)]],
                                       device const T* b [[buffer(2)]], uint lane [[thread_index_in_simdgroup]]) {
  simdgroup_matrix<T, 8, 8> x, y, z;
  simdgroup_load(x, a);
  simdgroup_load(y, b, 8, ulong2(0), true);  // b is given transposed
  simdgroup_multiply(z, x, y);
  simdgroup_store(z, c);
}
ORCHARD_KERNEL("check_simdgroup_matrix_float32", check_simdgroup_matrix, float)

// out = a @ b + c for 8x8 matrices: 16-bit a and b multiplied into a float c (metal/matmul.metal's form).
// out is not c: the emulator's lanes each load and store whole matrices, which would race on one buffer.
template <typename T>
[[kernel]] void check_simdgroup_matrix_mixed(device float* out [[buffer(0)]], device const T* a [[buffer(1)]],
                                             device const T* b [[buffer(2)]], device const float* c [[buffer(3)]],
                                             uint lane [[thread_index_in_simdgroup]]) {
  simdgroup_matrix<T, 8, 8> x, y;
  simdgroup_float8x8 z;
  simdgroup_load(x, a);
  simdgroup_load(y, b);
  simdgroup_load(z, c);
  simdgroup_multiply_accumulate(z, x, y, z);
  simdgroup_store(z, out);
}
ORCHARD_KERNEL("check_simdgroup_matrix_mixed_float16", check_simdgroup_matrix_mixed, half)
ORCHARD_KERNEL("check_simdgroup_matrix_mixed_bfloat16", check_simdgroup_matrix_mixed, bfloat)

// Thread 0 returns before a barrier the others wait at: undefined on a GPU, an error here.
template <typename T>
[[kernel]] void check_early_return(device T* out [[buffer(0)]], uint i [[thread_index_in_threadgroup]]) {
  if (i == 0) return;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[i] = T(1);
}
ORCHARD_KERNEL("check_early_return_float32", check_early_return, float)

// A barrier in a kernel that declares no threadgroup position runs without cooperating threads.
template <typename T>
[[kernel]] void check_undeclared_barrier(device T* out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[i] = T(1);
}
ORCHARD_KERNEL("check_undeclared_barrier_float32", check_undeclared_barrier, float)

// Deliberately order-dependent: the exclusive prefix sum of `in` over the threads of the grid, taken
// from a device total as each thread runs. Right only if the threads run in grid order, which no
// GPU promises: the emulator's shuffled order must make it wrong.
template <typename T>
[[kernel]] void check_order_dependent_prefix_sum(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                                                 device atomic_uint* total [[buffer(2)]],
                                                 uint i [[thread_position_in_grid]]) {
  out[i] = atomic_fetch_add_explicit(total, in[i], memory_order_relaxed);
}
ORCHARD_KERNEL("check_order_dependent_prefix_sum_uint32", check_order_dependent_prefix_sum, uint)

// The same over threadgroups of a cooperative kernel: thread 0 of group g adds in[g].
template <typename T>
[[kernel]] void check_order_dependent_prefix_sum_cooperative(device T* out [[buffer(0)]],
                                                             device const T* in [[buffer(1)]],
                                                             device atomic_uint* total [[buffer(2)]],
                                                             uint g [[threadgroup_position_in_grid]],
                                                             uint t [[thread_index_in_threadgroup]]) {
  if (t == 0) out[g] = atomic_fetch_add_explicit(total, in[g], memory_order_relaxed);
}
ORCHARD_KERNEL("check_order_dependent_prefix_sum_cooperative_uint32", check_order_dependent_prefix_sum_cooperative,
               uint)

// MSL's extremes on floats, per lane i of a, b (in[i], in[n + i]): out[9 i ...] = fmax(a, b),
// max(a, b), fmin(a, b), min(a, b), clamp(a, -1, 1), simd_max(a), simd_min(a), and common.h's
// NaN-propagating nan_max(a, b) and simd_nan_max(a).
template <typename T>
[[kernel]] void check_extremes(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                               uint i [[thread_index_in_threadgroup]], uint n [[threads_per_threadgroup]]) {
  const T a = in[i], b = in[n + i];
  device T* o = out + 9 * i;
  o[0] = fmax(a, b);
  o[1] = max(a, b);
  o[2] = fmin(a, b);
  o[3] = min(a, b);
  o[4] = clamp(a, T(-1), T(1));
  o[5] = simd_max(a);
  o[6] = simd_min(a);
  o[7] = nan_max(a, b);
  o[8] = simd_nan_max(a);
}
ORCHARD_KERNEL("check_extremes_float32", check_extremes, float)
