// Shared by every Orchard kernel: the instantiation macro, the dtype table, compute types and
// conversions. Kernels are written in the MSL subset described in README.md, so they also compile
// as C++ in the emulator.
#pragma once

#include <metal_stdlib>
using namespace metal;

// ORCHARD_KERNEL("host_name", function, template arguments...) instantiates one kernel under the
// name the plans request. In the emulator the same line registers it (src/metal/emulator).
#ifdef __METAL_VERSION__
#define ORCHARD_KERNEL(name, fn, ...) \
  template [[host_name(name)]] [[kernel]] decltype(fn<__VA_ARGS__>) fn<__VA_ARGS__>;
#else
#define ORCHARD_KERNEL(name, fn, ...) ORCHARD_EMU_REGISTER(name, fn, __VA_ARGS__)
#endif

// M(name, type) for every dtype Metal supports, with the names src/core/dtype.cpp gives them.
#define ORCHARD_FOR_EACH_DTYPE(M) \
  M(bool, bool) M(int32, int32_t) M(int64, int64_t) M(float16, half) M(bfloat16, bfloat) M(float32, float)
#define ORCHARD_FOR_EACH_FLOAT(M) M(float16, half) M(bfloat16, bfloat) M(float32, float)

// Arithmetic on 16-bit floats happens in float, as on the CPU, so both devices round alike.
template <typename T> struct Compute { typedef T type; };
template <> struct Compute<half> { typedef float type; };
template <> struct Compute<bfloat> { typedef float type; };
// Integer negation, +, -, * and powers wrap around on overflow, as in PyTorch: they compute in the unsigned
// type of the same width, since signed overflow is undefined in C++ (which the emulator compiles).
template <typename C> struct Wrapping { typedef C type; };
template <> struct Wrapping<int32_t> { typedef uint32_t type; };
template <> struct Wrapping<int64_t> { typedef uint64_t type; };

// NaN-propagating extremes, for every kernel whose result must be NaN where an input is (PyTorch's
// maximum/minimum, amax/amin, max/min and argmax/argmin, and the row maxima of softmax, logsumexp,
// cross-entropy and attention). MSL's own max/min/fmax/fmin and simd_max/simd_min do not propagate
// NaN: on floats they are IEEE 754 maxNum/minNum and return the non-NaN operand (the MSL
// specification, "Math Functions": "If one argument is a NaN, fmax() returns the other argument"),
// as the GPU computes them. `x != x` is the NaN test for every scalar type (false for integers and
// bool). Ties give `a`, so a running extreme keeps the first of equal values, as PyTorch does.
template <typename T> bool is_nan(T x) { return x != x; }
template <typename T> T nan_max(T a, T b) { return (a >= b || is_nan(a)) ? a : b; }
template <typename T> T nan_min(T a, T b) { return (a <= b || is_nan(a)) ? a : b; }
// The maximum over the lanes of a simdgroup, NaN when any lane holds NaN. Every lane calls it.
inline float simd_nan_max(float v) {
  const bool any_nan = simd_any(is_nan(v));
  const float m = simd_max(v);
  return any_nan ? NAN : m;
}

// Value conversion between dtypes: through the compute types, so 16-bit floats go via float and
// integers convert directly (int64 keeps its precision).
template <typename Out, typename In> Out convert(In x) {
  return Out(typename Compute<Out>::type(typename Compute<In>::type(x)));
}

// Multi-dimensional strided addressing for loops of up to ORCHARD_METAL_MAX_DIMS dims: the element
// offset of linear index i in an operand with the given strides.
inline int64_t strided_offset(int64_t i, constant int64_t* shape, constant int64_t* strides, uint32_t ndim) {
  int64_t offset = 0;
  for (int d = int(ndim) - 1; d >= 0; --d) {
    const int64_t q = i / shape[d];
    offset += (i - q * shape[d]) * strides[d];
    i = q;
  }
  return offset;
}
