// The CUDA device: the Metal runtime's plans run unchanged on an NVIDIA GPU through this Backend,
// which launches the same kernels compiled by NVRTC (kernel_compiler.h). The CUDA driver is loaded
// with dlopen, so a build needs no CUDA and a machine without a GPU simply has no "cuda" device.
//
// Work runs in order on the calling thread's current stream (CudaStreams): the legacy default stream
// unless a side stream is set, as in PyTorch. On one stream a launch or a copy starts after the work
// queued before it, as Metal's command queue orders it; events (torch.cuda.Event) order streams.
// Errors of a kernel (a fault) surface at the next call that waits, and are raised there as
// RuntimeError.
//
// Where CUDA has hardware that the portable kernel cannot reach, a native implementation replaces
// the kernel by its host name (Dispatch::kernel), taking the same arguments: float products run
// through cuBLAS (cublas_matmul.h), float16 and bfloat16 attention forward and backward through
// tensor-core FlashAttention kernels compiled from their own CUDA sources (flash_attention.h). The
// driver starts on the first use of the device, not when Orchard is loaded.
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

#include "cublas_matmul.h"
#include "dispatch.h"
#include "errors.h"
#include "flash_attention.h"
#include "kernel_compiler.h"
#include "plans.h"

namespace orchard::cuda {

namespace {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
constexpr int kComputeCapabilityMajor = 75, kComputeCapabilityMinor = 76;  // CUdevice_attribute
constexpr int kMaxSharedPerBlockOptin = 97;
constexpr int kFuncMaxDynamicShared = 8;  // CUfunction_attribute
constexpr CUresult kErrorInitialization = 3;  // CUDA_ERROR_INITIALIZATION_ERROR: what a forked child gets
constexpr CUresult kErrorNotReady = 600;      // CUDA_ERROR_NOT_READY: an event's work is still running
constexpr unsigned kEventBlockingSync = 1, kEventDisableTiming = 2;  // CUevent_flags
constexpr unsigned kStreamNonBlocking = 1;  // CU_STREAM_NON_BLOCKING: unordered with the legacy default stream
constexpr uint32_t kMaxGridYZ = 65535;  // CUDA's limit on a grid's y and z; x takes 2^31 - 1

// The driver functions used, looked up once.
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuDeviceTotalMem)(size_t*, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, size_t);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void*, size_t, CUstream);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void**, void**);
  CUresult (*cuGetErrorString)(CUresult, const char**);
  CUresult (*cuEventCreate)(CUevent*, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float*, CUevent, CUevent);
  CUresult (*cuStreamCreateWithPriority)(CUstream*, unsigned, int);
  CUresult (*cuStreamQuery)(CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuCtxGetStreamPriorityRange)(int*, int*);

  // The driver, or nullptr when this machine has none.
  static const Driver* load() {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return nullptr;
    static Driver d;
    bool complete = true;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      complete = complete && fn;
    };
    get(d.cuInit, "cuInit");
    get(d.cuDeviceGetCount, "cuDeviceGetCount");
    get(d.cuDeviceGet, "cuDeviceGet");
    get(d.cuDeviceGetAttribute, "cuDeviceGetAttribute");
    get(d.cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    get(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    get(d.cuCtxSetCurrent, "cuCtxSetCurrent");
    get(d.cuCtxSynchronize, "cuCtxSynchronize");
    get(d.cuMemAlloc, "cuMemAlloc_v2");
    get(d.cuMemFree, "cuMemFree_v2");
    get(d.cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    get(d.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
    get(d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    get(d.cuModuleLoadData, "cuModuleLoadData");
    get(d.cuModuleGetFunction, "cuModuleGetFunction");
    get(d.cuFuncSetAttribute, "cuFuncSetAttribute");
    get(d.cuLaunchKernel, "cuLaunchKernel");
    get(d.cuGetErrorString, "cuGetErrorString");
    get(d.cuEventCreate, "cuEventCreate");
    get(d.cuEventDestroy, "cuEventDestroy_v2");
    get(d.cuEventRecord, "cuEventRecord");
    get(d.cuEventQuery, "cuEventQuery");
    get(d.cuEventSynchronize, "cuEventSynchronize");
    get(d.cuEventElapsedTime, "cuEventElapsedTime");
    get(d.cuStreamCreateWithPriority, "cuStreamCreateWithPriority");
    get(d.cuStreamQuery, "cuStreamQuery");
    get(d.cuStreamSynchronize, "cuStreamSynchronize");
    get(d.cuStreamWaitEvent, "cuStreamWaitEvent");
    get(d.cuCtxGetStreamPriorityRange, "cuCtxGetStreamPriorityRange");
    return complete ? &d : nullptr;
  }
};

CUdeviceptr device_address(const void* base, size_t offset) {
  return reinterpret_cast<CUdeviceptr>(base) + offset;
}

// Raises RuntimeError for a failed driver call `r`, saying what failed.
template <typename... Context> void check_call(const Driver& d, CUresult r, const Context&... what) {
  if (r == 0) return;
  const char* message = nullptr;
  d.cuGetErrorString(r, &message);
  throw RuntimeError(detail::concat("cuda: ", what..., " failed: ", message ? message : "unknown error", " (", r, ")",
                                    r == kErrorInitialization
                                        ? "; CUDA cannot run in a process forked from one that had started it (as "
                                          "in PyTorch): start DataLoader workers and other children with 'spawn'"
                                        : ""));
}

class CudaStream final : public DeviceStream {
 public:
  CudaStream(const Driver& d, CUstream stream) : d_(d), stream_(stream) {}
  bool query() override {
    const CUresult r = d_.cuStreamQuery(stream_);
    if (r == kErrorNotReady) return false;
    check_call(d_, r, "querying a stream");
    return true;
  }
  void synchronize() override { check_call(d_, d_.cuStreamSynchronize(stream_), "waiting for a stream"); }
  void wait(DeviceEvent& event) override;  // after CudaEvent
  uint64_t handle() const override { return reinterpret_cast<uint64_t>(stream_); }
  CUstream stream() const { return stream_; }

 private:
  const Driver& d_;
  CUstream stream_;
};

// The legacy default stream (handle 0, where all work ran before streams) and pools of side streams,
// 32 per priority as PyTorch's, created on first use and never destroyed. Side streams are
// non-blocking, as PyTorch's: their work is unordered with the default stream's unless events order
// it (Stream.wait_stream).
class CudaStreams final : public DeviceStreams {
 public:
  explicit CudaStreams(const Driver& d) : d_(d), default_(d, nullptr) {}

  DeviceStream& default_stream() override { return default_; }
  DeviceStream& pool_stream(int priority) override {
    std::lock_guard<std::mutex> lock(mutex_);
    int least = 0, greatest = 0;
    check_call(d_, d_.cuCtxGetStreamPriorityRange(&least, &greatest), "reading the stream priorities");
    priority = std::clamp(priority, greatest, least);  // CUDA's order: lower numbers run first
    Pool& pool = pools_[priority];
    if (pool.streams.size() < kPoolSize) {
      CUstream s = nullptr;
      check_call(d_, d_.cuStreamCreateWithPriority(&s, kStreamNonBlocking, priority), "creating a stream");
      pool.streams.push_back(std::make_unique<CudaStream>(d_, s));
      return *pool.streams.back();
    }
    return *pool.streams[pool.next++ % kPoolSize];
  }
  DeviceStream& external(uint64_t handle) override {
    if (handle == 0) return default_;
    std::lock_guard<std::mutex> lock(mutex_);
    std::unique_ptr<CudaStream>& s = externals_[handle];
    if (!s) s = std::make_unique<CudaStream>(d_, reinterpret_cast<CUstream>(handle));
    return *s;
  }
  DeviceStream& current() override { return current_ ? *current_ : default_; }
  void set_current(DeviceStream& stream) override {
    auto* s = dynamic_cast<CudaStream*>(&stream);
    ORCHARD_CHECK(s, RuntimeError, "set_stream: the stream is not a CUDA stream");
    current_ = s == &default_ ? nullptr : s;
  }
  // The driver's stream of `stream`; nullptr: the calling thread's current stream.
  CUstream cuda_stream(DeviceStream* stream) {
    if (!stream) return current_ ? current_->stream() : nullptr;
    auto* s = dynamic_cast<CudaStream*>(stream);
    ORCHARD_CHECK(s, RuntimeError, "record: the stream is not a CUDA stream");
    return s->stream();
  }

 private:
  static constexpr size_t kPoolSize = 32;
  struct Pool {
    std::vector<std::unique_ptr<CudaStream>> streams;
    size_t next = 0;
  };
  const Driver& d_;
  CudaStream default_;
  std::mutex mutex_;
  std::map<int, Pool> pools_;
  std::unordered_map<uint64_t, std::unique_ptr<CudaStream>> externals_;
  static thread_local CudaStream* current_;  // per thread, as PyTorch's current stream; nullptr: default
};
thread_local CudaStream* CudaStreams::current_ = nullptr;

class CudaEvent final : public DeviceEvent {
 public:
  CudaEvent(const Driver& d, CudaStreams& streams, bool timing, bool blocking)
      : d_(d), streams_(streams), timing_(timing) {
    check_call(d_, d_.cuEventCreate(&event_, (timing ? 0 : kEventDisableTiming) | (blocking ? kEventBlockingSync : 0)),
               "creating an event");
  }
  ~CudaEvent() override { d_.cuEventDestroy(event_); }

  void record(DeviceStream* stream) override {
    check_call(d_, d_.cuEventRecord(event_, streams_.cuda_stream(stream)), "recording an event");
    recorded_ = true;
  }
  bool query() override {
    if (!recorded_) return true;
    const CUresult r = d_.cuEventQuery(event_);
    if (r == kErrorNotReady) return false;
    check_call(d_, r, "querying an event");
    return true;
  }
  void synchronize() override {
    if (recorded_) check_call(d_, d_.cuEventSynchronize(event_), "waiting for an event");
  }
  float elapsed_ms(DeviceEvent& end) override {
    auto* other = dynamic_cast<CudaEvent*>(&end);
    ORCHARD_CHECK(other, RuntimeError, "elapsed_time: the end event is not a CUDA event");
    ORCHARD_CHECK(timing_ && other->timing_, RuntimeError,
                  "elapsed_time: both events must be created with enable_timing=True");
    ORCHARD_CHECK(recorded_ && other->recorded_, RuntimeError,
                  "elapsed_time: both events must be recorded before calculating elapsed time");
    other->synchronize();
    float ms = 0.0f;
    check_call(d_, d_.cuEventElapsedTime(&ms, event_, other->event_), "timing events");
    return ms;
  }
  // Makes work queued on `stream` after now wait for this event's (CudaStream::wait).
  void order(CUstream stream) {
    if (recorded_) check_call(d_, d_.cuStreamWaitEvent(stream, event_, 0), "waiting for an event on a stream");
  }

 private:
  const Driver& d_;
  CudaStreams& streams_;
  CUevent event_ = nullptr;
  bool timing_, recorded_ = false;
};

void CudaStream::wait(DeviceEvent& event) {
  auto* e = dynamic_cast<CudaEvent*>(&event);
  ORCHARD_CHECK(e, RuntimeError, "wait_event: the event is not a CUDA event");
  e->order(stream_);
}

// ORCHARD_CUDA_KERNEL_PROFILE=<file>: every launch and device copy runs between two timing events;
// each synchronisation adds their GPU times up by kernel and rewrites <file> with a table, the
// kernels in order of their total time: where a training step's time goes, with no profiler on the
// machine. A kernel's first launch also times its compilation or loading, which the median leaves out.
// (Two events a launch cost a few microseconds of CPU time: profiled runs are slower.)
class KernelProfile {
 public:
  KernelProfile(const Driver& d, CudaStreams& streams) : d_(d), streams_(streams) {
    const char* path = std::getenv("ORCHARD_CUDA_KERNEL_PROFILE");
    path_ = path ? path : "";
  }

  template <typename Launch> void time(const std::string& kernel, const Launch& launch) {
    if (path_.empty()) return launch();
    auto start = std::make_unique<CudaEvent>(d_, streams_, true, false);
    auto end = std::make_unique<CudaEvent>(d_, streams_, true, false);
    start->record(nullptr);
    launch();
    end->record(nullptr);
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({kernel, std::move(start), std::move(end)});
  }

  // After a synchronisation, when every pending event has completed.
  void harvest() {
    if (path_.empty()) return;
    std::lock_guard<std::mutex> lock(mutex_);
    if (pending_.empty()) return;
    for (Pending& p : pending_) times_[p.kernel].push_back(p.start->elapsed_ms(*p.end));
    pending_.clear();
    struct Row {
      std::string kernel;
      double ms, median_ms;
      size_t calls;
    };
    std::vector<Row> rows;
    for (auto& [kernel, ms] : times_) {
      std::vector<float> sorted = ms;
      std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
      rows.push_back({kernel, std::accumulate(ms.begin(), ms.end(), 0.0), sorted[sorted.size() / 2], ms.size()});
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
    if (std::FILE* f = std::fopen(path_.c_str(), "w")) {
      std::fprintf(f, "%12s %8s %10s %10s  %s\n", "total ms", "calls", "mean us", "median us", "kernel");
      for (const Row& r : rows)
        std::fprintf(f, "%12.3f %8zu %10.2f %10.2f  %s\n", r.ms, r.calls, 1000.0 * r.ms / double(r.calls),
                     1000.0 * r.median_ms, r.kernel.c_str());
      std::fclose(f);
    }
  }

 private:
  struct Pending {
    std::string kernel;
    std::unique_ptr<CudaEvent> start, end;
  };
  const Driver& d_;
  CudaStreams& streams_;
  std::string path_;
  std::mutex mutex_;
  std::vector<Pending> pending_;
  std::unordered_map<std::string, std::vector<float>> times_;  // GPU ms of every launch, by kernel
};

class CudaBackend final : public metal::Backend, private NativeLauncher {
 public:
  CudaBackend(const Driver& driver, CUcontext context, int arch, int max_shared, size_t memory)
      : d_(driver), context_(context), arch_(arch), max_shared_(max_shared), memory_(memory) {}

  // Every freed block stays cached, as in PyTorch's caching allocator: cuMemFree waits for the whole
  // device, so returning blocks each step would stall a training loop on every large free. An
  // allocation that finds the GPU full releases the cache and tries again (BlockCache::allocate).
  size_t cache_budget() const override { return memory_; }

  void* allocate(size_t nbytes) override {
    current();
    CUdeviceptr p = 0;
    return d_.cuMemAlloc(&p, nbytes ? nbytes : 1) == 0 ? reinterpret_cast<void*>(p) : nullptr;
  }
  void deallocate(void* base) override {
    current();
    d_.cuMemFree(reinterpret_cast<CUdeviceptr>(base));
  }

  void dispatch(const metal::Dispatch& d) override {
    current();
    profile_.time(d.kernel, [&] { run(d); });
  }

  void copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) override {
    current();
    profile_.time("device copy", [&] {
      check(d_.cuMemcpyDtoDAsync(device_address(dst_base, dst_offset), device_address(src_base, src_offset), nbytes,
                                 streams_.cuda_stream(nullptr)),
            "copying ", nbytes, " bytes on the device");
    });
  }
  void read(const void* base, size_t offset, void* host, size_t nbytes) override {
    synchronize();
    check(d_.cuMemcpyDtoH(host, device_address(base, offset), nbytes), "reading ", nbytes, " bytes");
  }
  void write(void* base, size_t offset, const void* host, size_t nbytes) override {
    synchronize();
    // On the current stream, waited for: a plain cuMemcpyHtoD may return before its DMA lands, ordered
    // only with the legacy default stream, and kernels on a side stream would read stale bytes.
    CUstream stream = streams_.cuda_stream(nullptr);
    check(d_.cuMemcpyHtoDAsync(device_address(base, offset), host, nbytes, stream), "writing ", nbytes, " bytes");
    check(d_.cuStreamSynchronize(stream), "writing ", nbytes, " bytes");
  }
  void synchronize() override {
    current();
    check(d_.cuCtxSynchronize(), "running the queued kernels");
    profile_.harvest();
  }
  bool emulated() const override { return false; }
  std::unique_ptr<DeviceEvent> make_event(bool timing, bool blocking) override {
    current();
    return std::make_unique<CudaEvent>(d_, streams_, timing, blocking);
  }
  DeviceStreams* streams() override {
    current();
    return &streams_;
  }

 private:
  // Launches `d`: its native replacement where one takes it, else the kernel.
  void run(const metal::Dispatch& d) {
    if (auto native = natives_.find(d.kernel); native != natives_.end() && native->second(d)) return;
    // [[buffer(i)]]: device addresses, or the constants themselves by value; then the byte offset of
    // each [[threadgroup(i)]] buffer in the dynamic shared memory; then the part of the grid that
    // this launch covers (entry_points.h).
    std::vector<CUdeviceptr> addresses(d.args.size());
    std::vector<uint32_t> offsets(d.threadgroup_memory.size());
    std::vector<void*> params;
    for (size_t i = 0; i < d.args.size(); ++i) {
      const metal::KernelArg& a = d.args[i];
      addresses[i] = device_address(a.base, a.offset);
      params.push_back(a.base ? static_cast<void*>(&addresses[i]) : const_cast<uint8_t*>(a.bytes.data()));
    }
    uint32_t shared = 0;
    for (size_t i = 0; i < offsets.size(); ++i) {
      offsets[i] = shared;
      shared += (d.threadgroup_memory[i] + 15u) & ~15u;
      params.push_back(&offsets[i]);
    }
    ORCHARD_CHECK(int64_t(shared) <= max_shared_, RuntimeError, "cuda: kernel ", d.kernel, " needs ", shared,
                  " bytes of shared memory; this GPU has ", max_shared_);
    CUfunction f = function(d.kernel, shared);
    CUstream stream = streams_.cuda_stream(nullptr);
    // A grid taller or deeper than CUDA allows runs as several launches, each told its first group.
    GridPart part{0, 0, d.groups.y, d.groups.z};
    params.push_back(&part);
    for (part.first_y = 0; part.first_y < d.groups.y; part.first_y += kMaxGridYZ)
      for (part.first_z = 0; part.first_z < d.groups.z; part.first_z += kMaxGridYZ)
        check(d_.cuLaunchKernel(f, d.groups.x, std::min(kMaxGridYZ, d.groups.y - part.first_y),
                                std::min(kMaxGridYZ, d.groups.z - part.first_z), d.threads.x, d.threads.y,
                                d.threads.z, shared, stream, params.data(), nullptr),
              "launching ", d.kernel);
  }

  int arch() const override { return arch_; }

  void launch(const KernelFamilySource& module, const char* kernel, metal::Size3 groups, metal::Size3 threads,
              uint32_t shared, void** params) override {
    ORCHARD_CHECK(int64_t(shared) <= max_shared_, RuntimeError, "cuda: kernel ", kernel, " needs ", shared,
                  " bytes of shared memory; this GPU has ", max_shared_);
    CUfunction f = function(kernel, shared, &module);
    check(d_.cuLaunchKernel(f, groups.x, groups.y, groups.z, threads.x, threads.y, threads.z, shared,
                            streams_.cuda_stream(nullptr), params, nullptr),
          "launching ", kernel);
  }

  template <typename... Context> void check(CUresult r, const Context&... what) const { check_call(d_, r, what...); }

  // The driver keeps the current context per thread.
  void current() {
    thread_local CUcontext bound = nullptr;
    if (bound != context_) check(d_.cuCtxSetCurrent(bound = context_), "making the context current");
  }

  // Kernel `kernel` of `module` (a native module; by default the family the kernel belongs to),
  // compiling and loading the module on first use, with at least `shared` bytes of dynamic shared
  // memory allowed.
  CUfunction function(const std::string& kernel, uint32_t shared, const KernelFamilySource* module = nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = functions_.find(kernel);
    if (it == functions_.end()) {  // the module is looked up only here: the name search is linear
      if (!module) module = kernel_family_of(kernel);
      ORCHARD_CHECK(module, RuntimeError, "cuda: no kernel named ", kernel);
      const std::string code = cached_kernel_family(*module, arch_);
      CUmodule loaded = nullptr;
      check(d_.cuModuleLoadData(&loaded, code.data()), "loading the kernels of ", module->name);
      for (size_t i = 0; i < module->kernel_count; ++i) {
        CUfunction f = nullptr;
        check(d_.cuModuleGetFunction(&f, loaded, module->kernels[i]), "finding kernel ", module->kernels[i]);
        functions_[module->kernels[i]] = {f, 48 * 1024};
      }
      it = functions_.find(kernel);
      ORCHARD_CHECK(it != functions_.end(), RuntimeError, "cuda: ", module->name, " has no kernel ", kernel);
    }
    if (shared > it->second.shared_limit) {  // above 48 KiB, a kernel must opt in
      check(d_.cuFuncSetAttribute(it->second.f, kFuncMaxDynamicShared, int(shared)), "raising the shared memory of ",
            kernel);
      it->second.shared_limit = shared;
    }
    return it->second.f;
  }

  struct Loaded {
    CUfunction f;
    uint32_t shared_limit;
  };
  // The entry points' last parameter (orchard_cuda::GridPart in entry_points.h).
  struct GridPart {
    uint32_t first_y, first_z, groups_y, groups_z;
  };
  // Native replacements of kernels, by host name: each returns false where it cannot take a launch,
  // which then runs the kernel.
  using Native = std::function<bool(const metal::Dispatch&)>;
  std::unordered_map<std::string, Native> native_kernels() {
    std::unordered_map<std::string, Native> natives;
    for (DType t : metal::kFloatDTypes) {
      natives[metal::matmul_tiled_kernel(t)] = [this, t](const metal::Dispatch& d) {
        return cublas_matmul(d, t, streams_.cuda_stream(nullptr));
      };
      for (const auto& [kernel, pass] : flash_attention_kernels(t))
        natives[kernel] = [this, t, pass = pass](const metal::Dispatch& d) {
          return cuda_flash_attention(d, t, pass, *this);
        };
    }
    return natives;
  }

  const Driver& d_;
  CUcontext context_;
  int arch_, max_shared_;
  size_t memory_;
  std::mutex mutex_;
  std::unordered_map<std::string, Loaded> functions_;
  CudaStreams streams_{d_};
  const std::unordered_map<std::string, Native> natives_ = native_kernels();
  KernelProfile profile_{d_, streams_};
};

// The backend of the machine's first GPU, or nullptr without a driver or a GPU.
metal::Backend* make_cuda_backend() {
  const Driver* d = Driver::load();
  int count = 0;
  CUdevice device = 0;
  if (!d || d->cuInit(0) != 0 || d->cuDeviceGetCount(&count) != 0 || count == 0 || d->cuDeviceGet(&device, 0) != 0)
    return nullptr;
  int major = 0, minor = 0, shared = 0;
  size_t memory = 0;
  CUcontext context = nullptr;
  if (d->cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device) != 0 ||
      d->cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device) != 0 ||
      d->cuDeviceGetAttribute(&shared, kMaxSharedPerBlockOptin, device) != 0 ||
      d->cuDeviceTotalMem(&memory, device) != 0 || d->cuDevicePrimaryCtxRetain(&context, device) != 0)
    return nullptr;
  static CudaBackend backend(*d, context, major * 10 + minor, shared, memory);
  return &backend;
}

const bool registered = [] {
  register_runtime_factory(Device::CUDA, []() -> Runtime* {
    metal::Backend* backend = make_cuda_backend();
    return backend ? metal::make_metal_runtime(*backend, Device::CUDA).release() : nullptr;  // as Metal's: never freed
  });
  return true;
}();

}  // namespace

}  // namespace orchard::cuda
