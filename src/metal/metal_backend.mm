// The Backend on Apple GPUs: Objective-C++ glue (ARC) that carries out the launches the plans
// describe, and decides nothing itself.
//
// Ordering. Launches and copies are encoded, under one mutex, into the single open command buffer.
// Each thread takes a command queue from a small pool; when a thread encodes while another queue's
// buffer is open, that buffer is committed first. Committed buffers are chained through one
// MTLSharedEvent: buffer n waits for value n-1 before it runs and signals n at its end. So the GPU
// runs the work in the order it was encoded, whichever thread encoded it, and a tensor written from
// one thread is safe to read from another. (One open buffer per thread could not give this order:
// two open buffers cannot both come first.)
//
// Errors. A failed command buffer records its message in its completed handler and signals its
// event value from the CPU, so the buffers chained behind it never wait forever. The next
// synchronize(), dispatch() or copy() raises the message as a RuntimeError.
#include "dispatch.h"
#include "errors.h"

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

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

namespace orchard::metal {

// Generated from metal/*.metal by tools/metal_codegen.py (see cmake/OrchardMetal.cmake).
extern const char kLibrarySource[];
#ifdef ORCHARD_HAS_METALLIB
extern const unsigned char kMetallib[];
extern const size_t kMetallibSize;
#endif

namespace {

constexpr int kQueues = 4;              // command queues dealt out to the calling threads
constexpr int kLaunchesPerCommit = 64;  // launches and copies batched into one command buffer

std::string describe(NSError* error) {
  const char* text = error ? error.localizedDescription.UTF8String : nullptr;
  return text ? text : "unknown error";
}

// No fast math, so NaN and infinities behave as on the CPU (the metallib is built with
// -fno-fast-math too). macOS 15 replaced fastMathEnabled by mathMode + mathFloatingPointFunctions.
void disable_fast_math(MTLCompileOptions* options) {
#if defined(__MAC_OS_X_VERSION_MAX_ALLOWED) && __MAC_OS_X_VERSION_MAX_ALLOWED >= 150000
  if (@available(macOS 15.0, *)) {
    options.mathMode = MTLMathModeSafe;
    options.mathFloatingPointFunctions = MTLMathFloatingPointFunctionsPrecise;
    return;
  }
#endif
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdeprecated-declarations"
  options.fastMathEnabled = NO;
#pragma clang diagnostic pop
}

int queue_slot() {  // this thread's queue: threads are dealt the pool's queues in turn
  static std::atomic<unsigned> next{0};
  thread_local const int slot = int(next.fetch_add(1) % kQueues);
  return slot;
}

class GpuBackend final : public Backend {
 public:
  explicit GpuBackend(id<MTLDevice> device) : device_(device), event_([device newSharedEvent]) {
    for (Queue& q : queues_) q.queue = [device newCommandQueue];
  }
  bool ready() const {
    return event_ && std::all_of(std::begin(queues_), std::end(queues_), [](const Queue& q) { return q.queue != nil; });
  }

  // Shared storage: one allocation the CPU and the GPU both see (unified memory). Buffers made by the
  // device are hazard-tracked by default, so Metal orders the launches that touch one.
  void* allocate(size_t nbytes) override {
    if (nbytes > device_.maxBufferLength) return nullptr;
    @autoreleasepool {
      id<MTLBuffer> buffer = [device_ newBufferWithLength:std::max<size_t>(nbytes, 1)
                                                  options:MTLResourceStorageModeShared];
      if (!buffer) return nullptr;
      std::lock_guard<std::mutex> lock(buffers_mutex_);
      buffers_[buffer.contents] = buffer;
      return buffer.contents;
    }
  }

  // Command buffers retain the buffers they use: queued work may still use this one safely.
  void deallocate(void* base) override {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    buffers_.erase(base);
  }

  void dispatch(const Dispatch& d) override {
    raise_recorded_error();
    if (d.groups.count() > 0 && d.threads.count() > 0) run_or_throw([&] { return encode(d); });
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
    run_or_throw([&] { return encode_copy(dst_base, dst_offset, src_base, src_offset, nbytes); });
  }

  void synchronize() override {
    std::vector<id<MTLCommandBuffer>> last;
    uint64_t upto = 0;
    {
      std::lock_guard<std::mutex> lock(encode_mutex_);
      @autoreleasepool {
        commit_open();
      }
      for (Queue& q : queues_) {
        if (q.last) last.push_back(q.last);
        q.last = nil;  // hold no reference once waited for, so the buffers it retains can be freed
      }
      upto = committed_;
    }
    for (id<MTLCommandBuffer> buffer : last) [buffer waitUntilCompleted];
    {
      // Completed handlers run on Metal's threads and may trail waitUntilCompleted: wait until all
      // the buffers committed so far have reported, so that no failure goes unseen.
      std::unique_lock<std::mutex> lock(status_mutex_);
      handled_cv_.wait(lock, [&] { return handled_ >= upto; });
    }
    raise_recorded_error();
  }

  bool emulated() const override { return false; }

 private:
  struct Queue {
    id<MTLCommandQueue> queue;
    id<MTLCommandBuffer> last;  // the last buffer committed to it, until synchronize() takes it
  };
  struct Open {  // the command buffer being encoded, if any
    id<MTLCommandBuffer> buffer;
    id<MTLComputeCommandEncoder> compute;
    id<MTLBlitCommandEncoder> blit;
    int slot = -1;
    int encoded = 0;
  };

  // Runs an encoding step in an autorelease pool, so the objects Metal autoreleases are freed at once
  // on any thread, and raises the failure it reports outside the pool (an exception would leave the
  // pool undrained): the helpers below report failures as messages, or nil, never by throwing.
  template <typename Step> static void run_or_throw(Step&& step) {
    std::string failure;
    @autoreleasepool {
      failure = step();
    }
    if (!failure.empty()) throw RuntimeError(failure);
  }

  std::string encode(const Dispatch& d) {  // "" once the launch is encoded
    std::string failure;
    id<MTLComputePipelineState> state = pipeline(d.kernel, failure);
    if (!state) return failure;
    auto kernel = [&] { return "Metal kernel '" + d.kernel + "'"; };  // for messages
    if (d.threads.count() > state.maxTotalThreadsPerThreadgroup)
      return kernel() + " takes at most " + std::to_string(state.maxTotalThreadsPerThreadgroup) +
             " threads per threadgroup, not " + std::to_string(d.threads.count());
    std::vector<NSUInteger> shared;  // threadgroup memory lengths, rounded up to multiples of 16 as required
    NSUInteger shared_total = state.staticThreadgroupMemoryLength;
    for (uint32_t n : d.threadgroup_memory) {
      shared.push_back((NSUInteger(n) + 15) / 16 * 16);
      shared_total += shared.back();
    }
    if (shared_total > device_.maxThreadgroupMemoryLength)
      return kernel() + " needs " + std::to_string(shared_total) + " bytes of threadgroup memory; the GPU has " +
             std::to_string(device_.maxThreadgroupMemoryLength);
    std::vector<id<MTLBuffer>> buffers(d.args.size());
    for (size_t i = 0; i < d.args.size(); ++i) {
      if (d.args[i].base) buffers[i] = buffer_for(d.args[i].base);
      if (d.args[i].base && !buffers[i])
        return "argument " + std::to_string(i) + " of " + kernel() + " is not Metal device memory";
    }

    std::lock_guard<std::mutex> lock(encode_mutex_);
    id<MTLComputeCommandEncoder> encoder = compute_encoder(queue_slot());
    if (!encoder) return "cannot create a Metal command buffer";
    [encoder setComputePipelineState:state];
    for (NSUInteger i = 0; i < d.args.size(); ++i) {
      const std::vector<uint8_t>& bytes = d.args[i].bytes;
      if (d.args[i].base) {
        [encoder setBuffer:buffers[i] offset:d.args[i].offset atIndex:i];
      } else if (bytes.empty()) {  // a null buffer
        [encoder setBuffer:nil offset:0 atIndex:i];
      } else if (bytes.size() < 4096) {  // setBytes: takes less than 4 KB
        [encoder setBytes:bytes.data() length:bytes.size() atIndex:i];
      } else {  // a one-off buffer, kept alive by the command buffer
        id<MTLBuffer> constants = [device_ newBufferWithBytes:bytes.data()
                                                       length:bytes.size()
                                                      options:MTLResourceStorageModeShared];
        [encoder setBuffer:constants offset:0 atIndex:i];
      }
    }
    for (NSUInteger i = 0; i < shared.size(); ++i) [encoder setThreadgroupMemoryLength:shared[i] atIndex:i];
    [encoder dispatchThreadgroups:MTLSizeMake(d.groups.x, d.groups.y, d.groups.z)
            threadsPerThreadgroup:MTLSizeMake(d.threads.x, d.threads.y, d.threads.z)];
    count_encoded();
    return {};
  }

  std::string encode_copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) {
    id<MTLBuffer> dst = buffer_for(dst_base);
    id<MTLBuffer> src = buffer_for(src_base);
    if (!dst || !src) return "a Metal copy between memory that is not all Metal device memory";
    std::lock_guard<std::mutex> lock(encode_mutex_);
    id<MTLBlitCommandEncoder> blit = blit_encoder(queue_slot());
    if (!blit) return "cannot create a Metal command buffer";
    [blit copyFromBuffer:src sourceOffset:src_offset toBuffer:dst destinationOffset:dst_offset size:nbytes];
    count_encoded();
    return {};
  }

  id<MTLBuffer> buffer_for(void* base) {  // nil when base is not one of our allocations
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    auto it = buffers_.find(base);
    return it == buffers_.end() ? nil : it->second;
  }

  // A kernel's pipeline, built on first use; the first one also loads the library.
  id<MTLComputePipelineState> pipeline(const std::string& name, std::string& failure) {
    std::lock_guard<std::mutex> lock(pipelines_mutex_);
    auto it = pipelines_.find(name);
    if (it != pipelines_.end()) return it->second;
    if (!library_ && library_error_.empty()) library_ = load_library(library_error_);
    id<MTLFunction> function = [library_ newFunctionWithName:@(name.c_str())];  // nil when library_ is
    NSError* error = nil;
    id<MTLComputePipelineState> state =
        function ? [device_ newComputePipelineStateWithFunction:function error:&error] : nil;
    if (!library_)
      failure = "cannot build the Metal kernel library: " + library_error_;
    else if (!function)
      failure = "the Metal kernel library has no kernel named '" + name + "'";
    else if (!state)
      failure = "cannot build the pipeline of Metal kernel '" + name + "': " + describe(error);
    else
      pipelines_.emplace(name, state);
    return state;
  }

  // The precompiled metallib when the build embedded one, else the embedded source, compiled now.
  id<MTLLibrary> load_library(std::string& failure) {
    NSError* error = nil;
#ifdef ORCHARD_HAS_METALLIB
    // Wraps the static bytes without copying them (so the destructor has nothing to free).
    dispatch_data_t data =
        dispatch_data_create(kMetallib, kMetallibSize, dispatch_get_global_queue(QOS_CLASS_DEFAULT, 0), ^{});
    if (id<MTLLibrary> library = [device_ newLibraryWithData:data error:&error]) return library;
    // This OS cannot load it (built by a newer toolchain): compile the source instead.
#endif
    MTLCompileOptions* options = [[MTLCompileOptions alloc] init];
    if (@available(macOS 14.0, *)) options.languageVersion = MTLLanguageVersion3_1;
    disable_fast_math(options);
    id<MTLLibrary> library = [device_ newLibraryWithSource:[NSString stringWithUTF8String:kLibrarySource]
                                                   options:options
                                                     error:&error];
    if (!library) failure = describe(error);
    return library;
  }

  // With encode_mutex_ held from here on. The open command buffer, on this thread's queue: another
  // queue's open buffer is committed first (see the top of the file).
  id<MTLCommandBuffer> command_buffer(int slot) {
    if (open_.buffer && open_.slot != slot) commit_open();
    if (!open_.buffer) {
      open_.buffer = [queues_[slot].queue commandBuffer];  // nil on failure: the callers report it
      open_.slot = slot;
      [open_.buffer encodeWaitForEvent:event_ value:committed_];  // run after every buffer committed so far
    }
    return open_.buffer;
  }

  id<MTLComputeCommandEncoder> compute_encoder(int slot) {
    id<MTLCommandBuffer> buffer = command_buffer(slot);
    if (!open_.compute) {
      end_encoding();
      open_.compute = [buffer computeCommandEncoder];  // nil when buffer is
    }
    return open_.compute;
  }

  id<MTLBlitCommandEncoder> blit_encoder(int slot) {
    id<MTLCommandBuffer> buffer = command_buffer(slot);
    if (!open_.blit) {
      end_encoding();
      open_.blit = [buffer blitCommandEncoder];
    }
    return open_.blit;
  }

  void end_encoding() {  // a message to nil does nothing
    [open_.compute endEncoding];
    [open_.blit endEncoding];
    open_.compute = nil;
    open_.blit = nil;
  }

  void count_encoded() {
    if (++open_.encoded >= kLaunchesPerCommit) commit_open();
  }

  void commit_open() {
    if (!open_.buffer) return;
    end_encoding();
    const uint64_t ticket = ++committed_;
    [open_.buffer encodeSignalEvent:event_ value:ticket];
    GpuBackend* backend = this;  // never destroyed
    id<MTLSharedEvent> event = event_;
    [open_.buffer addCompletedHandler:^(id<MTLCommandBuffer> buffer) {
      if (buffer.status == MTLCommandBufferStatusError) {
        @autoreleasepool {
          backend->record_error(describe(buffer.error));
        }
        event.signaledValue = ticket;  // in case its own signal never ran (the value only ever grows)
      }
      backend->mark_handled(ticket);
    }];
    [open_.buffer commit];
    queues_[open_.slot].last = open_.buffer;
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

  id<MTLDevice> device_;
  id<MTLSharedEvent> event_;

  std::mutex buffers_mutex_;
  std::unordered_map<void*, id<MTLBuffer>> buffers_;  // contents pointer -> its buffer

  std::mutex pipelines_mutex_;
  id<MTLLibrary> library_;
  std::string library_error_;  // kept: a library that failed to build is not rebuilt at every launch
  std::unordered_map<std::string, id<MTLComputePipelineState>> pipelines_;

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
  if (@available(macOS 14.0, *)) {  // the kernels are MSL 3.1
    @autoreleasepool {
      id<MTLDevice> device = MTLCreateSystemDefaultDevice();
      // The kernels need an Apple family 7 GPU (M1) or later with Metal 3 (simdgroup matrices,
      // bfloat). The paravirtual GPU of macOS virtual machines, CI runners included, has neither and
      // runs such kernels wrong: it counts as no GPU.
      if (!device || ![device supportsFamily:MTLGPUFamilyApple7] || ![device supportsFamily:MTLGPUFamilyMetal3])
        return nullptr;
      // Never deleted: completed handlers may still call into it while the process exits.
      auto* backend = new GpuBackend(device);
      if (backend->ready()) return backend;
      delete backend;
    }
  }
  return nullptr;
}

}  // namespace orchard::metal
