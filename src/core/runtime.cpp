#include "runtime.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include "errors.h"
#include "loop.h"
#include "tensor.h"

namespace orchard {

namespace {
std::atomic<Runtime*> g_runtimes[kNumDevices];
std::atomic<bool> g_emulated[kNumDevices];
std::atomic<bool> g_tf32{false};
Runtime* (*g_factories[kNumDevices])();
std::once_flag g_made[kNumDevices];

Runtime* registered(Device device) {
  if (Runtime* (*make)() = g_factories[int(device)])
    std::call_once(g_made[int(device)], [&] { register_runtime(device, make()); });
  return g_runtimes[int(device)].load(std::memory_order_acquire);
}
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

std::unique_ptr<DeviceEvent> Runtime::make_event(bool, bool) {
  throw RuntimeError(detail::concat("device '", device_name(device()), "' has no events: they are CUDA's (device 'cuda')"));
}

DeviceStreams& Runtime::streams() {
  throw RuntimeError(detail::concat("device '", device_name(device()), "' has no streams: they are CUDA's (device 'cuda')"));
}

void Runtime::record_stream(void*, DeviceStream&) { streams(); }

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
  Runtime* r = registered(device);
  ORCHARD_CHECK(r, RuntimeError, "device '", device_name(device),
                "' is not available in this build of Orchard",
                device == Device::Metal
                    ? " (Metal needs an Apple GPU, or a build with ORCHARD_METAL_EMULATOR=ON); use 'cpu'"
                : device == Device::CUDA ? " (CUDA needs an NVIDIA GPU, its driver, and NVRTC); use 'cpu'"
                                         : "");
  return *r;
}

bool has_runtime(Device device) { return registered(device) != nullptr; }

bool runtime_started(Device device) { return g_runtimes[int(device)].load(std::memory_order_acquire) != nullptr; }

void register_runtime(Device device, Runtime* runtime) {
  g_runtimes[int(device)].store(runtime, std::memory_order_release);
}

void register_runtime_factory(Device device, Runtime* (*make)()) { g_factories[int(device)] = make; }

void set_float32_matmul_tf32(bool allowed) { g_tf32 = allowed; }
bool float32_matmul_tf32() { return g_tf32; }

void set_runtime_emulated(Device device, bool emulated) { g_emulated[int(device)] = emulated; }
bool runtime_is_emulated(Device device) { return g_emulated[int(device)]; }

}  // namespace orchard
