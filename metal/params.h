// Launch parameters shared by the plans (C++, namespace orchard::metal) and the kernels (MSL, or C++
// in the emulator): one definition, so both sides agree on the layout. Fixed-width types only.
#pragma once

#if defined(__METAL_VERSION__) || defined(ORCHARD_MSL_EMULATION)
#define ORCHARD_PARAMS_BEGIN
#define ORCHARD_PARAMS_END
#else
#include <cstdint>
#define ORCHARD_PARAMS_BEGIN namespace orchard::metal {
#define ORCHARD_PARAMS_END }
#endif

// Dims an elementwise launch addresses at most; the plans split longer loops over launches.
#define ORCHARD_METAL_MAX_DIMS 6
// Operands of an elementwise launch at most (output first).
#define ORCHARD_METAL_MAX_OPERANDS 4

ORCHARD_PARAMS_BEGIN

// An elementwise loop over `numel` elements of a `ndim`-dim shape (dim 0 outermost). Operand k's
// element offset for a multi-index is the dot product with strides[k] (in elements).
struct StridedLoop {
  int64_t shape[ORCHARD_METAL_MAX_DIMS];
  int64_t strides[ORCHARD_METAL_MAX_OPERANDS][ORCHARD_METAL_MAX_DIMS];
  int64_t numel;
  uint32_t ndim;
  uint32_t pad;
};

// A fill value: floats and bool take `f`, integers the exact `i`.
struct FillValue {
  float f;
  uint32_t pad;
  int64_t i;
};

ORCHARD_PARAMS_END
