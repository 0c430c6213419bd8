// How the emulator calls a kernel compiled from MSL as C++: each kernel is registered by host name
// with an adapter that builds its arguments from the ThreadContext of one emulated thread. The
// adapters are generated from the kernels' parameter attributes by tools/metal_codegen.py.
#pragma once

#include <metal_stdlib>

namespace orchard::metal_emu {

// Converts to the pointer type a [[buffer(i)]] or [[threadgroup(i)]] parameter declares.
struct AnyPointer {
  void* p;
  template <typename T> operator T*() const { return static_cast<T*>(p); }
};
// Converts to the reference type a `constant Params& p [[buffer(i)]]` parameter declares.
struct AnyReference {
  void* p;
  template <typename T> operator T&() const { return *static_cast<T*>(p); }
};
// A position attribute, converting to uint, uint2 or uint3 as the parameter declares.
struct Position {
  ::metal::uint3 v;
  operator uint32_t() const { return v.x; }
  operator ::metal::uint2() const { return {v.x, v.y}; }
  operator ::metal::uint3() const { return v; }
};

struct ThreadContext {
  void* const* buffers;
  void* const* threadgroup_memory;
  ::metal::uint3 position_in_grid, position_in_threadgroup, threadgroup_position, threads_per_threadgroup,
      threadgroups_per_grid, threads_per_grid;
  uint32_t index_in_threadgroup, index_in_simdgroup, simdgroup_index, threads_per_simdgroup, simdgroups_per_threadgroup;

  AnyPointer buffer(int i) const { return {buffers[i]}; }
  AnyReference buffer_ref(int i) const { return {buffers[i]}; }
  AnyPointer threadgroup_buffer(int i) const { return {threadgroup_memory[i]}; }
  Position at(const ::metal::uint3& v) const { return {v}; }
};

using KernelFn = void (*)(const ThreadContext&);

// `cooperative`: the kernel's threads work together (threadgroup memory, barriers, simdgroup
// functions), so they run as real threads; others run one after another on a few workers.
bool register_kernel(const char* name, KernelFn fn, bool cooperative);

}  // namespace orchard::metal_emu

#define ORCHARD_EMU_CAT2(a, b) a##b
#define ORCHARD_EMU_CAT(a, b) ORCHARD_EMU_CAT2(a, b)
// ORCHARD_KERNEL(host_name, function, template args...) in C++ mode: instantiate the kernel
// explicitly, as the MSL expansion does (so a second instantiation of one specialization fails this
// build as it fails Apple's compiler), and register an adapter.
#define ORCHARD_EMU_REGISTER(host_name, fn, ...)                                                   \
  template decltype(fn<__VA_ARGS__>) fn<__VA_ARGS__>;                                              \
  static const bool ORCHARD_EMU_CAT(orchard_emu_registered_, __COUNTER__) =                         \
      ::orchard::metal_emu::register_kernel(                                                        \
          host_name, [](const ::orchard::metal_emu::ThreadContext& c) { fn<__VA_ARGS__>(ORCHARD_EMU_ARGS_##fn(c)); }, \
          ORCHARD_EMU_COOPERATIVE_##fn);
