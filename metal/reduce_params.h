// Launch parameters of the reduction and softmax kernels (metal/reduce.metal, src/metal/plan_reduce.cpp).
#pragma once

#include "params.h"

ORCHARD_PARAMS_BEGIN

// A reduction of a contiguous input viewed as [outer, reduced, inner] into contiguous [outer, inner]
// (softmax: rows as `outer`, cols as `reduced`, inner 1). `width` and `depth` shape the threadgroup:
// row kernels run `depth` rows of `width` threads each; split kernels run `width` columns (adjacent
// inner indices) times `depth` slices of the reduced dim. Unused by the thread-per-output kernels.
struct ReduceParams {
  int64_t outer;
  int64_t reduced;
  int64_t inner;
  int64_t correction;  // Var: the divisor is max(reduced - correction, 0)
  uint32_t width;
  uint32_t depth;
};

ORCHARD_PARAMS_END
