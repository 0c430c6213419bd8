// FlashAttention-2 on tensor cores for the CUDA device: the backend runs the forward, dQ and dK/dV
// launches (attention_forward/dq/dkv_<dtype>_d<DT>, src/metal/plan_attention.cpp) of a float16 or
// bfloat16 problem through the native kernels of src/cuda/kernels/flash_attention_{forward,backward}.cu
// instead of the portable kernels, whose 8x8 float simdgroup matrices CUDA can only emulate. They read
// and write what the portable kernels do (the forward's out and float32 natural-log lse; the
// backward's float32 delta from the portable attention_delta kernel), so either side may run alone.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
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
  // use) in order on the current stream, with cuLaunchKernel's kernelParams and `shared`
  // bytes of dynamic shared memory (opting in above 48 KiB).
  virtual void launch(const KernelFamilySource& module, const char* kernel, metal::Size3 groups,
                      metal::Size3 threads, uint32_t shared, void** params) = 0;

 protected:
  ~NativeLauncher() = default;
};

enum class AttentionPass { Forward, Dq, Dkv };

// The host names of the launches of dtype `t` that cuda_flash_attention may take, with their pass:
// the tiers of the head dims it runs.
std::vector<std::pair<std::string, AttentionPass>> flash_attention_kernels(DType t);

// Runs launch `d` of pass `pass` and dtype `t` (args as plan_attention.cpp binds them, the
// AttentionKernelParams last) with the native kernel, and returns true; or returns false, having done
// nothing, where it does not take the launch: a dtype other than float16 and bfloat16, a head dim
// other than 32, 64, 96 and 128, a mask, dropout, a GPU older than sm_80, operands not 16-byte
// aligned, or heads or a batch above CUDA's 65535 grid rows. Raises RuntimeError when compiling or
// launching fails.
bool cuda_flash_attention(const metal::Dispatch& d, DType t, AttentionPass pass, NativeLauncher& launcher);

}  // namespace orchard::cuda
