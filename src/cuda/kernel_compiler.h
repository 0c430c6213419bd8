// Compiles Orchard's Metal kernels for NVIDIA GPUs at run time: each kernel family (metal/<family>.metal)
// is one CUDA C++ translation unit, generated at build time by tools/cuda_codegen.py with an
// `extern "C"` entry point per kernel named by its host name (ABI: src/cuda/include/entry_points.h),
// which NVRTC compiles to PTX against the CUDA version of <metal_stdlib> (src/cuda/include). The
// sources and headers are embedded, so nothing is read from the source tree at run time, and NVRTC
// is loaded with dlopen on first use, so building needs no CUDA. The CUDA backend compiles a family
// when it first needs one of its kernels.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace orchard::cuda {

struct KernelFamilySource {
  const char* name;            // the .metal file's stem
  const char* source;          // the translation unit NVRTC compiles
  const char* const* kernels;  // the host names of its entry points
  size_t kernel_count;
};

struct ShimHeader {
  const char* name;  // as the sources #include it
  const char* text;
};

// Generated into cuda_kernel_sources.cpp.
extern const KernelFamilySource kKernelFamilySources[];
extern const size_t kKernelFamilySourceCount;

// The modules of the native kernels (src/cuda/kernels/*.cu, native_modules.cpp): CUDA sources written
// for NVIDIA GPUs, which replace some of the families' kernels on the CUDA device (cuda_backend.cpp).
// They compile, and are cached, as the families do.
extern const KernelFamilySource kFlashAttentionForwardModule, kFlashAttentionBackwardModule;
extern const KernelFamilySource* const kNativeModules[];
extern const size_t kNativeModuleCount;
extern const ShimHeader kShimHeaders[];
extern const size_t kShimHeaderCount;

// The family named `name`, or of the kernel with host name `kernel`; nullptr when there is none.
const KernelFamilySource* find_kernel_family(const std::string& name);
const KernelFamilySource* kernel_family_of(const std::string& kernel);

// What NVRTC makes of a family: PTX for a virtual architecture, which the driver compiles further
// when it loads it, or a CUBIN, machine code for one GPU generation, which it loads as it is (and
// which runs on older drivers than PTX of the same NVRTC does).
enum class KernelCode { Ptx, Cubin };

// The code of `family` for compute capability `arch` (80: A100, 90: H100 and H200), with one entry
// point per kernel of the family. Raises orchard::RuntimeError with NVRTC's log when the family does
// not compile, or saying where NVRTC was looked for when it cannot be loaded. Thread-safe: families
// may compile in parallel.
std::string compile_kernel_family(const KernelFamilySource& family, int arch, KernelCode code = KernelCode::Ptx);

// What compile_kernel_family hands NVRTC.
std::vector<std::string> compile_options(int arch, KernelCode code);

// compile_kernel_family's CUBIN through an on-disk cache (kernel_cache.cpp), so that a process
// compiles a family only when no earlier one did with the same sources, options and NVRTC.
std::string cached_kernel_family(const KernelFamilySource& family, int arch);


// NVRTC's version as major * 1000 + minor * 10 (12090 for 12.9), loading it (raises as above).
int nvrtc_version();

}  // namespace orchard::cuda
