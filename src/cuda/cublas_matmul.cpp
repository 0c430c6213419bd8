#include "cublas_matmul.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "errors.h"
#include "matmul_params.h"

namespace orchard::cuda {

namespace {

// The part of cuBLAS's C API used here, declared after its documentation (cublas_api.h) so that
// building needs no CUDA; every call returns a cublasStatus_t, 0 being CUBLAS_STATUS_SUCCESS.
struct CublasContext;
constexpr int kOpN = 0, kOpT = 1;                           // cublasOperation_t
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;            // cudaDataType
constexpr int kCompute32F = 68, kCompute32FFastTF32 = 77;  // cublasComputeType_t
constexpr int kGemmDefault = -1;                            // cublasGemmAlgo_t

struct Cublas {
  int (*create)(CublasContext**) = nullptr;
  int (*gemm)(CublasContext*, int, int, int, int, int, const void*, const void*, int, int, long long, const void*,
              int, int, long long, const void*, void*, int, int, long long, int, int, int) = nullptr;
  const char* (*status_string)(int) = nullptr;
  int (*set_stream)(CublasContext*, void*) = nullptr;
};

// ORCHARD_CUBLAS_LIBRARY when set (orchard.cuda sets it to the nvidia-cublas wheel's library when
// one is installed), else what the dynamic loader finds. nullopt without one, having said so once.
const std::optional<Cublas>& cublas() {
  static const std::optional<Cublas> loaded = []() -> std::optional<Cublas> {
    std::string tried;
    const char* configured = std::getenv("ORCHARD_CUBLAS_LIBRARY");
    for (const char* path : {configured, "libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      if (!path || !*path) continue;
      void* library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (!library) {
        tried += detail::concat("\n  ", dlerror());
        continue;
      }
      Cublas api;
      api.create = reinterpret_cast<decltype(api.create)>(dlsym(library, "cublasCreate_v2"));
      api.gemm = reinterpret_cast<decltype(api.gemm)>(dlsym(library, "cublasGemmStridedBatchedEx"));
      api.status_string = reinterpret_cast<decltype(api.status_string)>(dlsym(library, "cublasGetStatusString"));
      api.set_stream = reinterpret_cast<decltype(api.set_stream)>(dlsym(library, "cublasSetStream_v2"));
      if (!api.create || !api.gemm || !api.status_string || !api.set_stream) {
        tried += detail::concat("\n  ", path, " lacks the cuBLAS 11.4+ API");
        continue;
      }
      return api;
    }
    std::fprintf(stderr,
                 "orchard: cuBLAS was not found, so CUDA matmuls run Orchard's portable kernel, far slower "
                 "(`pip install orchard[cuda]` installs cuBLAS):%s\n",
                 tried.c_str());
    return std::nullopt;
  }();
  return loaded;
}

// A handle per stream, as PyTorch keeps: a handle's workspace must not serve two streams at once.
// Called with the matmul mutex held.
CublasContext* handle_for(const Cublas& api, void* stream) {
  static std::unordered_map<void*, CublasContext*> handles;
  CublasContext*& handle = handles[stream];
  if (!handle) {
    int status = api.create(&handle);
    if (status == 0) status = api.set_stream(handle, stream);
    if (status != 0) {
      handle = nullptr;
      throw RuntimeError(detail::concat("cuda: cublasCreate failed: ", api.status_string(status)));
    }
  }
  return handle;
}

// How cuBLAS reads a column-major operand of rows x cols whose element (r, c) sits at r * rs + c * cs:
// as it is (op N, leading dimension cs) when rows are unit-strided, transposed (op T, leading
// dimension rs) when columns are. A dimension of size 0 or 1 takes any stride.
struct Layout {
  int op;
  int64_t ld;
};
std::optional<Layout> layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  const int64_t tall = std::max<int64_t>(rows, 1), wide = std::max<int64_t>(cols, 1);
  if (rows <= 1 || rs == 1) {
    const int64_t ld = cols <= 1 ? tall : cs;
    if (ld >= tall) return Layout{kOpN, ld};
  }
  if (cols <= 1 || cs == 1) {
    const int64_t ld = rows <= 1 ? wide : rs;
    if (ld >= wide) return Layout{kOpT, ld};
  }
  return std::nullopt;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

const void* address(const metal::KernelArg& a) { return static_cast<const char*>(a.base) + a.offset; }

}  // namespace

bool cublas_matmul(const metal::Dispatch& d, DType t, void* stream) {
  const std::optional<Cublas>& api = cublas();
  if (!api) return false;
  metal::MatmulParams p;
  std::memcpy(&p, d.args.at(3).bytes.data(), sizeof p);
  // Row-major out[m, n] = a[m, k] b[k, n] is column-major out^T[n, m] = b^T[n, k] a^T[k, m].
  const std::optional<Layout> first = layout(p.n, p.k, p.b_strides[2], p.b_strides[1]);
  const std::optional<Layout> second = layout(p.k, p.m, p.a_strides[2], p.a_strides[1]);
  const int64_t batch = d.groups.z;
  if (!first || !second || !fits_int(p.m) || !fits_int(p.n) || !fits_int(p.k) || !fits_int(first->ld) ||
      !fits_int(second->ld) || !fits_int(batch))
    return false;
  const int type = t == DType::Float32 ? kR32F : t == DType::Float16 ? kR16F : kR16BF;
  const int compute = t == DType::Float32 && float32_matmul_tf32() ? kCompute32FFastTF32 : kCompute32F;
  const float one = 1, zero = 0;  // beta: 1 adds out's values (MatmulParams::accumulate)
  static std::mutex mutex;  // the handles' calls one at a time
  std::lock_guard<std::mutex> lock(mutex);
  const int status =
      api->gemm(handle_for(*api, stream), first->op, second->op, int(p.n), int(p.m), int(p.k), &one, address(d.args[2]), type,
                int(first->ld), p.b_strides[0], address(d.args[1]), type, int(second->ld), p.a_strides[0], p.accumulate ? &one : &zero,
                const_cast<void*>(address(d.args[0])), type, int(p.n), p.m * p.n, int(batch), compute, kGemmDefault);
  if (status != 0)
    throw RuntimeError(detail::concat("cuda: cuBLAS failed on a ", dtype_name(t), " product of ", p.m, " x ", p.k,
                                      " by ", p.k, " x ", p.n, " (batch ", batch, "): ", api->status_string(status)));
  return true;
}

}  // namespace orchard::cuda
