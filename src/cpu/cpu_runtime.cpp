// Registers the CPU runtime for Device::CPU when the library loads. The library must be linked
// whole (CMake's WHOLE_ARCHIVE) for this static initialiser to run.
#include "cpu_runtime.h"

namespace orchard::cpu {

namespace {

const bool registered = [] {
  static CpuRuntime runtime;
  register_runtime(Device::CPU, &runtime);
  return true;
}();

}  // namespace

}  // namespace orchard::cpu
