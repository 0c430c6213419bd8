// bfloat16 matrix products with float32 accumulation on x86-64 processors with AMX or AVX512-BF16
// (matmul_bf16.cpp). Other processors, and fp16, convert to float32 for sgemm (matmul.cpp).
#pragma once

#include "tensor.h"

namespace orchard::cpu {

// The ways a bfloat16 product can run, slowest first.
enum class Bf16Gemm {
  Widened,     // float32 copies through sgemm: every processor
  Avx512Bf16,  // vdpbf16ps (Cooper Lake, Zen 4, Sapphire Rapids)
  Amx,         // tdpbf16ps tiles (Sapphire Rapids and later, with the kernel's permission)
};

const char* bf16_gemm_name(Bf16Gemm path);  // "widened", "avx512bf16", "amx"

// Whether this processor and operating system offer `path`; checked once.
bool bf16_gemm_supported(Bf16Gemm path);
// The path bfloat16 products take: the fastest supported one, unless the environment variable
// ORCHARD_BF16_GEMM named another (its name) or a test chose one.
Bf16Gemm bf16_gemm_path();
// Tests: run bfloat16 products through `path` (which must be supported) from now on.
void use_bf16_gemm_path(Bf16Gemm path);

// out[i] (+)= a[i] @ b[i] through bf16_gemm_path(), which is not Widened. a is [batch, M, K], b is
// [batch, K, N], both bfloat16 with unit stride in one of their last two dims (a batch stride of 0
// broadcasts); out is a contiguous bfloat16 [batch, M, N].
void matmul_bf16(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate);

}  // namespace orchard::cpu
