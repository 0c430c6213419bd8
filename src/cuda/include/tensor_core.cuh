// The tensor-core and asynchronous-copy primitives of the native kernels (src/cuda/kernels), as
// inline PTX for sm_80 and later. Built with ORCHARD_CUDA_HOST, the same functions come from
// tests/cpp/cuda_host/tensor_core_host.h, which runs them on the CPU, so that the native kernels also
// run in the GoogleTests of machines without a GPU.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA), lane = 4 g + t:
//   A (16 x 16, row-major): reg0 = (row g, cols 2t, 2t+1), reg1 = (row g+8, cols 2t, 2t+1),
//                           reg2 = (row g, cols 2t+8, 2t+9), reg3 = (row g+8, cols 2t+8, 2t+9)
//   B (16 x 8, "col"):      reg0 = (rows 2t, 2t+1, col g), reg1 = (rows 2t+8, 2t+9, col g)
//   C (16 x 8, fp32):       c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1)
// (two 16-bit values a register, the lower column or row in the low half). ldmatrix.x4 gives each
// lane of 8 x 8 matrix i, whose row addresses lanes 8i..8i+7 supply, the pair (row g, cols 2t, 2t+1),
// or with .trans (rows 2t, 2t+1, col g), into register i. So a [rows][cols] tile in shared memory
// gives A fragments as it is, B fragments of its transpose as it is, and B fragments of itself with
// .trans; the C fragments of two n-tiles side by side, packed in pairs, are the A fragment of a
// 16 x 16 step.
#pragma once

#ifdef ORCHARD_CUDA_HOST
#include "tensor_core_host.h"
#else

typedef unsigned short u16;
typedef unsigned int u32;
typedef u32 smem_addr;  // an address in shared memory, as ldmatrix and cp.async take it

__device__ __forceinline__ float infinity() { return __int_as_float(0x7f800000); }

__device__ __forceinline__ smem_addr shared_address(const void* p) {
  return static_cast<smem_addr>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes global -> shared, or writes 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void cp_async_16(smem_addr dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits for this thread's copies of all committed groups.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], smem_addr address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], smem_addr address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// c += a b for one m16n8k16 step, in bfloat16 (BF16) or float16, accumulating in float32.
template <bool BF16> __device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  if constexpr (BF16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to nearest even as 16-bit values, `lo` in the low half.
template <bool BF16> __device__ __forceinline__ u32 pack(float lo, float hi) {
  u32 r;
  if constexpr (BF16)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// The kernel's dynamic shared memory (the bytes given at launch), 16-byte aligned.
extern __shared__ __align__(16) unsigned char orchard_dynamic_shared[];
__device__ __forceinline__ unsigned char* dynamic_shared() { return orchard_dynamic_shared; }

// Value `lane ^ mask` of the warp's `x` (every lane takes part).
__device__ __forceinline__ float shuffle_xor(float x, int mask) { return __shfl_xor_sync(0xffffffffu, x, mask); }

#endif  // ORCHARD_CUDA_HOST
