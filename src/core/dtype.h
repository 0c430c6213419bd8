// Element types, their properties, type promotion, and the one dtype dispatch macro.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "errors.h"
#include "half.h"

namespace orchard {

enum class DType : uint8_t { Bool, Int32, Int64, Float16, BFloat16, Float32, Float64 };
constexpr int kNumDTypes = 7;

size_t itemsize(DType t);
const char* dtype_name(DType t);  // "float32", as NumPy and PyTorch spell it
constexpr bool is_floating(DType t) { return t >= DType::Float16; }
constexpr bool is_integral(DType t) { return t == DType::Int32 || t == DType::Int64; }

// NumPy/PyTorch promotion of two tensors: bool < integers < floats; within a kind the wider wins;
// float16 with bfloat16 gives float32.
DType promote_types(DType a, DType b);

// Promotion with a Python scalar ("weak" type, as in PyTorch): the scalar only changes the result
// when it is of a higher kind than the tensor, and then gives that kind's default (int64, float32).
DType promote_with_scalar(DType tensor, DType scalar);

// Whether a result of dtype `from` may be written into a tensor of dtype `to` (in-place ops), as
// PyTorch's can_cast: anything but a float into an integer or bool, or an integer into a bool.
bool can_cast(DType from, DType to);

template <typename T> struct dtype_of;
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<Half> { static constexpr DType value = DType::Float16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };

// The type arithmetic happens in: float for the 16-bit floats, the type itself otherwise.
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<Half> { using type = float; };
template <> struct compute_type<BFloat16> { using type = float; };
template <typename T> using compute_t = typename compute_type<T>::type;

// Integer negation, +, -, *, powers and sums wrap around on overflow, as in PyTorch and NumPy: they
// compute in the unsigned type of the same width, since signed overflow is undefined behaviour.
template <typename C> struct Wrapping { using type = C; };
template <> struct Wrapping<int32_t> { using type = uint32_t; };
template <> struct Wrapping<int64_t> { using type = uint64_t; };
template <typename C> using wrapping_t = typename Wrapping<C>::type;

// ORCHARD_DISPATCH(dtype, T, body): runs body with T bound to the C++ type of dtype.
#define ORCHARD_DISPATCH_CASE(enumerator, type, ...) \
  case ::orchard::DType::enumerator: {               \
    using T = type;                                  \
    __VA_ARGS__;                                     \
    break;                                           \
  }
#define ORCHARD_DISPATCH(dtype, ...)                                      \
  switch (dtype) {                                                        \
    ORCHARD_DISPATCH_CASE(Bool, bool, __VA_ARGS__)                        \
    ORCHARD_DISPATCH_CASE(Int32, int32_t, __VA_ARGS__)                    \
    ORCHARD_DISPATCH_CASE(Int64, int64_t, __VA_ARGS__)                    \
    ORCHARD_DISPATCH_CASE(Float16, ::orchard::Half, __VA_ARGS__)          \
    ORCHARD_DISPATCH_CASE(BFloat16, ::orchard::BFloat16, __VA_ARGS__)     \
    ORCHARD_DISPATCH_CASE(Float32, float, __VA_ARGS__)                    \
    ORCHARD_DISPATCH_CASE(Float64, double, __VA_ARGS__)                   \
  }
#define ORCHARD_DISPATCH_FLOATING(dtype, ...)                             \
  switch (dtype) {                                                        \
    ORCHARD_DISPATCH_CASE(Float16, ::orchard::Half, __VA_ARGS__)          \
    ORCHARD_DISPATCH_CASE(BFloat16, ::orchard::BFloat16, __VA_ARGS__)     \
    ORCHARD_DISPATCH_CASE(Float32, float, __VA_ARGS__)                    \
    ORCHARD_DISPATCH_CASE(Float64, double, __VA_ARGS__)                   \
    default: throw ::orchard::DTypeError(::orchard::detail::concat(       \
        "expected a floating point dtype, got ", ::orchard::dtype_name(dtype))); \
  }

}  // namespace orchard
