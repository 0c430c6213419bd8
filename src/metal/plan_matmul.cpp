// Plans for batched matrix products (kernels in metal/matmul.metal). a [batch, M, K] and b
// [batch, K, N] are read in place through their strides (row- or column-major matrices, a batch
// stride of 0 broadcasting), out is contiguous [batch, M, N]; the batch is the grid's z.
//
// Float dtypes run matmul_tiled: simdgroup 8x8 matrices of the input dtype multiplied into float32
// accumulators (16-bit inputs are staged and loaded as they are, never widened, and the result
// rounds once, as on the CPU). Tile choice:
// - Simdgroup matrices are 8x8, so every tile side is a multiple of 8. Four simdgroups (128
//   threads) split a 32 x 32 output tile 2 x 2; each owns a 16 x 16 quarter, i.e. 2 x 2
//   accumulators, loading 2 fragments of a and 2 of b per 4 multiply-accumulates of every 8-deep
//   slice (twice the reuse of one fragment per product).
// - K advances 16 per step: each of the 128 threads stages 4 elements of a and 4 of b between one
//   pair of barriers, and the step holds two 8-deep slices of products.
// - Threadgroup memory (tile_bytes): for float32 an a tile 32 x (16 + 4) floats (2.5 KiB), a b tile
//   16 x (32 + 4) (2.25 KiB) and the output staging tile 32 x 32 floats (4 KiB): 8.75 KiB; for half
//   and bfloat the a and b tiles take 32 x (16 + 8) and 16 x (32 + 8) 2-byte elements (1.5 and
//   1.25 KiB): 6.75 KiB. Either way at least three threadgroups fit a core's 32 KiB and the core
//   has a dozen simdgroups to switch between while tile loads wait on device memory. The 16 bytes
//   of row padding keep rows 16-byte aligned for simdgroup_load and stagger the banks that the
//   column-wise staging of a transposed operand writes.
// - 32 x 32 tiles waste little on the small and ragged shapes that model training produces (edge
//   tiles are zero-padded in threadgroup memory, only the final stores are guarded) and give
//   enough threadgroups to fill a GPU's cores from M = N = 256 up; 64 x 64 tiles would reuse each
//   staged element more on large products but quarter the group count and need 16 KiB of output
//   staging. 128 threads also keeps the emulator, which runs each thread of a cooperative group as
//   an OS thread, quick.
// Integer dtypes run matmul_naive, one thread per output element in 16 x 16 threadgroups.
//
// Work estimates (Dispatch::work): 2 m n k operations per product. matmul_naive counts 8 times
// that: it reads both operands from device memory for every multiply-add, without simdgroup
// matrices, and a GPU has no 64-bit integer multiplier (several instructions each).
#include <cstdint>
#include <limits>

#include "matmul_params.h"
#include "plans.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kTileM = ORCHARD_MATMUL_TILE_M, kTileN = ORCHARD_MATMUL_TILE_N, kTileK = ORCHARD_MATMUL_TILE_K;
constexpr uint32_t kThreads = ORCHARD_MATMUL_THREADS;
static_assert(kTileM == 32 && kTileN == 32 && kThreads == 128, "matmul_tiled hard-codes a 2 x 2 grid of 16 x 16 simdgroup tiles");
static_assert(kTileK % 8 == 0, "the K step is a whole number of 8-deep simdgroup products");

// The threadgroup memory matmul_tiled takes for an input dtype of `bytes` bytes: the staged a and b
// tiles in that dtype, the output tile in float.
struct TileBytes {
  uint32_t a, b, c;
  constexpr uint32_t total() const { return a + b + c; }
};
constexpr TileBytes tile_bytes(uint32_t bytes) {
  return {kTileM * ORCHARD_MATMUL_A_LD(bytes) * bytes, kTileK * ORCHARD_MATMUL_B_LD(bytes) * bytes,
          kTileM * kTileN * uint32_t(sizeof(float))};
}
constexpr bool rows_aligned(uint32_t bytes) {
  return ORCHARD_MATMUL_A_LD(bytes) * bytes % 16 == 0 && ORCHARD_MATMUL_B_LD(bytes) * bytes % 16 == 0;
}
static_assert(tile_bytes(2).total() <= 32 * 1024 && tile_bytes(4).total() <= 32 * 1024, "threadgroup memory budget");
static_assert(rows_aligned(2) && rows_aligned(4), "staged rows start 16-byte aligned for simdgroup_load");
constexpr uint32_t kNaiveX = ORCHARD_MATMUL_NAIVE_X, kNaiveY = ORCHARD_MATMUL_NAIVE_Y;
constexpr uint64_t kNaiveWorkFactor = 8;

const DType kIntDTypes[] = {DType::Int32, DType::Int64};

std::string naive_kernel(DType t) { return std::string("matmul_naive_") + dtype_name(t); }

uint32_t grid_dim(int64_t n, int64_t per_group, const char* what) {
  const int64_t groups = (n + per_group - 1) / per_group;
  ORCHARD_CHECK(groups <= int64_t(std::numeric_limits<uint32_t>::max()), RuntimeError, "metal: matmul ", what, " of ",
                n, " needs more threadgroups than a grid holds");
  return uint32_t(groups);
}

}  // namespace

namespace {

Launches plan_product(const MatmulArgs& args, bool accumulate) {
  const auto& [a, b, out] = args;
  const DType t = out.dtype();
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  if (batch == 0 || m == 0 || n == 0) return {};

  MatmulParams p{};
  p.m = m;
  p.n = n;
  p.k = k;
  p.accumulate = accumulate;
  for (int d = 0; d < 3; ++d) {
    p.a_strides[d] = a.strides()[d];
    p.b_strides[d] = b.strides()[d];
  }
  // Only decides which way the tile loads walk, so that neighbouring threads read neighbouring
  // addresses: along k unless a's unit stride runs along m (likewise b: along n unless along k).
  const Strides &sa = a.strides(), &sb = b.strides();
  p.a_k_unit = (m > 1 && sa[1] == 1 && (k == 1 || sa[2] != 1)) ? 0 : 1;
  p.b_n_unit = (k > 1 && sb[1] == 1 && (n == 1 || sb[2] != 1)) ? 0 : 1;

  const bool tiled = t == DType::Float16 || t == DType::BFloat16 || t == DType::Float32;
  ORCHARD_CHECK(tiled || t == DType::Int32 || t == DType::Int64, RuntimeError, "metal: no matmul kernel for ",
                dtype_name(t));
  const uint32_t z = grid_dim(batch, 1, "batch");
  Launch launch(tiled ? matmul_tiled_kernel(t) : naive_kernel(t));
  launch.buffer(out).buffer(a).buffer(b).constants(p);
  launch.work(2 * uint64_t(batch) * uint64_t(m) * uint64_t(n) * uint64_t(k) * (tiled ? 1 : kNaiveWorkFactor));
  if (!tiled) return {launch.grid({grid_dim(n, kNaiveX, "n"), grid_dim(m, kNaiveY, "m"), z}, {kNaiveX, kNaiveY, 1})};
  const TileBytes tiles = tile_bytes(uint32_t(itemsize(t)));
  launch.threadgroup_memory(tiles.a).threadgroup_memory(tiles.b).threadgroup_memory(tiles.c);
  return {launch.grid({grid_dim(n, kTileN, "n"), grid_dim(m, kTileM, "m"), z}, {kThreads, 1, 1})};
}

}  // namespace

Launches plan_matmul(const MatmulArgs& args) { return plan_product(args, false); }
Launches plan_matmul_accumulate(const MatmulArgs& args) { return plan_product(args, true); }

std::string matmul_tiled_kernel(DType t) { return std::string("matmul_tiled_") + dtype_name(t); }

void matmul_kernel_names(std::vector<std::string>& names) {
  for (DType t : kFloatDTypes) names.push_back(matmul_tiled_kernel(t));
  for (DType t : kIntDTypes) names.push_back(naive_kernel(t));
}

}  // namespace orchard::metal
