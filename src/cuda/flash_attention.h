// FlashAttention-2 forward on tensor cores for the CUDA device: the backend runs an
// attention_forward_<dtype>_d<DT> launch (src/metal/plan_attention.cpp) of a float16 or bfloat16
// problem through the native kernel of src/cuda/kernels/flash_attention_forward.cu instead of the
// portable kernel, whose 8x8 float simdgroup matrices CUDA can only emulate. It writes what the
// portable kernel writes (out in the input dtype, the float32 natural-log lse), so the portable
// backward runs on its outputs.
#pragma once

#include <string>
#include <vector>

#include "dispatch.h"
#include "kernel_compiler.h"

namespace orchard::cuda {

// What a native kernel needs of the CUDA backend (cuda_backend.cpp implements it).
class NativeLauncher {
 public:
  // The GPU's compute capability, major * 10 + minor.
  virtual int arch() const = 0;
  // Launches entry point `kernel` of `module` (one of kNativeModules, compiled and loaded on first
  // use) in order on the legacy default stream, with cuLaunchKernel's kernelParams and no dynamic
  // shared memory.
  virtual void launch(const KernelFamilySource& module, const char* kernel, metal::Size3 groups,
                      metal::Size3 threads, void** params) = 0;

 protected:
  ~NativeLauncher() = default;
};

// The host names (metal::attention_forward_kernel) of the forward launches of dtype `t` that
// cuda_flash_attention_forward may take: the tiers of the head dims it runs.
std::vector<std::string> flash_attention_forward_kernels(DType t);

// Runs the forward launch `d` of dtype `t` (args q, k, v, mask or lse, out, lse,
// AttentionKernelParams) with the native kernel, and returns true; or returns false, having done
// nothing, where it does not take the launch: a dtype other than float16 and bfloat16, a head dim
// other than 32, 64, 96 and 128, a mask, dropout, a GPU older than sm_80, operands not 16-byte
// aligned, or a batch above CUDA's 65535 grid rows. Raises RuntimeError when compiling or launching
// fails.
bool cuda_flash_attention_forward(const metal::Dispatch& d, DType t, NativeLauncher& launcher);

}  // namespace orchard::cuda
