// tensor_core.cuh's primitives on the CPU, with the pieces of the CUDA language the native kernels
// use, so that src/cuda/kernels/*.cu compile as C++17 (with ORCHARD_CUDA_HOST defined) and run
// through launch_on_cpu.h: every thread a std::thread, the warp-collective operations a rendezvous
// of the warp's lanes that computes what the PTX instruction would, from the fragment layouts
// documented in tensor_core.cuh.
#pragma once

#include <math.h>  // exp2f, logf, fmaxf at global scope, as CUDA has them

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "half.h"
#include "launch_on_cpu.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// CTAs run one at a time, so a function-local static array is shared by exactly the running CTA's
// threads, as __shared__ memory is.
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

typedef unsigned short u16;
typedef unsigned int u32;
typedef uintptr_t smem_addr;  // on the host, the pointer itself

inline void __syncthreads() { orchard::cuda_host::current_cta->sync_threads(); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

namespace orchard::cuda_host {

inline void check_aligned(uintptr_t address, const char* what) {
  if (address % 16 != 0) throw std::invalid_argument(std::string(what) + ": address not 16-byte aligned");
}

// This thread's cp.async copies not yet done: a null src zero-fills. The first `committed` are in
// committed groups.
struct PendingCopy {
  void* dst;
  const void* src;
};
inline thread_local std::vector<PendingCopy> pending_copies;
inline thread_local size_t committed_copies = 0;

template <bool BF16> inline float widen(u16 bits) {
  if constexpr (BF16) return orchard::bits_float(uint32_t(bits) << 16);
  else return orchard::Half::to_float(bits);
}
inline u16 half_of(u32 reg, unsigned high) { return u16(high ? reg >> 16 : reg & 0xffffu); }

inline void ldmatrix(u32 (&r)[4], smem_addr address, bool trans) {
  check_aligned(address, "ldmatrix row");
  LaneInput input{};
  input.op = trans ? LaneInput::kLdmatrixTrans : LaneInput::kLdmatrix;
  // Read before the rendezvous: the instruction has read its rows when any lane goes on.
  std::memcpy(input.row, reinterpret_cast<const void*>(address), sizeof input.row);
  const LaneInput* lanes = current_cta->rendezvous(input);
  const unsigned lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  // Lanes 8i..8i+7 hold the rows of matrix i.
  for (unsigned i = 0; i < 4; ++i)
    r[i] = trans ? u32(lanes[8 * i + 2 * t].row[g]) | u32(lanes[8 * i + 2 * t + 1].row[g]) << 16
                 : u32(lanes[8 * i + g].row[2 * t]) | u32(lanes[8 * i + g].row[2 * t + 1]) << 16;
}

}  // namespace orchard::cuda_host

inline float infinity() { return __int_as_float(0x7f800000); }

inline smem_addr shared_address(const void* p) { return reinterpret_cast<smem_addr>(p); }

// Queued, not copied: the copy happens at cp_async_wait_all, so a tile read before it is stale.
inline void cp_async_16(smem_addr dst, const void* src, bool valid) {
  using namespace orchard::cuda_host;
  check_aligned(dst, "cp_async_16 destination");
  if (valid) check_aligned(reinterpret_cast<uintptr_t>(src), "cp_async_16 source");
  pending_copies.push_back({reinterpret_cast<void*>(dst), valid ? src : nullptr});
}
inline void cp_async_commit() { orchard::cuda_host::committed_copies = orchard::cuda_host::pending_copies.size(); }
// Does this thread's copies of the committed groups (those issued since the last commit stay queued).
inline void cp_async_wait_all() {
  using namespace orchard::cuda_host;
  for (size_t i = 0; i < committed_copies; ++i) {
    const PendingCopy& copy = pending_copies[i];
    if (copy.src)
      std::memcpy(copy.dst, copy.src, 16);
    else
      std::memset(copy.dst, 0, 16);
  }
  pending_copies.erase(pending_copies.begin(), pending_copies.begin() + std::ptrdiff_t(committed_copies));
  committed_copies = 0;
}

inline void ldmatrix_x4(u32 (&r)[4], smem_addr address) { orchard::cuda_host::ldmatrix(r, address, false); }
inline void ldmatrix_x4_trans(u32 (&r)[4], smem_addr address) { orchard::cuda_host::ldmatrix(r, address, true); }

// c += a b for the warp's m16n8k16 step: products exact, summed in double, rounded once.
template <bool BF16> inline void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  using namespace orchard::cuda_host;
  LaneInput input{};
  input.op = BF16 ? LaneInput::kMmaBf16 : LaneInput::kMmaF16;
  std::memcpy(input.a, a, sizeof input.a);
  input.b[0] = b0;
  input.b[1] = b1;
  const LaneInput* lanes = current_cta->rendezvous(input);
  // A[row][k] is in lane 4 (row % 8) + (k % 8) / 2, register (row >= 8) + 2 (k >= 8); B[k][col] in
  // lane 4 col + (k % 8) / 2, register k >= 8; the half is k % 2 in both.
  const auto A = [&](unsigned row, unsigned k) {
    return widen<BF16>(half_of(lanes[4 * (row % 8) + (k % 8) / 2].a[(row >= 8) + 2 * (k >= 8)], k % 2));
  };
  const auto B = [&](unsigned k, unsigned col) {
    return widen<BF16>(half_of(lanes[4 * col + (k % 8) / 2].b[k >= 8], k % 2));
  };
  const unsigned lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (unsigned i = 0; i < 4; ++i) {  // c[i] is (row g + 8 (i / 2), col 2t + i % 2)
    const unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
    double sum = c[i];
    for (unsigned k = 0; k < 16; ++k) sum += double(A(row, k)) * double(B(k, col));
    c[i] = float(sum);
  }
}

// Rounded to nearest even (NaN stays NaN, overflow becomes infinity), `lo` in the low half.
template <bool BF16> inline u32 pack(float lo, float hi) {
  const auto narrow = [](float f) -> u32 {
    if constexpr (BF16) return orchard::BFloat16::from_float(f);
    else return orchard::Half::from_float(f);
  };
  return narrow(lo) | narrow(hi) << 16;
}

// The launch's dynamic shared memory, filled with 0xff bytes before each CTA.
inline unsigned char* dynamic_shared() { return orchard::cuda_host::current_cta->dynamic_shared(); }

inline float shuffle_xor(float x, int mask) {
  using namespace orchard::cuda_host;
  if (mask < 0 || mask >= 32) throw std::invalid_argument("shuffle_xor: mask " + std::to_string(mask));
  LaneInput input{};
  input.op = LaneInput::kShuffle;
  input.value = x;
  return current_cta->rendezvous(input)[(threadIdx.x % 32) ^ unsigned(mask)].value;
}
