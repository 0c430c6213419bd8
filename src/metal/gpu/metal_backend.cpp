// The Backend on Apple GPUs: C++ glue over Apple's metal-cpp (third_party/metal-cpp) that carries
// out the launches the plans describe, and decides nothing itself. Objects are held in
// NS::SharedPtr (RetainPtr for what Metal returns autoreleased, TransferPtr for what `new*`
// returns), and every entry point drains its own autorelease pool.
//
// Ordering. Launches and copies are encoded, under one mutex, into the single open command buffer.
// Each thread takes a command queue from a small pool; when a thread encodes while another queue's
// buffer is open, that buffer is committed first. Committed buffers are chained through one
// MTLSharedEvent: buffer n waits for value n-1 before it runs and signals n at its end. So the GPU
// runs the work in the order it was encoded, whichever thread encoded it, and a tensor written from
// one thread is safe to read from another. (One open buffer per thread could not give this order:
// two open buffers cannot both come first.)
//
// Batching. The open buffer is committed once it holds kLaunchesPerCommit launches or the plans'
// work estimates (Dispatch::work) of its launches pass kWorkPerCommit, whichever comes first.
//
// Errors. A failed command buffer records its message in its completed handler and signals its
// event value from the CPU, so the buffers chained behind it never wait forever. The next
// synchronize(), dispatch() or copy() raises the message as a RuntimeError.
#include <dispatch/dispatch.h>

#include <Foundation/Foundation.hpp>
#include <Metal/Metal.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "dispatch.h"
#include "errors.h"
#include "metal_library.h"

namespace orchard::metal {

namespace {

constexpr int kQueues = 4;  // command queues dealt out to the calling threads

// A command buffer is committed at whichever of these comes first:
// - 64 launches: the GPU starts a buffer only once it is committed, so a cap on tiny launches
//   keeps it busy while the CPU encodes the next ones;
// - 2^34 (~1.7e10) estimated operations: about 7 ms on an M1 (~2.6 TFLOP/s, the smallest GPU the
//   kernels run on) at full speed, and some tens of ms for the kernels that reach a tenth of it
//   (attention backward, integer matmul). macOS's GPU watchdog ends a command buffer that runs for
//   seconds, so a buffer stays two orders of magnitude under it, while a commit's fixed cost (tens
//   of microseconds) stays under 1% of the work it carries. One launch alone can still exceed the
//   budget: it is then committed on its own.
constexpr int kLaunchesPerCommit = 64;
constexpr uint64_t kWorkPerCommit = uint64_t(1) << 34;
constexpr uint64_t kCopyWorkPerByte = kWorkPerThread / 8;  // a blit, as a thread moving 8 bytes

int queue_slot() {  // this thread's queue: threads are dealt the pool's queues in turn
  static std::atomic<unsigned> next{0};
  thread_local const int slot = int(next.fetch_add(1) % kQueues);
  return slot;
}

class GpuBackend final : public Backend {
 public:
  explicit GpuBackend(MTL::Device* device)
      : device_(NS::RetainPtr(device)), library_(device, {}), event_(NS::TransferPtr(device->newSharedEvent())) {
    for (Queue& q : queues_) q.queue = NS::TransferPtr(device->newCommandQueue());
  }
  bool ready() const {
    return event_ && std::all_of(std::begin(queues_), std::end(queues_), [](const Queue& q) { return bool(q.queue); });
  }

  // Shared storage: one allocation the CPU and the GPU both see (unified memory). Buffers made by the
  // device are hazard-tracked by default, so Metal orders the launches that touch one.
  void* allocate(size_t nbytes) override {
    if (nbytes > device_->maxBufferLength()) return nullptr;
    auto buffer = NS::TransferPtr(device_->newBuffer(std::max<size_t>(nbytes, 1), MTL::ResourceStorageModeShared));
    if (!buffer) return nullptr;
    void* contents = buffer->contents();
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    buffers_[contents] = std::move(buffer);
    return contents;
  }

  // Command buffers retain the buffers they use: queued work may still use this one safely.
  void deallocate(void* base) override {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    buffers_.erase(base);
  }

  void dispatch(const Dispatch& d) override {
    raise_recorded_error();
    if (d.groups.count() == 0 || d.threads.count() == 0) return;
    AutoreleasePool pool;
    encode(d);
  }

  void copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) override {
    raise_recorded_error();
    if (nbytes == 0) return;
    const bool overlap = dst_base == src_base && dst_offset < src_offset + nbytes && src_offset < dst_offset + nbytes;
    if ((dst_offset | src_offset | nbytes) % 4 != 0 || overlap) {
      // A blit on macOS needs offsets and size in multiples of 4, and overlapping ranges are
      // undefined for it: copy on the CPU (shared memory) once the queued work is done.
      synchronize();
      std::memmove(static_cast<char*>(dst_base) + dst_offset, static_cast<char*>(src_base) + src_offset, nbytes);
      return;
    }
    AutoreleasePool pool;
    MTL::Buffer* dst = buffer_for(dst_base);
    MTL::Buffer* src = buffer_for(src_base);
    if (!dst || !src) throw RuntimeError("a Metal copy between memory that is not all Metal device memory");
    std::lock_guard<std::mutex> lock(encode_mutex_);
    blit_encoder()->copyFromBuffer(src, src_offset, dst, dst_offset, nbytes);
    count_encoded(nbytes * kCopyWorkPerByte);
  }

  void synchronize() override {
    std::vector<NS::SharedPtr<MTL::CommandBuffer>> last;
    uint64_t upto = 0;
    {
      std::lock_guard<std::mutex> lock(encode_mutex_);
      AutoreleasePool pool;
      commit_open();
      for (Queue& q : queues_) {
        if (q.last) last.push_back(std::move(q.last));
        q.last.reset();  // hold no reference once waited for, so the buffers it retains can be freed
      }
      upto = committed_;
    }
    for (const auto& buffer : last) buffer->waitUntilCompleted();
    {
      // Completed handlers run on Metal's threads and may trail waitUntilCompleted: wait until all
      // the buffers committed so far have reported, so that no failure goes unseen.
      std::unique_lock<std::mutex> lock(status_mutex_);
      handled_cv_.wait(lock, [&] { return handled_ >= upto; });
    }
    library_.save_archive();
    raise_recorded_error();
  }

  bool emulated() const override { return false; }

  // Up to half the working set Metal recommends for the GPU (about two thirds of the Mac's memory)
  // in freed buffers: a training step's transient tensors come back from the cache in the next
  // step, and memory pressure empties it sooner.
  size_t cache_budget() const override { return size_t(device_->recommendedMaxWorkingSetSize() / 2); }

  void on_memory_pressure(std::function<void()> release) override {
    dispatch_source_t source = dispatch_source_create(DISPATCH_SOURCE_TYPE_MEMORYPRESSURE, 0,
                                                      DISPATCH_MEMORYPRESSURE_WARN | DISPATCH_MEMORYPRESSURE_CRITICAL,
                                                      dispatch_get_global_queue(QOS_CLASS_UTILITY, 0));
    if (!source) return;
    dispatch_source_set_event_handler(source, ^{
      release();
    });
    dispatch_resume(source);  // never cancelled: the backend lives as long as the process
  }

 private:
  struct Queue {
    NS::SharedPtr<MTL::CommandQueue> queue;
    NS::SharedPtr<MTL::CommandBuffer> last;  // the last buffer committed to it, until synchronize() takes it
  };
  struct Open {  // the command buffer being encoded, if any
    NS::SharedPtr<MTL::CommandBuffer> buffer;
    NS::SharedPtr<MTL::ComputeCommandEncoder> compute;
    NS::SharedPtr<MTL::BlitCommandEncoder> blit;
    int slot = -1;
    int encoded = 0;
    uint64_t work = 0;
  };

  void encode(const Dispatch& d) {
    MTL::ComputePipelineState* state = library_.pipeline(d.kernel);
    auto kernel = [&] { return "Metal kernel '" + d.kernel + "'"; };  // for messages
    if (d.threads.count() > state->maxTotalThreadsPerThreadgroup())
      throw RuntimeError(kernel() + " takes at most " + std::to_string(state->maxTotalThreadsPerThreadgroup()) +
                         " threads per threadgroup, not " + std::to_string(d.threads.count()));
    std::vector<NS::UInteger> shared;  // threadgroup memory lengths, rounded up to multiples of 16 as required
    NS::UInteger shared_total = state->staticThreadgroupMemoryLength();
    for (uint32_t n : d.threadgroup_memory) {
      shared.push_back((NS::UInteger(n) + 15) / 16 * 16);
      shared_total += shared.back();
    }
    if (shared_total > device_->maxThreadgroupMemoryLength())
      throw RuntimeError(kernel() + " needs " + std::to_string(shared_total) +
                         " bytes of threadgroup memory; the GPU has " +
                         std::to_string(device_->maxThreadgroupMemoryLength()));
    std::vector<MTL::Buffer*> buffers(d.args.size());
    for (size_t i = 0; i < d.args.size(); ++i) {
      if (d.args[i].base) buffers[i] = buffer_for(d.args[i].base);
      if (d.args[i].base && !buffers[i])
        throw RuntimeError("argument " + std::to_string(i) + " of " + kernel() + " is not Metal device memory");
    }

    std::lock_guard<std::mutex> lock(encode_mutex_);
    MTL::ComputeCommandEncoder* encoder = compute_encoder();
    encoder->setComputePipelineState(state);
    for (NS::UInteger i = 0; i < d.args.size(); ++i) {
      const std::vector<uint8_t>& bytes = d.args[i].bytes;
      if (d.args[i].base) {
        encoder->setBuffer(buffers[i], d.args[i].offset, i);
      } else if (bytes.empty()) {  // a null buffer
        encoder->setBuffer(nullptr, 0, i);
      } else if (bytes.size() < 4096) {  // setBytes takes less than 4 KB
        encoder->setBytes(bytes.data(), bytes.size(), i);
      } else {  // a one-off buffer, kept alive by the command buffer
        auto constants = NS::TransferPtr(device_->newBuffer(bytes.data(), bytes.size(), MTL::ResourceStorageModeShared));
        if (!constants) throw RuntimeError("cannot allocate the constants of " + kernel());
        encoder->setBuffer(constants.get(), 0, i);
      }
    }
    for (NS::UInteger i = 0; i < shared.size(); ++i) encoder->setThreadgroupMemoryLength(shared[i], i);
    encoder->dispatchThreadgroups(MTL::Size(d.groups.x, d.groups.y, d.groups.z),
                                  MTL::Size(d.threads.x, d.threads.y, d.threads.z));
    count_encoded(d.work);
  }

  // The buffer behind one of our allocations, or nullptr. The map holds it while we encode: a
  // tensor cannot be freed while one of its launches is being encoded.
  MTL::Buffer* buffer_for(void* base) {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    auto it = buffers_.find(base);
    return it == buffers_.end() ? nullptr : it->second.get();
  }

  // With encode_mutex_ held from here on. The open command buffer, on this thread's queue: another
  // queue's open buffer is committed first (see the top of the file).
  MTL::CommandBuffer* command_buffer(int slot) {
    if (open_.buffer && open_.slot != slot) commit_open();
    if (!open_.buffer) {
      open_.buffer = NS::RetainPtr(queues_[slot].queue->commandBuffer());
      if (!open_.buffer) throw RuntimeError("cannot create a Metal command buffer");
      open_.slot = slot;
      open_.buffer->encodeWait(event_.get(), committed_);  // run after every buffer committed so far
    }
    return open_.buffer.get();
  }

  // The open buffer's encoder of one kind (compute or blit), made after ending the other kind's.
  template <typename Encoder, typename Make> Encoder* open_encoder(NS::SharedPtr<Encoder>& open, Make make) {
    MTL::CommandBuffer* buffer = command_buffer(queue_slot());
    if (!open) {
      end_encoding();
      open = NS::RetainPtr(make(buffer));
      if (!open) throw RuntimeError("cannot create a Metal command encoder");
    }
    return open.get();
  }
  MTL::ComputeCommandEncoder* compute_encoder() {
    return open_encoder(open_.compute, [](MTL::CommandBuffer* b) { return b->computeCommandEncoder(); });
  }
  MTL::BlitCommandEncoder* blit_encoder() {
    return open_encoder(open_.blit, [](MTL::CommandBuffer* b) { return b->blitCommandEncoder(); });
  }

  void end_encoding() {
    if (open_.compute) open_.compute->endEncoding();
    if (open_.blit) open_.blit->endEncoding();
    open_.compute.reset();
    open_.blit.reset();
  }

  void count_encoded(uint64_t work) {
    open_.work += work;
    if (++open_.encoded >= kLaunchesPerCommit || open_.work >= kWorkPerCommit) commit_open();
  }

  void commit_open() {
    if (!open_.buffer) return;
    end_encoding();
    const uint64_t ticket = ++committed_;
    open_.buffer->encodeSignalEvent(event_.get(), ticket);
    GpuBackend* backend = this;  // never destroyed
    NS::SharedPtr<MTL::SharedEvent> event = event_;
    open_.buffer->addCompletedHandler([backend, event, ticket](MTL::CommandBuffer* buffer) {
      if (buffer->status() == MTL::CommandBufferStatusError) {
        AutoreleasePool pool;
        backend->record_error(describe(buffer->error()));
        event->setSignaledValue(ticket);  // in case its own signal never ran (the value only ever grows)
      }
      backend->mark_handled(ticket);
    });
    open_.buffer->commit();
    queues_[open_.slot].last = std::move(open_.buffer);
    open_ = Open{};
  }

  void record_error(const std::string& message) {
    std::lock_guard<std::mutex> lock(status_mutex_);
    if (error_.empty()) error_ = message;  // the first failure is the one worth reporting
  }

  // Handlers may run out of commit order: handled_ is the largest n such that buffers 1..n reported.
  void mark_handled(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(status_mutex_);
    reported_.insert(ticket);
    while (!reported_.empty() && *reported_.begin() == handled_ + 1) {
      reported_.erase(reported_.begin());
      ++handled_;
    }
    handled_cv_.notify_all();
  }

  // Raised once; later work runs again (on whatever the failed buffer left in memory).
  void raise_recorded_error() {
    std::string message;
    {
      std::lock_guard<std::mutex> lock(status_mutex_);
      message.swap(error_);
    }
    if (!message.empty()) throw RuntimeError("a Metal command buffer failed: " + message);
  }

  NS::SharedPtr<MTL::Device> device_;
  KernelLibrary library_;
  NS::SharedPtr<MTL::SharedEvent> event_;

  std::mutex buffers_mutex_;
  std::unordered_map<void*, NS::SharedPtr<MTL::Buffer>> buffers_;  // contents pointer -> its buffer

  std::mutex encode_mutex_;  // guards queues_, open_ and committed_
  Queue queues_[kQueues];
  Open open_;
  uint64_t committed_ = 0;  // the event value the last committed command buffer signals

  std::mutex status_mutex_;  // guards error_, reported_ and handled_
  std::condition_variable handled_cv_;
  std::string error_;
  std::set<uint64_t> reported_;
  uint64_t handled_ = 0;
};

}  // namespace

Backend* make_gpu_backend() {
  const char* emulate = std::getenv("ORCHARD_METAL_EMULATE");
  if (emulate && *emulate && std::strcmp(emulate, "0") != 0) return nullptr;  // the emulator serves Metal
  if (!__builtin_available(macOS 14.0, *)) return nullptr;  // the kernels are MSL 3.1
  AutoreleasePool pool;
  auto device = NS::TransferPtr(MTL::CreateSystemDefaultDevice());
  // The kernels need an Apple family 7 GPU (M1) or later with Metal 3 (simdgroup matrices, bfloat).
  // The paravirtual GPU of macOS virtual machines, CI runners included, has neither and runs such
  // kernels wrong: it counts as no GPU (the macOS workflow still compiles every kernel on it).
  if (!device || !device->supportsFamily(MTL::GPUFamilyApple7) || !device->supportsFamily(MTL::GPUFamilyMetal3))
    return nullptr;
  // Never deleted: completed handlers may still call into it while the process exits.
  auto* backend = new GpuBackend(device.get());
  if (backend->ready()) return backend;
  delete backend;
  return nullptr;
}

}  // namespace orchard::metal
