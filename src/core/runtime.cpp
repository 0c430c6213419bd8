#include "runtime.h"

#include <atomic>
#include <cstring>

#include "errors.h"
#include "loop.h"
#include "tensor.h"

namespace orchard {

namespace {
std::atomic<Runtime*> g_runtimes[kNumDevices];
std::atomic<bool> g_emulated[kNumDevices];
}  // namespace

void Runtime::read(const Tensor& src, void* host) {
  synchronize();
  std::memcpy(host, src.data(), src.nbytes());
}

void Runtime::write(const Tensor& dst, const void* host) {
  synchronize();  // queued kernels may still read what this overwrites
  std::memcpy(dst.data(), host, dst.nbytes());
}

void Runtime::matmul_accumulate(const MatmulArgs& a) {
  Tensor product = Tensor::empty(a.out.shape(), a.out.dtype(), a.out.device());
  matmul({a.a, a.b, product});
  binary(BinaryOp::Add, make_loop(a.out, {a.out, product}));
}

void Runtime::matmul_pair(const MatmulArgs& first, const MatmulArgs& second) {
  matmul(first);
  matmul(second);
}

int64_t ElementwiseLoop::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Runtime& runtime_for(Device device) {
  Runtime* r = g_runtimes[int(device)].load(std::memory_order_acquire);
  ORCHARD_CHECK(r, RuntimeError, "device '", device_name(device),
                "' is not available in this build of Orchard",
                device == Device::Metal
                    ? " (Metal needs an Apple GPU, or a build with ORCHARD_METAL_EMULATOR=ON); use 'cpu'"
                : device == Device::CUDA ? " (CUDA needs an NVIDIA GPU, its driver, and NVRTC); use 'cpu'"
                                         : "");
  return *r;
}

bool has_runtime(Device device) { return g_runtimes[int(device)].load() != nullptr; }

void register_runtime(Device device, Runtime* runtime) {
  g_runtimes[int(device)].store(runtime, std::memory_order_release);
}

void set_runtime_emulated(Device device, bool emulated) { g_emulated[int(device)] = emulated; }
bool runtime_is_emulated(Device device) { return g_emulated[int(device)]; }

}  // namespace orchard
