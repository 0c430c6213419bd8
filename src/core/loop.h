// Builds elementwise loops: each input's strides broadcast to the output's shape (stride 0 where
// it repeats), then adjacent dims merged wherever every operand allows, so kernels see the
// fewest, longest rows.
#pragma once

#include <initializer_list>

#include "runtime.h"

namespace orchard {

ElementwiseLoop make_loop(const Tensor& out, std::initializer_list<Tensor> inputs);

}  // namespace orchard
