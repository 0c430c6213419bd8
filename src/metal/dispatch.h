// What one kernel launch needs, decided by the portable plan code (src/metal/plan_*.cpp) and carried
// out by a Backend: the metal-cpp glue on Apple GPUs (gpu/metal_backend.cpp) or the emulator
// (emulator/emulated_backend.cpp). Nothing here depends on Metal headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime.h"
#include "tensor.h"

namespace orchard::metal {

struct Size3 {
  uint32_t x = 1, y = 1, z = 1;
  uint64_t count() const { return uint64_t(x) * y * z; }
};

// One [[buffer(i)]] argument: device memory (the allocation the data lives in, as Backend::allocate
// returned it, plus a byte offset) or constant bytes copied when the launch is encoded.
struct KernelArg {
  void* base = nullptr;
  size_t offset = 0;
  std::vector<uint8_t> bytes;  // used when base is null
};

struct Dispatch {
  std::string kernel;                        // the kernel's host name in the embedded library
  Size3 groups;                              // threadgroups per grid
  Size3 threads;                             // threads per threadgroup
  std::vector<KernelArg> args;               // args[i] is [[buffer(i)]]
  std::vector<uint32_t> threadgroup_memory;  // bytes of [[threadgroup(i)]]
  // Estimated cost in arithmetic operations (a multiply-add counts 2): the GPU backend commits its
  // command buffer once the work queued in it passes a budget, so that no buffer runs long enough
  // to meet the GPU watchdog. Plans whose threads each do far more than one element's work set it
  // (matmul, attention); where they leave it 0, Launch::grid counts kWorkPerThread for every thread.
  uint64_t work = 0;
  // Scratch tensors a plan allocated for its launches: held until the launches are encoded (the
  // emulator runs them then), after which the queue's order protects their reuse.
  std::vector<Tensor> keep_alive;
};

// The default work of one thread: an element read, computed and written. A memory access costs
// the GPU far more than an operation (an M1 does ~2.6 TFLOP/s but moves 68 GB/s, ~40 operations a
// byte), so a thread that moves some 8 bytes counts as a few hundred operations.
inline constexpr uint64_t kWorkPerThread = 256;

// Builds a Dispatch argument by argument, in [[buffer(i)]] order.
class Launch {
 public:
  explicit Launch(std::string kernel) { d_.kernel = std::move(kernel); }

  Launch& buffer(const Tensor& t) { return buffer(t.storage()->data(), size_t(t.offset()) * t.itemsize()); }
  Launch& buffer(void* base, size_t byte_offset) {
    d_.args.push_back({base, byte_offset, {}});
    return *this;
  }
  template <typename T> Launch& constants(const T& value) {
    KernelArg a;
    a.bytes.resize(sizeof(T));
    std::memcpy(a.bytes.data(), &value, sizeof(T));
    d_.args.push_back(std::move(a));
    return *this;
  }
  Launch& threadgroup_memory(uint32_t nbytes) {
    d_.threadgroup_memory.push_back(nbytes);
    return *this;
  }
  Launch& work(uint64_t operations) {  // overrides the default estimate (see Dispatch::work)
    d_.work = operations;
    return *this;
  }
  Dispatch grid(Size3 groups, Size3 threads) {
    d_.groups = groups;
    d_.threads = threads;
    if (d_.work == 0) d_.work = groups.count() * threads.count() * kWorkPerThread;
    return std::move(d_);
  }

 private:
  Dispatch d_;
};

// Executes launches on one device. Host code reaches its memory only through read() and write()
// (Metal's shared storage allows them in place; a discrete GPU's memory would not).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual void* allocate(size_t nbytes) = 0;  // nullptr when out of memory
  virtual void deallocate(void* base) = 0;
  // Whether the runtime may round buffer sizes up to size classes and keep freed buffers for reuse;
  // the emulator says no, handing out every buffer fresh at its exact size.
  virtual bool cache_buffers() const { return true; }
  virtual void dispatch(const Dispatch& d) = 0;
  // A device-side copy of nbytes between allocations (a blit on Metal).
  virtual void copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) = 0;
  // Commits queued work and waits for it; raises the error of a failed command buffer.
  virtual void synchronize() = 0;
  // nbytes between an allocation and host memory, after the queued work. The defaults read and write
  // in place, as shared storage (Metal's, the emulator's) allows.
  virtual void read(const void* base, size_t offset, void* host, size_t nbytes) {
    synchronize();
    std::memcpy(host, static_cast<const uint8_t*>(base) + offset, nbytes);
  }
  virtual void write(void* base, size_t offset, const void* host, size_t nbytes) {
    synchronize();
    std::memcpy(static_cast<uint8_t*>(base) + offset, host, nbytes);
  }
  virtual bool emulated() const = 0;
  // An event after the work dispatched so far (Runtime::make_event), or nullptr where the backend
  // has none.
  virtual std::unique_ptr<DeviceEvent> make_event(bool timing, bool blocking) {
    (void)timing, (void)blocking;
    return nullptr;
  }
  // The device's streams (Runtime::streams), or nullptr where the backend has one queue.
  virtual DeviceStreams* streams() { return nullptr; }
  // Bytes of freed allocations the runtime may keep for reuse. The GPU backend sizes it from the
  // device's recommended working set; elsewhere it is a fixed kDefaultCacheBudget.
  virtual size_t cache_budget() const { return kDefaultCacheBudget; }
  // Calls `release` whenever the system runs short of memory (never, where there is no such signal).
  virtual void on_memory_pressure(std::function<void()> release) { (void)release; }

  static constexpr size_t kDefaultCacheBudget = size_t(4) << 30;
};

// The backend this build serves Metal with, or nullptr when there is none (no usable GPU, or a
// build without Metal and without the emulator).
Backend* make_backend();

// The Metal runtime running its plans on `backend`, whose freed buffers it caches up to the
// backend's cache budget and releases under memory pressure. metal_runtime.cpp registers one on
// make_backend()'s backend for Device::Metal, src/cuda one on its CUDA backend for Device::CUDA;
// tests make others.
std::unique_ptr<Runtime> make_metal_runtime(Backend& backend, Device device = Device::Metal);

}  // namespace orchard::metal
