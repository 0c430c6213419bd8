// The CUDA sources of the kernels (src/cuda/kernel_compiler.h) without NVRTC: every kernel a plan
// can request has an entry point, in the family the Metal library files it under, and a missing
// NVRTC is an exception that says how to get it. (ctest nvrtc_compile_all compiles them all.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "errors.h"
#include "kernel_compiler.h"
#include "kernel_library.h"
#include "plans.h"

using namespace orchard;

TEST(CudaKernels, FamiliesAreTheMetalLibrarys) {
  ASSERT_EQ(cuda::kKernelFamilySourceCount, metal::kKernelFamilyCount);
  for (size_t f = 0; f < metal::kKernelFamilyCount; ++f)
    EXPECT_STREQ(cuda::kKernelFamilySources[f].name, metal::kKernelFamilies[f].name);
  EXPECT_EQ(cuda::find_kernel_family("no_such_family"), nullptr);
}

TEST(CudaKernels, EveryPlannedKernelHasAnEntryPointInItsFamily) {
  for (const std::string& name : metal::planned_kernel_names()) {
    const cuda::KernelFamilySource* family = cuda::kernel_family_of(name);
    ASSERT_NE(family, nullptr) << name;
    EXPECT_EQ(family, cuda::find_kernel_family(metal::kernel_family(name)->name)) << name;
  }
  EXPECT_EQ(cuda::kernel_family_of("no_such_kernel"), nullptr);
}

TEST(CudaKernels, MissingNvrtcSaysWhereItLooked) {
  setenv("ORCHARD_NVRTC_LIBRARY", "/nonexistent/libnvrtc.so.12", 1);
  try {
    cuda::compile_kernel_family(cuda::kKernelFamilySources[0], 90);
    ADD_FAILURE() << "compiled without NVRTC";
  } catch (const RuntimeError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("/nonexistent/libnvrtc.so.12"), std::string::npos) << message;
    EXPECT_NE(message.find("pip install nvidia-cuda-nvrtc-cu12"), std::string::npos) << message;
  }
  unsetenv("ORCHARD_NVRTC_LIBRARY");
}
