// bfloat16 GEMM: both operands are packed into panels in the layout the multiply instructions read,
// then a micro-kernel multiplies an MR x NR tile of the product over a chunk of K, accumulating in
// float32 in a per-task buffer, and the finished block is rounded once into the output.
//
// Packed layout: a panel holds R rows of a matrix (rows of a, or columns of b), K padded with zeros
// to a multiple of the kernel's group G, stored [K / G][R][G]: each row contributes G consecutive
// k values, then the next row does. For b (G = 2) this is the pair-interleaved ("VNNI") layout of
// vdpbf16ps and tdpbf16ps; for a it is what a broadcast (G = 2) or a tile row (G = 32) reads.
// Rows past the matrix's edge and k past K are zeros, so every tile is whole; the edges are only
// cut when the block is stored.
//
// The kernels are compiled for their instruction sets with target attributes and chosen at run time,
// so a build for any x86-64 runs everywhere. Both instructions accumulate in float32 and flush
// denormals to zero, as oneDNN's bfloat16 products (PyTorch's) do.
#include "matmul_bf16.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ORCHARD_BF16_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

namespace orchard::cpu {

#ifdef ORCHARD_BF16_KERNELS
namespace {

#define ORCHARD_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define ORCHARD_AMX_BF16 __attribute__((target("amx-tile,amx-bf16")))

// b's panels are 32 columns wide in both kernels: two vectors of 16 floats, or two 16-column tiles.
constexpr int kPanelCols = 32;

// A micro-kernel: c (an MR x 32 float32 tile, rows ldc apart) = (first ? 0 : c) + a @ b over kc
// values of k (a multiple of G), a and b being one panel each, starting at the chunk's k.
struct MicroKernel {
  int mr, group;
  void (*multiply)(int64_t kc, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc, bool first);
  void (*begin)();  // per-thread set-up before a series of calls (the AMX tile shapes), and undoing it
  void (*end)();
};

// ---- AVX512-BF16: 14 x 32 tiles --------------------------------------------------------------
// 28 accumulators (14 rows x two vectors of 16 columns), the two b vectors of a k pair and one
// broadcast fill the 32 vector registers; each b load serves 14 vdpbf16ps. On Sapphire Rapids
// vdpbf16ps issues at a quarter of vfmadd231ps's rate (measured), so there this kernel runs at
// about half of sgemm's speed and the AMX kernel is the one chosen.
constexpr int kAvxRows = 14;

ORCHARD_AVX512_BF16 void avx512_multiply(int64_t kc, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                                         bool first) {
  __m512 acc[kAvxRows][2];
#pragma GCC unroll 14
  for (int i = 0; i < kAvxRows; ++i)
    for (int h = 0; h < 2; ++h) acc[i][h] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + i * ldc + 16 * h);
  for (int64_t p = 0; p < kc / 2; ++p) {
    const uint16_t* bp = b + p * 2 * kPanelCols;
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 32);
    const uint16_t* ap = a + p * 2 * kAvxRows;
#pragma GCC unroll 14
    for (int i = 0; i < kAvxRows; ++i) {
      int32_t pair;
      std::memcpy(&pair, ap + 2 * i, 4);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < kAvxRows; ++i)
    for (int h = 0; h < 2; ++h) _mm512_storeu_ps(c + i * ldc + 16 * h, acc[i][h]);
}

void nothing() {}

// ---- AMX: 32 x 32 tiles --------------------------------------------------------------------
// Tiles 0-3 hold the four 16 x 16 float32 quarters of c, 4-5 the two 16-row halves of a's 32 k
// values, 6-7 the two 16-column halves of b's 16 k pairs: all eight are 16 rows of 64 bytes.
constexpr int kAmxRows = 32, kAmxGroup = 32;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
// In static memory: GCC 12 drops stores to a local configuration that only ldtilecfg reads.
constexpr TileConfig kTileConfig;

ORCHARD_AMX_BF16 void amx_begin() { _tile_loadconfig(&kTileConfig); }
ORCHARD_AMX_BF16 void amx_end() { _tile_release(); }

ORCHARD_AMX_BF16 void amx_multiply(int64_t kc, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
                                   bool first) {
  const int64_t c_stride = ldc * int64_t(sizeof(float));
  float* const c10 = c + 16 * ldc;
  if (first) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  } else {
    _tile_loadd(0, c, c_stride); _tile_loadd(1, c + 16, c_stride);
    _tile_loadd(2, c10, c_stride); _tile_loadd(3, c10 + 16, c_stride);
  }
  for (int64_t k0 = 0; k0 < kc; k0 += kAmxGroup) {
    const uint16_t* ak = a + k0 * kAmxRows;  // 32 rows of 32 k values
    const uint16_t* bk = b + k0 * kPanelCols;  // 16 k pairs of 32 columns
    _tile_loadd(4, ak, 64); _tile_loadd(5, ak + 16 * kAmxGroup, 64);
    _tile_loadd(6, bk, 4 * kPanelCols); _tile_loadd(7, bk + 16 * 2, 4 * kPanelCols);
    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, c_stride); _tile_stored(1, c + 16, c_stride);
  _tile_stored(2, c10, c_stride); _tile_stored(3, c10 + 16, c_stride);
}

constexpr MicroKernel kAvx512Kernel{kAvxRows, 2, avx512_multiply, nothing, nothing};
constexpr MicroKernel kAmxKernel{kAmxRows, kAmxGroup, amx_multiply, amx_begin, amx_end};

// ---- blocking ----------------------------------------------------------------------------------
// A task computes an MC x NC block of one product, in KC chunks of K. The b panel of a chunk
// (KC x 32 bf16 = 32 KiB) stays in L1 (48 KiB on Sapphire Rapids) while the a panels of the block
// (MC x KC = 128 KiB) stream from L2 past it; the block's float32 sums (MC x NC = 128 KiB) and the
// chunk of b's block (KC x NC = 256 KiB) fit in L2 beside them (2 MiB on Sapphire Rapids, 1 MiB on
// Zen 4). A longer chunk reloads the sums less often: with AMX, KC = 512 beat 256 on 1024^3 and on
// GPT-2's shapes. An MC x NC block is also the unit of work split across threads: 1024 x 1024 gives
// 32 tasks.
constexpr int64_t kChunkK = 512;  // a multiple of every kernel's group
constexpr int64_t kBlockRows = 128, kBlockCols = 256;
constexpr int64_t kMinTaskFlops = int64_t(1) << 21;
constexpr int64_t kPackSlice = 64;  // k values per packing task: a multiple of every kernel's group

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Plain vector types stand in for intrinsics whose GCC 12 versions trip -Wmaybe-uninitialized.
using U16x16 = uint16_t __attribute__((vector_size(32)));
using U32x16 = uint32_t __attribute__((vector_size(64)));

// Rows l and l + 1 of a row-major b, 32 columns each, as the 32 k pairs of a b panel.
ORCHARD_AVX512_BF16 void interleave_pair(const uint16_t* row0, const uint16_t* row1, uint16_t* dst) {
  static constexpr auto indices = [] {  // element i of a pair-interleaved half: row i % 2, column i / 2
    std::array<std::array<uint16_t, 32>, 2> idx{};
    for (int half = 0; half < 2; ++half)
      for (int i = 0; i < 32; ++i) idx[size_t(half)][size_t(i)] = uint16_t(i % 2 * 32 + half * 16 + i / 2);
    return idx;
  }();
  const __m512i r0 = _mm512_loadu_si512(row0), r1 = _mm512_loadu_si512(row1);
  for (int half = 0; half < 2; ++half)
    _mm512_storeu_si512(dst + 32 * half,
                        _mm512_permutex2var_epi16(r0, _mm512_loadu_si512(indices[size_t(half)].data()), r1));
}

// 32 k values of 32 rows of a column-major a (row r of value l at src[r + l * sk]) as an AMX a panel's
// block: each row's 32 values contiguous. Per 16 rows, the k pairs are joined into 32-bit lanes
// (pair p of row r in lane r of m[p]), then the 16 x 16 lanes are transposed in four rounds that
// swap the off-diagonal s x s blocks (s = 8, 4, 2, 1) of each 2s x 2s block.
ORCHARD_AVX512_BF16 void transpose_block(const uint16_t* src, int64_t sk, uint16_t* dst) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int h = 0; h < 2; ++h) {
    __m512i m[16];
    for (int p = 0; p < 16; ++p) {
      U16x16 lo, hi;
      std::memcpy(&lo, src + 2 * p * sk + 16 * h, sizeof lo);
      std::memcpy(&hi, src + (2 * p + 1) * sk + 16 * h, sizeof hi);
      m[p] = __m512i(__builtin_convertvector(lo, U32x16) | __builtin_convertvector(hi, U32x16) << 16);
    }
    for (int s = 8; s >= 1; s /= 2) {
      const __mmask16 upper = _mm512_test_epi32_mask(lanes, _mm512_set1_epi32(s));  // lanes of the right block
      const __m512i take_left = _mm512_mask_add_epi32(lanes, upper, lanes, _mm512_set1_epi32(16 - s));
      const __m512i take_right = _mm512_mask_add_epi32(_mm512_add_epi32(lanes, _mm512_set1_epi32(s)), upper, lanes,
                                                       _mm512_set1_epi32(16));
      for (int i = 0; i < 16; ++i)
        if (!(i & s)) {
          const __m512i top = _mm512_permutex2var_epi32(m[i], take_left, m[i + s]);
          m[i + s] = _mm512_permutex2var_epi32(m[i], take_right, m[i + s]);
          m[i] = top;
        }
    }
    for (int r = 0; r < 16; ++r) _mm512_storeu_si512(dst + (16 * h + r) * kAmxGroup, m[r]);
  }
}

// Packs k values [begin, end) of rows [0, rows) of a matrix whose element (r, l) is
// src[r * sr + l * sk] into a panel of `panel_rows` rows (see the layout above), zero-padded to
// panel_rows rows and up to k value `padded_end`; `begin` is a multiple of the group.
void pack_panel(const uint16_t* src, int64_t sr, int64_t sk, int64_t rows, int64_t begin, int64_t end,
                int64_t padded_end, int panel_rows, int group, uint16_t* dst) {
  if (rows < panel_rows || end < padded_end)
    std::fill(dst + begin * panel_rows, dst + padded_end * panel_rows, uint16_t(0));
  for (int64_t l0 = begin; l0 < end; l0 += group) {
    uint16_t* d = dst + l0 * panel_rows;
    const int64_t len = std::min<int64_t>(group, end - l0);
    if (sk == 1) {  // each row's k values are contiguous
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t g = 0; g < len; ++g) d[r * group + g] = src[r * sr + l0 + g];
    } else if (sr == 1 && len == 2 && rows == kPanelCols && panel_rows == kPanelCols) {  // a whole b panel
      interleave_pair(src + l0 * sk, src + (l0 + 1) * sk, d);
    } else if (sr == 1 && len == kAmxGroup && rows == kAmxRows && panel_rows == kAmxRows) {  // a whole AMX a block
      transpose_block(src + l0 * sk, sk, d);
    } else {  // the rows of each k are strided (contiguous when sr == 1)
      for (int64_t g = 0; g < len; ++g)
        for (int64_t r = 0; r < rows; ++r) d[r * group + g] = src[r * sr + (l0 + g) * sk];
    }
  }
}

// out rows (+)= the float32 block c, rounded to bfloat16 (to nearest even; NaN stays NaN).

ORCHARD_AVX512_BF16 void store_block(const float* c, int64_t ldc, uint16_t* out, int64_t ldo, int64_t rows,
                                     int64_t cols, bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 mask = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(mask, c + r * ldc + j);
      uint16_t* o = out + r * ldo + j;
      if (accumulate) {
        const U32x16 old = __builtin_convertvector((U16x16)_mm256_maskz_loadu_epi16(mask, o), U32x16);
        v = _mm512_add_ps(v, (__m512)(old << 16));
      }
      const U32x16 bits = (U32x16)v;
      const U32x16 rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
      const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      const __m512i top = _mm512_mask_mov_epi32((__m512i)rounded, nan, (__m512i)((bits >> 16) | 0x40u));
      _mm512_mask_cvtepi32_storeu_epi16(o, mask, top);
    }
}

void run_kernel(const MicroKernel& kern, const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  const int mr = kern.mr, nr = kPanelCols;
  const int64_t kpad = round_up(k, kern.group);
  const int64_t a_panels = (m + mr - 1) / mr, b_panels = (n + nr - 1) / nr;
  const int64_t a_count = a.strides()[0] == 0 ? 1 : batch, b_count = b.strides()[0] == 0 ? 1 : batch;
  const int64_t a_panel_size = mr * kpad, b_panel_size = nr * kpad;
  Tensor packed = Tensor::empty({a_count * a_panels * a_panel_size + b_count * b_panels * b_panel_size},
                                DType::BFloat16);
  uint16_t* const pa = reinterpret_cast<uint16_t*>(packed.data());
  uint16_t* const pb = pa + a_count * a_panels * a_panel_size;
  const auto* a_data = reinterpret_cast<const uint16_t*>(a.data());
  const auto* b_data = reinterpret_cast<const uint16_t*>(b.data());
  const Strides &sa = a.strides(), &sb = b.strides();

  // Every panel of a (rows of a) and of b (columns of b: the transposed view of b), a slice of k
  // values of all the panels of one matrix at a time, so that a row-major matrix is read row by row.
  const int64_t slices = (kpad + kPackSlice - 1) / kPackSlice;
  parallel_for((a_count + b_count) * slices, grain_for(kPackSlice * std::max(m, n)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / slices, begin = t % slices * kPackSlice, padded_end = std::min(kpad, begin + kPackSlice);
      const int64_t end = std::min(k, padded_end);
      if (i < a_count)
        for (int64_t p = 0, r0 = 0; p < a_panels; ++p, r0 += mr)
          pack_panel(a_data + i * sa[0] + r0 * sa[1], sa[1], sa[2], std::min<int64_t>(mr, m - r0), begin, end,
                     padded_end, mr, kern.group, pa + (i * a_panels + p) * a_panel_size);
      else
        for (int64_t p = 0, c0 = 0; p < b_panels; ++p, c0 += nr)
          pack_panel(b_data + (i - a_count) * sb[0] + c0 * sb[2], sb[2], sb[1], std::min<int64_t>(nr, n - c0), begin,
                     end, padded_end, nr, 2, pb + ((i - a_count) * b_panels + p) * b_panel_size);
    }
  });

  const int64_t block_rows = round_up(kBlockRows, mr), block_cols = round_up(kBlockCols, nr);
  const int64_t row_blocks = (m + block_rows - 1) / block_rows, col_blocks = (n + block_cols - 1) / block_cols;
  auto* const out_data = reinterpret_cast<uint16_t*>(out.data());
  auto run = [&](int64_t t0, int64_t t1) {
    std::vector<float> sums(size_t(block_rows * block_cols));
    kern.begin();
    for (int64_t t = t0; t < t1; ++t) {  // task t: block (rb, cb) of product i, row blocks fastest
      const int64_t i = t / (row_blocks * col_blocks), cb = t / row_blocks % col_blocks, rb = t % row_blocks;
      const int64_t r0 = rb * block_rows, c0 = cb * block_cols;
      const int64_t rows = std::min(block_rows, m - r0), cols = std::min(block_cols, n - c0);
      const uint16_t* a_block = pa + ((a_count == 1 ? 0 : i) * a_panels + r0 / mr) * a_panel_size;
      const uint16_t* b_block = pb + ((b_count == 1 ? 0 : i) * b_panels + c0 / nr) * b_panel_size;
      for (int64_t k0 = 0; k0 < kpad; k0 += kChunkK) {
        const int64_t kc = std::min(kChunkK, kpad - k0);
        for (int64_t jc = 0; jc < cols; jc += nr)
          for (int64_t ic = 0; ic < rows; ic += mr)
            kern.multiply(kc, a_block + ic / mr * a_panel_size + k0 * mr, b_block + jc / nr * b_panel_size + k0 * nr,
                          sums.data() + ic * block_cols + jc, block_cols, k0 == 0);
      }
      store_block(sums.data(), block_cols, out_data + (i * m + r0) * n + c0, n, rows, cols, accumulate);
    }
    kern.end();
  };
  const int64_t task_flops = 2 * block_rows * block_cols * kpad;
  parallel_for(batch * row_blocks * col_blocks, std::max<int64_t>(1, kMinTaskFlops / task_flops), run);
}

bool cpu_has_amx_bf16() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool tile = edx & (1u << 24), bf16 = edx & (1u << 22);
#if defined(__linux__)
  // Linux keeps the tile registers' 8 KiB of state off until the process asks for it.
  constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
  return tile && bf16 && syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
#else
  return false;
#endif
}

}  // namespace

bool bf16_gemm_supported(Bf16Gemm path) {
  static const bool avx512 = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  static const bool amx = avx512 && cpu_has_amx_bf16();
  switch (path) {
    case Bf16Gemm::Widened: return true;
    case Bf16Gemm::Avx512Bf16: return avx512;
    case Bf16Gemm::Amx: return amx;
  }
  return false;
}

#else  // no kernels for this processor

bool bf16_gemm_supported(Bf16Gemm path) { return path == Bf16Gemm::Widened; }

#endif

namespace {

constexpr Bf16Gemm kPaths[] = {Bf16Gemm::Widened, Bf16Gemm::Avx512Bf16, Bf16Gemm::Amx};  // slowest first
constexpr const char* kPathNames[] = {"widened", "avx512bf16", "amx"};

// The fastest supported path, or the one ORCHARD_BF16_GEMM names (to compare the paths, or to
// test the fallback from Python).
Bf16Gemm initial_path() {
  if (const char* env = std::getenv("ORCHARD_BF16_GEMM")) {
    for (Bf16Gemm path : kPaths)
      if (std::strcmp(env, bf16_gemm_name(path)) == 0) {
        ORCHARD_CHECK(bf16_gemm_supported(path), RuntimeError, "ORCHARD_BF16_GEMM=", env,
                      ": this processor lacks that bfloat16 matmul path");
        return path;
      }
    throw RuntimeError(detail::concat("ORCHARD_BF16_GEMM=", env, ": expected widened, avx512bf16 or amx"));
  }
  Bf16Gemm best = Bf16Gemm::Widened;
  for (Bf16Gemm path : kPaths)
    if (bf16_gemm_supported(path)) best = path;
  return best;
}

std::atomic<Bf16Gemm>& chosen_path() {
  static std::atomic<Bf16Gemm> path{initial_path()};
  return path;
}

}  // namespace

const char* bf16_gemm_name(Bf16Gemm path) { return kPathNames[int(path)]; }

Bf16Gemm bf16_gemm_path() { return chosen_path().load(std::memory_order_relaxed); }

void use_bf16_gemm_path(Bf16Gemm path) {
  ORCHARD_CHECK(bf16_gemm_supported(path), RuntimeError, "bfloat16 matmul: this processor lacks the ",
                bf16_gemm_name(path), " path; check bf16_gemm_supported first");
  chosen_path().store(path, std::memory_order_relaxed);
}

void matmul_bf16(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
#ifdef ORCHARD_BF16_KERNELS
  switch (bf16_gemm_path()) {
    case Bf16Gemm::Amx: return run_kernel(kAmxKernel, a, b, out, accumulate);
    case Bf16Gemm::Avx512Bf16: return run_kernel(kAvx512Kernel, a, b, out, accumulate);
    case Bf16Gemm::Widened: break;
  }
#else
  (void)a, (void)b, (void)out, (void)accumulate;
#endif
  throw RuntimeError("bfloat16 matmul: no packed kernel runs on this processor; multiply widens instead");
}

}  // namespace orchard::cpu
