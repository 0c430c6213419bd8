// What the generated CUDA entry points of the kernels use (tools/cuda_codegen.py writes one
// `extern "C" __global__` function per ORCHARD_KERNEL instantiation, named by its host name).
//
// An entry point's parameters, in this order (the ABI the CUDA backend launches with):
// - one per [[buffer(i)]], i = 0, 1, ...: a device pointer, or the launch constants themselves, by
//   value, for a `constant Params& p` parameter (Dispatch's constant bytes then travel in the launch
//   itself, in the kernel parameter space, with no device allocation or copy per launch);
// - one uint32_t per [[threadgroup(i)]], i = 0, 1, ...: that buffer's byte offset in the launch's
//   dynamic shared memory (a multiple of 16; the backend lays the buffers out and sizes the launch's
//   shared memory);
// - a GridPart: CUDA caps a grid's y and z at 65535 blocks, so the backend runs a taller or deeper
//   Metal grid as several launches, each covering the groups from (first_y, first_z) on.
// Positions come from CUDA's built-ins and the GridPart: a threadgroup is a block, a simdgroup a warp.
#pragma once

#include <metal_stdlib>

namespace orchard_cuda {

// The type of parameter I of the function type F; buffer_t passes a constant reference by value.
template <int I, typename... A> struct nth;
template <typename A0, typename... A> struct nth<0, A0, A...> { typedef A0 type; };
template <int I, typename A0, typename... A> struct nth<I, A0, A...> : nth<I - 1, A...> {};
template <int I, typename F> struct parameter;
template <int I, typename... A> struct parameter<I, void(A...)> : nth<I, A...> {};
template <int I, typename F> using parameter_t = typename parameter<I, F>::type;
template <typename T> struct by_value { typedef T type; };
template <typename T> struct by_value<const T&> { typedef T type; };
template <int I, typename F> using buffer_t = typename by_value<parameter_t<I, F> >::type;

extern __shared__ __align__(16) unsigned char threadgroup_memory[];

// A position attribute, converting to uint, uint2 or uint3 as the parameter declares.
struct Position {
  uint3 v;
  operator unsigned() const { return v.x; }
  operator uint2() const { return {v.x, v.y}; }
  operator uint3() const { return v; }
};
struct GridPart {
  unsigned first_y, first_z, groups_y, groups_z;
};
inline uint3 group(const GridPart& g) { return {blockIdx.x, blockIdx.y + g.first_y, blockIdx.z + g.first_z}; }
inline Position threadgroup_position_in_grid(const GridPart& g) { return {group(g)}; }
inline Position thread_position_in_grid(const GridPart& g) {
  const uint3 b = group(g);
  return {{b.x * blockDim.x + threadIdx.x, b.y * blockDim.y + threadIdx.y, b.z * blockDim.z + threadIdx.z}};
}
inline Position thread_position_in_threadgroup(const GridPart&) { return {threadIdx}; }
inline Position threads_per_threadgroup(const GridPart&) { return {{blockDim.x, blockDim.y, blockDim.z}}; }
inline Position threadgroups_per_grid(const GridPart& g) { return {{gridDim.x, g.groups_y, g.groups_z}}; }
inline Position threads_per_grid(const GridPart& g) {
  return {{gridDim.x * blockDim.x, g.groups_y * blockDim.y, g.groups_z * blockDim.z}};
}
inline unsigned thread_index_in_threadgroup(const GridPart&) { return ::metal::detail::thread_index(); }
inline unsigned thread_index_in_simdgroup(const GridPart&) { return ::metal::detail::lane(); }
inline unsigned simdgroup_index_in_threadgroup(const GridPart&) { return ::metal::detail::thread_index() / 32u; }
inline unsigned threads_per_simdgroup(const GridPart&) { return 32u; }
inline unsigned simdgroups_per_threadgroup(const GridPart&) {
  return (blockDim.x * blockDim.y * blockDim.z + 31u) / 32u;
}

}  // namespace orchard_cuda

// ORCHARD_KERNEL (metal/common.h) in C++ mode: the entry points follow the kernel text instead.
#define ORCHARD_EMU_REGISTER(name, fn, ...)
// Parameter K of the instantiation `...` (fn<args>) as an entry point takes it, and a
// [[threadgroup]] parameter K at byte `offset` of the dynamic shared memory.
#define ORCHARD_CUDA_BUFFER(K, ...) ::orchard_cuda::buffer_t<K, decltype(__VA_ARGS__)>
#define ORCHARD_CUDA_THREADGROUP(K, offset, ...) \
  reinterpret_cast< ::orchard_cuda::parameter_t<K, decltype(__VA_ARGS__)> >(::orchard_cuda::threadgroup_memory + (offset))
