// The Metal runtime: every primitive becomes launches planned in portable C++ (plans.h) and run by
// a Backend, the metal-cpp glue on an Apple GPU or the emulator elsewhere. Registers itself for
// Device::Metal when the library loads and a backend is available.
#include <algorithm>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "block_cache.h"
#include "plans.h"

namespace orchard::metal {

#ifdef ORCHARD_METAL_GPU
Backend* make_gpu_backend();  // gpu/metal_backend.cpp: nullptr when the machine has no usable GPU
#endif
#ifdef ORCHARD_METAL_EMULATOR
Backend* make_emulated_backend();  // emulator/emulated_backend.cpp
#endif

Backend* make_backend() {
  Backend* backend = nullptr;
#ifdef ORCHARD_METAL_GPU
  backend = make_gpu_backend();
#endif
#ifdef ORCHARD_METAL_EMULATOR
  if (!backend) backend = make_emulated_backend();
#endif
  return backend;
}

namespace {

class MetalRuntime final : public Runtime {
 public:
  // Freed buffers are kept by size class (a new MTLBuffer costs far more than a lookup), up to the
  // backend's cache budget; blocks under 4 KiB round to 256 bytes. Under memory pressure the cache
  // empties: buffers still in queued command buffers live on, since those retain them.
  MetalRuntime(Backend& backend, Device device)
      : device_(device),
        backend_(backend),
        cache_(device_name(device), 256, 1, backend.cache_budget(), [&backend](size_t n) { return backend.allocate(n); },
               [&backend](void* p) { backend.deallocate(p); }),
        exact_(device_name(device), 1, SIZE_MAX, 0, [&backend](size_t n) { return backend.allocate(n); },
               [&backend](void* p) { backend.deallocate(p); }) {
    backend.on_memory_pressure([this] { cache_.release(); });
  }

  Device device() const override { return device_; }
  bool supports(DType t) const override { return is_metal_dtype(t); }
  void* allocate(size_t nbytes) override { return blocks().allocate(nbytes, current_pool()); }
  void deallocate(void* ptr, size_t nbytes) override {
    order_recorded_uses(ptr);
    blocks().deallocate(ptr, nbytes);
  }
  void release_cached_memory() override {
    backend_.synchronize();  // queued work may still use cached buffers
    cache_.release();
  }
  void synchronize() override { backend_.synchronize(); }
  std::unique_ptr<DeviceEvent> make_event(bool timing, bool blocking) override {
    std::unique_ptr<DeviceEvent> event = backend_.make_event(timing, blocking);
    return event ? std::move(event) : Runtime::make_event(timing, blocking);
  }
  DeviceStreams& streams() override {
    DeviceStreams* s = backend_.streams();
    return s ? *s : Runtime::streams();
  }
  void record_stream(void* ptr, DeviceStream& stream) override {
    if (&stream == &stream_of_pool(blocks().pool_of(ptr))) return;
    std::lock_guard<std::mutex> lock(recorded_mutex_);
    std::vector<DeviceStream*>& users = recorded_[ptr];
    if (std::find(users.begin(), users.end(), &stream) == users.end()) users.push_back(&stream);
  }
  void read(const Tensor& src, void* host) override {
    backend_.read(src.storage()->data(), size_t(src.offset()) * src.itemsize(), host, src.nbytes());
  }
  void write(const Tensor& dst, const void* host) override {
    backend_.write(dst.storage()->data(), size_t(dst.offset()) * dst.itemsize(), host, dst.nbytes());
  }

  void copy(const ElementwiseLoop& loop) override {
    const Operand &out = loop.operands[0], &in = loop.operands[1];
    const size_t item = itemsize(out.dtype), nbytes = size_t(loop.numel()) * item;
    const size_t out_offset = size_t(out.offset) * item, in_offset = size_t(in.offset) * item;
    // Contiguous bytes with the 4-byte alignment Metal's blits need: a blit; anything else a kernel.
    const bool contiguous =
        loop.shape.empty() || (loop.shape.size() == 1 && out.strides[0] == 1 && in.strides[0] == 1);
    if (out.dtype == in.dtype && contiguous && nbytes > 0 && (out_offset | in_offset | nbytes) % 4 == 0) {
      backend_.copy(out.storage->data(), out_offset, in.storage->data(), in_offset, nbytes);
      return;
    }
    run(plan_copy(loop));
  }
  void fill(const ElementwiseLoop& loop, Scalar value) override { run(plan_fill(loop, value)); }
  void unary(UnaryOp op, const ElementwiseLoop& loop) override { run(plan_unary(op, loop)); }
  void binary(BinaryOp op, const ElementwiseLoop& loop) override { run(plan_binary(op, loop)); }
  void where(const ElementwiseLoop& loop) override { run(plan_where(loop)); }
#define ORCHARD_METAL_PRIMITIVE(name, Args) \
  void name(const Args& a) override { run(plan_##name(a)); }
  ORCHARD_RUNTIME_PRIMITIVES(ORCHARD_METAL_PRIMITIVE)
#undef ORCHARD_METAL_PRIMITIVE
  void matmul_accumulate(const MatmulArgs& a) override { run(plan_matmul_accumulate(a)); }

 private:
  void run(const Launches& launches) {
    for (const Dispatch& d : launches) backend_.dispatch(d);
  }

  BlockCache& blocks() { return backend_.cache_buffers() ? cache_ : exact_; }

  // The block pool of allocations made now: the current stream's; 0 for the default stream and on
  // devices without streams.
  uintptr_t current_pool() {
    DeviceStreams* s = backend_.streams();
    if (!s) return 0;
    DeviceStream& current = s->current();
    return &current == &s->default_stream() ? 0 : reinterpret_cast<uintptr_t>(&current);
  }
  DeviceStream& stream_of_pool(uintptr_t pool) {
    return pool ? *reinterpret_cast<DeviceStream*>(pool) : streams().default_stream();
  }
  // A freed block that record_stream saw in use on other streams returns to its own stream's pool
  // only once that stream waits for their work queued so far: whatever reuses it runs after them.
  void order_recorded_uses(void* ptr) {
    std::vector<DeviceStream*> users;
    {
      std::lock_guard<std::mutex> lock(recorded_mutex_);
      if (recorded_.empty()) return;
      auto it = recorded_.find(ptr);
      if (it == recorded_.end()) return;
      users = std::move(it->second);
      recorded_.erase(it);
    }
    DeviceStream& owner = stream_of_pool(blocks().pool_of(ptr));
    for (DeviceStream* user : users) {
      std::unique_ptr<DeviceEvent> done = make_event(false, false);
      done->record(user);
      owner.wait(*done);
    }
  }

  Device device_;
  Backend& backend_;
  BlockCache cache_;
  // For backends that want every buffer fresh (the emulator): sizes rounded to 1 byte, nothing kept.
  BlockCache exact_;
  std::mutex recorded_mutex_;
  std::unordered_map<void*, std::vector<DeviceStream*>> recorded_;  // record_stream's, until freed
};

const bool registered = [] {
  Backend* backend = make_backend();
  if (!backend) return false;
  // Never destroyed (as the CPU allocator's cache): tensors may be freed during static teardown,
  // and the cached blocks stay reachable instead of showing up as leaks.
  static Runtime* runtime = make_metal_runtime(*backend).release();
  register_runtime(Device::Metal, runtime);
  set_runtime_emulated(Device::Metal, backend->emulated());
  return true;
}();

}  // namespace

std::unique_ptr<Runtime> make_metal_runtime(Backend& backend, Device device) {
  return std::make_unique<MetalRuntime>(backend, device);
}

}  // namespace orchard::metal
