#include "runtime.h"

#include <atomic>

#include "errors.h"
#include "loop.h"
#include "tensor.h"

namespace orchard {

namespace {
std::atomic<Runtime*> g_runtimes[kNumDevices];
std::atomic<bool> g_emulated[kNumDevices];
}  // namespace

void Runtime::matmul_accumulate(const Tensor& a, const Tensor& b, const Tensor& out) {
  Tensor product = Tensor::empty(out.shape(), out.dtype(), out.device());
  matmul(a, b, product);
  binary(BinaryOp::Add, make_loop(out, {out, product}));
}

void Runtime::matmul_pair(const Tensor& a1, const Tensor& b1, const Tensor& out1, const Tensor& a2,
                          const Tensor& b2, const Tensor& out2) {
  matmul(a1, b1, out1);
  matmul(a2, b2, out2);
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
