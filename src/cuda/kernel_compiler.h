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
extern const ShimHeader kShimHeaders[];
extern const size_t kShimHeaderCount;

// The family named `name`, or of the kernel with host name `kernel`; nullptr when there is none.
const KernelFamilySource* find_kernel_family(const std::string& name);
const KernelFamilySource* kernel_family_of(const std::string& kernel);

// The PTX of `family` for compute capability `arch` (80: A100, 90: H100 and H200), with one
// `.entry` per kernel of the family. Raises orchard::RuntimeError with NVRTC's log when the
// family does not compile, or saying where NVRTC was looked for when it cannot be loaded.
// Thread-safe: families may compile in parallel.
std::string compile_kernel_family(const KernelFamilySource& family, int arch);

// NVRTC's version as major * 1000 + minor * 10 (12090 for 12.9), loading it (raises as above).
int nvrtc_version();

}  // namespace orchard::cuda
