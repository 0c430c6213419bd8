// Batched matrix products out[z] = a[z] @ b[z] (Runtime::matmul), or out[z] += a[z] @ b[z]
// (Runtime::matmul_accumulate, p.accumulate: addmm's out holds its input): a is [batch, M, K], b is
// [batch, K, N], each addressed through {batch, row, column} strides (either may be transposed; a
// batch stride of 0 broadcasts), out contiguous [batch, M, N]. The batch index is the grid's z.
//
// - matmul_tiled_<float dtype>: simdgroup-matrix tiles (geometry in matmul_params.h, reasoning in
//   src/metal/plan_matmul.cpp). Tiles of a and b are staged in threadgroup memory in the input dtype,
//   zero padded past M, N and K so edge tiles need no special path (only the final writes are
//   guarded), and multiplied as simdgroup matrices of that dtype into float32 accumulators: the
//   products accumulate in float32 whatever the input dtype, and the result rounds to T once.
// - matmul_naive_<int dtype>: one thread per output element, accumulating with two's-complement
//   wraparound (as the CPU's integer loops do).
#include "common.h"
#include "matmul_params.h"

// On 16-bit inputs the multiply-accumulate mixes types: half (or bfloat) a and b, float c and d.
// The MSL specification's table of SIMD-group matrix operations (6.7.2, MSL 3.1) writes one element
// type T for all four operands, so it does not spell this out; Apple's compiler accepts the mix, and
// the half and bfloat matrix products of other Metal libraries (llama.cpp's among them) are written
// this way. Widening the fragments to float instead would need float tiles (simdgroup_load reads
// only its own element type), twice the threadgroup memory and staging traffic this kernel saves.
template <typename T>
[[kernel]] void matmul_tiled(device T* out [[buffer(0)]], device const T* a [[buffer(1)]], device const T* b [[buffer(2)]],
                             constant MatmulParams& p [[buffer(3)]],
                             threadgroup T* a_tile [[threadgroup(0)]],
                             threadgroup T* b_tile [[threadgroup(1)]],
                             threadgroup float* c_tile [[threadgroup(2)]],
                             uint3 group [[threadgroup_position_in_grid]],
                             uint tid [[thread_index_in_threadgroup]],
                             uint sg [[simdgroup_index_in_threadgroup]]) {
  const uint tile_m = ORCHARD_MATMUL_TILE_M, tile_n = ORCHARD_MATMUL_TILE_N, tile_k = ORCHARD_MATMUL_TILE_K;
  const uint a_ld = ORCHARD_MATMUL_A_LD(sizeof(T)), b_ld = ORCHARD_MATMUL_B_LD(sizeof(T));
  const uint threads = ORCHARD_MATMUL_THREADS;
  const int64_t row0 = int64_t(group.y) * tile_m, col0 = int64_t(group.x) * tile_n;
  a += int64_t(group.z) * p.a_strides[0];
  b += int64_t(group.z) * p.b_strides[0];
  out += int64_t(group.z) * p.m * p.n;

  // The simdgroups tile the output block 2 x 2; each accumulates its 16 x 16 quarter in 2 x 2
  // 8x8 matrices.
  const uint sub_row = (sg / 2) * 16, sub_col = (sg % 2) * 16;
  simdgroup_float8x8 acc[2][2];
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j) acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);

  for (int64_t k0 = 0; k0 < p.k; k0 += tile_k) {
    // Stage a[row0 : row0 + TILE_M, k0 : k0 + TILE_K] and b[k0 : k0 + TILE_K, col0 : col0 + TILE_N]:
    // consecutive threads read consecutive addresses of each operand's unit-stride dim.
    for (uint e = tid; e < tile_m * tile_k; e += threads) {
      const uint r = p.a_k_unit ? e / tile_k : e % tile_m;
      const uint c = p.a_k_unit ? e % tile_k : e / tile_m;
      const int64_t gr = row0 + r, gc = k0 + c;
      a_tile[r * a_ld + c] = (gr < p.m && gc < p.k) ? a[gr * p.a_strides[1] + gc * p.a_strides[2]] : T(0.0f);
    }
    for (uint e = tid; e < tile_k * tile_n; e += threads) {
      const uint r = p.b_n_unit ? e / tile_n : e % tile_k;
      const uint c = p.b_n_unit ? e % tile_n : e / tile_k;
      const int64_t gr = k0 + r, gc = col0 + c;
      b_tile[r * b_ld + c] = (gr < p.k && gc < p.n) ? b[gr * p.b_strides[1] + gc * p.b_strides[2]] : T(0.0f);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    for (uint kk = 0; kk < tile_k; kk += 8) {
      simdgroup_matrix<T, 8, 8> a_frag[2], b_frag[2];
      for (uint i = 0; i < 2; ++i) simdgroup_load(a_frag[i], a_tile + (sub_row + 8 * i) * a_ld + kk, a_ld);
      for (uint j = 0; j < 2; ++j) simdgroup_load(b_frag[j], b_tile + kk * b_ld + sub_col + 8 * j, b_ld);
      for (uint i = 0; i < 2; ++i)
        for (uint j = 0; j < 2; ++j) simdgroup_multiply_accumulate(acc[i][j], a_frag[i], b_frag[j], acc[i][j]);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);  // the tiles are overwritten next step
  }

  // Through threadgroup memory to out: guarded at the M and N edges, converted to T, and written
  // row by row so consecutive threads store consecutive addresses.
  for (uint i = 0; i < 2; ++i)
    for (uint j = 0; j < 2; ++j)
      simdgroup_store(acc[i][j], c_tile + (sub_row + 8 * i) * tile_n + sub_col + 8 * j, tile_n);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (uint e = tid; e < tile_m * tile_n; e += threads) {
    const int64_t gr = row0 + e / tile_n, gc = col0 + e % tile_n;
    if (gr < p.m && gc < p.n) out[gr * p.n + gc] = T(p.accumulate ? float(out[gr * p.n + gc]) + c_tile[e] : c_tile[e]);
  }
}

#define ORCHARD_MATMUL_TILED(name, T) ORCHARD_KERNEL("matmul_tiled_" #name, matmul_tiled, T)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_MATMUL_TILED)

// U is the unsigned type of T's width: products and sums wrap modulo 2^bits (well defined in both
// MSL and C++), which is the two's-complement result the CPU's integer loops produce.
template <typename T, typename U>
[[kernel]] void matmul_naive(device T* out [[buffer(0)]], device const T* a [[buffer(1)]], device const T* b [[buffer(2)]],
                             constant MatmulParams& p [[buffer(3)]], uint3 pos [[thread_position_in_grid]]) {
  const int64_t row = pos.y, col = pos.x;
  if (row >= p.m || col >= p.n) return;
  a += int64_t(pos.z) * p.a_strides[0] + row * p.a_strides[1];
  b += int64_t(pos.z) * p.b_strides[0] + col * p.b_strides[2];
  U sum = 0;
  for (int64_t k = 0; k < p.k; ++k) sum += U(a[k * p.a_strides[2]]) * U(b[k * p.b_strides[1]]);
  const int64_t i = (int64_t(pos.z) * p.m + row) * p.n + col;
  out[i] = T(p.accumulate ? sum + U(out[i]) : sum);
}

ORCHARD_KERNEL("matmul_naive_int32", matmul_naive, int32_t, uint32_t)
ORCHARD_KERNEL("matmul_naive_int64", matmul_naive, int64_t, uint64_t)
