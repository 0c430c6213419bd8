// Compiles every Metal kernel family from source on this Mac's GPU, whatever the GPU (the hosted
// runners' paravirtual one included, which compiles though make_gpu_backend does not run kernels on
// it), builds the pipeline of every kernel in those libraries and of every name a plan can request,
// and reports each failure by name. Exit status 1 when anything failed. Built with ORCHARD_METAL;
// the macOS workflow runs it.
#include <Foundation/Foundation.hpp>
#include <Metal/Metal.hpp>

#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "kernel_library.h"
#include "metal_library.h"
#include "plans.h"

using namespace orchard::metal;

int main() {
  AutoreleasePool pool;
  auto device = NS::TransferPtr(MTL::CreateSystemDefaultDevice());
  if (!device) {
    std::fprintf(stderr, "no Metal device\n");
    return 1;
  }
  std::printf("device: %s\n", device->name()->utf8String());
  KernelLibrary library(device.get(), {/*from_source=*/true, /*archive=*/false});
  std::vector<std::string> failures;

  const std::vector<std::string> planned = planned_kernel_names();
  std::set<std::string> kernels(planned.begin(), planned.end());
  for (size_t f = 0; f < kKernelFamilyCount; ++f) {
    try {
      const NS::Array* names = library.family_library(f)->functionNames();
      for (NS::UInteger i = 0; i < names->count(); ++i) kernels.insert(names->object<NS::String>(i)->utf8String());
      std::printf("compiled %s.metal: %lu kernels\n", kKernelFamilies[f].name, static_cast<unsigned long>(names->count()));
    } catch (const std::exception& e) {
      failures.push_back(e.what());
    }
  }
  size_t built = 0;
  for (const std::string& kernel : kernels) {
    try {
      library.pipeline(kernel);
      ++built;
    } catch (const std::exception& e) {
      failures.push_back(kernel + ": " + e.what());
    }
  }
  std::printf("built %zu of %zu pipelines\n", built, kernels.size());
  for (const std::string& failure : failures) std::fprintf(stderr, "FAILED %s\n", failure.c_str());
  return failures.empty() ? 0 : 1;
}
