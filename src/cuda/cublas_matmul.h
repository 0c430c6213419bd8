// Float products on the CUDA device through cuBLAS (tensor cores for float16 and bfloat16, and for
// float32 where TF32 is allowed): the CUDA backend runs a matmul_tiled_<dtype> launch here instead
// of the portable kernel, whose 8x8 simdgroup matrices CUDA can only emulate.
#pragma once

#include "dispatch.h"

namespace orchard::cuda {

// Runs the product that `d` (a matmul_tiled_<t> launch: out, a, b, MatmulParams) describes, in
// order on `stream` (a CUstream; nullptr is the legacy default stream). Returns false, having done nothing, where cuBLAS cannot take
// it (no cuBLAS library, or an operand whose strides no BLAS layout describes): the caller then
// launches the kernel. Raises RuntimeError when cuBLAS fails.
bool cublas_matmul(const metal::Dispatch& d, DType t, void* stream);

}  // namespace orchard::cuda
