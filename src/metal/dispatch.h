// What one kernel launch needs, decided by the portable plan code (src/metal/plan_*.cpp) and carried
// out by a Backend: the Objective-C++ glue on Apple GPUs (metal_backend.mm) or the emulator
// (emulator/emulated_backend.cpp). Nothing here depends on Metal headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

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
  // Scratch tensors a plan allocated for its launches: held until the launches are encoded (the
  // emulator runs them then), after which the queue's order protects their reuse.
  std::vector<Tensor> keep_alive;
};

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
  Dispatch grid(Size3 groups, Size3 threads) {
    d_.groups = groups;
    d_.threads = threads;
    return std::move(d_);
  }

 private:
  Dispatch d_;
};

// Executes launches on one device. Memory is CPU-visible (Metal shared storage), so host reads only
// need synchronize().
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
  virtual bool emulated() const = 0;
};

// The backend this build serves Metal with, or nullptr when there is none (no usable GPU, or a
// build without Metal and without the emulator).
Backend* make_backend();

}  // namespace orchard::metal
