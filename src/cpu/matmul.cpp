#include <algorithm>
#include <climits>
#include <type_traits>

#ifdef ORCHARD_BLAS_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#include "cpu_runtime.h"
#include "matmul_bf16.h"
#include "parallel.h"

// The scipy-openblas wheels prefix every symbol (scipy_cblas_sgemm); a system BLAS does not.
#ifndef ORCHARD_BLAS_PREFIX
#define ORCHARD_BLAS_PREFIX
#endif
#define ORCHARD_BLAS_PASTE(prefix, name) prefix##name
#define ORCHARD_BLAS_EXPAND(prefix, name) ORCHARD_BLAS_PASTE(prefix, name)
#define ORCHARD_BLAS(name) ORCHARD_BLAS_EXPAND(ORCHARD_BLAS_PREFIX, name)

#ifndef ORCHARD_BLAS_ACCELERATE
// OpenBLAS's thread control, weak: another CBLAS may not have it.
extern "C" void ORCHARD_BLAS(openblas_set_num_threads)(int) __attribute__((weak));
#endif

namespace orchard::cpu {

namespace {

int blas_int(int64_t v) {
  ORCHARD_CHECK(v <= INT_MAX, RuntimeError, "matmul: size or stride ", v,
                " does not fit the 32-bit integers of the linked BLAS");
  return int(v);
}

// How a row-major CBLAS call reads the matrices of a [batch, rows, cols] operand in place.
struct MatrixLayout {
  bool transposed;  // stored column-major
  int ld;
};

MatrixLayout matrix_layout(const Tensor& t) {
  const int64_t rows = t.shape()[1], cols = t.shape()[2], sr = t.strides()[1], sc = t.strides()[2];
  // The stride of a size-1 dim is arbitrary; BLAS only needs a leading dim >= the other extent.
  if ((sc == 1 || cols == 1) && (sr >= cols || rows == 1))
    return {false, blas_int(rows == 1 ? std::max<int64_t>(cols, 1) : sr)};
  return {true, blas_int(cols == 1 ? std::max<int64_t>(rows, 1) : sc)};
}

// c = a @ b + beta * c, beta 0 or 1.
void gemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb, float beta,
          float* c, int ldc) {
  ORCHARD_BLAS(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                            n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double beta,
          double* c, int ldc) {
  ORCHARD_BLAS(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                            n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Whether the pool splits each product: OpenBLAS is then made single-threaded, since its own
// workers would busy-wait after every call on the cores the pool's elementwise kernels need.
// Accelerate, or a BLAS without openblas_set_num_threads, keeps its own threading.
bool split_products() {
#ifdef ORCHARD_BLAS_ACCELERATE
  return false;
#else
  static const bool split = [] {
    if (!ORCHARD_BLAS(openblas_set_num_threads)) return false;
    ORCHARD_BLAS(openblas_set_num_threads)(1);
    return true;
  }();
  return split;
#endif
}

// Floating-point operations below which a product is not worth splitting across threads.
constexpr int64_t kMinTaskFlops = int64_t(1) << 21;

// out[i] (+)= a[i] @ b[i] for every batch entry i, reading a and b in place. The output rows (or
// columns, when there are more of them) of all entries form one range split across the pool;
// each task runs one single-threaded gemm per entry it covers.
template <typename T>
void matmul_blas(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  const T beta = accumulate ? T(1) : T(0);
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  const MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  const T* pa = a.data_as<T>();
  const T* pb = b.data_as<T>();
  T* pc = out.data_as<T>();
  const bool by_cols = n > m;
  const int64_t extent = by_cols ? n : m;
  // Element offsets of row r and of column c of a matrix.
  auto row = [](const MatrixLayout& l, int64_t r) { return l.transposed ? r : r * l.ld; };
  auto col = [](const MatrixLayout& l, int64_t c) { return l.transposed ? c * l.ld : c; };
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin / extent; i * extent < end; ++i) {
      const int64_t r0 = std::max(begin - i * extent, int64_t(0)), r1 = std::min(end - i * extent, extent);
      const T* ai = pa + i * a.strides()[0];
      const T* bi = pb + i * b.strides()[0];
      T* ci = pc + i * m * n;
      if (by_cols)
        gemm(la.transposed, lb.transposed, blas_int(m), blas_int(r1 - r0), blas_int(k), ai, la.ld,
             bi + col(lb, r0), lb.ld, beta, ci + r0, blas_int(n));
      else
        gemm(la.transposed, lb.transposed, blas_int(r1 - r0), blas_int(n), blas_int(k), ai + row(la, r0), la.ld,
             bi, lb.ld, beta, ci + r0 * n, blas_int(n));
    }
  };
  if (!split_products()) return run(0, batch * extent);
  parallel_for(batch * extent, grain_for(2 * k * (by_cols ? m : n), kMinTaskFlops), run);
}

// t as a float32 [batch, rows, cols] tensor; a broadcast batch (stride 0) is converted once.
template <typename T>
Tensor widen(const Tensor& t) {
  const int64_t rows = t.shape()[1], cols = t.shape()[2];
  const int64_t batch = t.strides()[0] == 0 ? 1 : t.shape()[0];
  const Strides& s = t.strides();
  Tensor w = Tensor::empty({batch, rows, cols}, DType::Float32);
  const T* src = t.data_as<T>();
  float* dst = w.data_as<float>();
  parallel_for(batch * rows, grain_for(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = src + (r / rows) * s[0] + (r % rows) * s[1];
      for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = float(row[j * s[2]]);
    }
  });
  return w.expand({t.shape()[0], rows, cols});
}

// 16-bit floats: float32 copies of the operands through sgemm, rounded once at the end.
template <typename T>
void matmul_widened(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  Tensor c = Tensor::empty(out.shape(), DType::Float32);
  matmul_blas<float>(widen<T>(a), widen<T>(b), c, false);
  const float* src = c.data_as<float>();
  T* dst = out.data_as<T>();
  parallel_for(out.numel(), grain_for(1), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = T(accumulate ? float(dst[i]) + src[i] : src[i]);
  });
}

// Integers (no BLAS): i-k-j loops over output rows split across threads, tiled so that a tile of
// b stays in cache while the rows of a stream past it.
template <typename T>
void matmul_integer(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  constexpr int64_t kTile = 128;
  const int64_t m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  const Strides &sa = a.strides(), &sb = b.strides();
  const T* pa = a.data_as<T>();
  const T* pb = b.data_as<T>();
  T* pc = out.data_as<T>();
  parallel_for(out.shape()[0] * m, grain_for(n * k), [&](int64_t r0, int64_t r1) {
    if (!accumulate) std::fill(pc + r0 * n, pc + r1 * n, T(0));
    for (int64_t j0 = 0; j0 < n; j0 += kTile) {
      const int64_t j1 = std::min(n, j0 + kTile);
      for (int64_t k0 = 0; k0 < k; k0 += kTile) {
        const int64_t k1 = std::min(k, k0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          const T* arow = pa + (r / m) * sa[0] + (r % m) * sa[1];
          const T* bmat = pb + (r / m) * sb[0];
          T* crow = pc + r * n;
          for (int64_t kk = k0; kk < k1; ++kk) {
            const T av = arow[kk * sa[2]];
            const T* brow = bmat + kk * sb[1];
            for (int64_t j = j0; j < j1; ++j) crow[j] += av * brow[j * sb[2]];
          }
        }
      }
    }
  });
}

void multiply(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {  // out (+)= a @ b
  ORCHARD_DISPATCH(out.dtype(), {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) matmul_blas<T>(a, b, out, accumulate);
    else if constexpr (std::is_same_v<T, BFloat16>) {
      if (bf16_gemm_path() == Bf16Gemm::Widened) matmul_widened<T>(a, b, out, accumulate);
      else matmul_bf16(a, b, out, accumulate);
    } else if constexpr (std::is_floating_point_v<compute_t<T>>) matmul_widened<T>(a, b, out, accumulate);
    else matmul_integer<T>(a, b, out, accumulate);
  });
}

}  // namespace

void CpuRuntime::matmul(const MatmulArgs& a) { multiply(a.a, a.b, a.out, false); }
void CpuRuntime::matmul_accumulate(const MatmulArgs& a) { multiply(a.a, a.b, a.out, true); }

// On two threads, each product runs whole on its own thread (calls inside a parallel region run
// inline): two single-threaded products side by side beat each product split in two by 10-25% on
// the gradients of a transformer's linear layers. More threads split each product instead.
void CpuRuntime::matmul_pair(const MatmulArgs& first, const MatmulArgs& second) {
  if (num_threads() != 2) {
    matmul(first);
    return matmul(second);
  }
  parallel_for(2, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) matmul(i == 0 ? first : second);
  });
}

}  // namespace orchard::cpu
