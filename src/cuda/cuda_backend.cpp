// The CUDA device: the Metal runtime's plans run unchanged on an NVIDIA GPU through this Backend,
// which launches the same kernels compiled by NVRTC (kernel_compiler.h). The CUDA driver is loaded
// with dlopen, so a build needs no CUDA and a machine without a GPU simply has no "cuda" device.
//
// Everything runs in order on the legacy default stream: a launch or a copy starts after the work
// queued before it, as Metal's command queue orders it. Errors of a kernel (a fault) surface at the
// next call that waits, and are raised there as RuntimeError.
#include <dlfcn.h>

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "dispatch.h"
#include "errors.h"
#include "kernel_compiler.h"

namespace orchard::cuda {

namespace {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
constexpr int kComputeCapabilityMajor = 75, kComputeCapabilityMinor = 76;  // CUdevice_attribute
constexpr int kMaxSharedPerBlockOptin = 97;
constexpr int kFuncMaxDynamicShared = 8;  // CUfunction_attribute
constexpr uint32_t kMaxGridYZ = 65535;

// The driver functions used, looked up once.
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyDtoH)(void*, CUdeviceptr, size_t);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void*, size_t);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void**, void**);
  CUresult (*cuGetErrorString)(CUresult, const char**);

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
    get(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    get(d.cuCtxSetCurrent, "cuCtxSetCurrent");
    get(d.cuCtxSynchronize, "cuCtxSynchronize");
    get(d.cuMemAlloc, "cuMemAlloc_v2");
    get(d.cuMemFree, "cuMemFree_v2");
    get(d.cuMemcpyDtoH, "cuMemcpyDtoH_v2");
    get(d.cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    get(d.cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    get(d.cuModuleLoadData, "cuModuleLoadData");
    get(d.cuModuleGetFunction, "cuModuleGetFunction");
    get(d.cuFuncSetAttribute, "cuFuncSetAttribute");
    get(d.cuLaunchKernel, "cuLaunchKernel");
    get(d.cuGetErrorString, "cuGetErrorString");
    return complete ? &d : nullptr;
  }
};

CUdeviceptr device_address(const void* base, size_t offset) {
  return reinterpret_cast<CUdeviceptr>(base) + offset;
}

class CudaBackend final : public metal::Backend {
 public:
  CudaBackend(const Driver& driver, CUcontext context, int arch, int max_shared)
      : d_(driver), context_(context), arch_(arch), max_shared_(max_shared) {}

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
    ORCHARD_CHECK(d.groups.y <= kMaxGridYZ && d.groups.z <= kMaxGridYZ, RuntimeError, "cuda: kernel ", d.kernel,
                  " needs a grid of ", d.groups.x, " x ", d.groups.y, " x ", d.groups.z,
                  " blocks; CUDA allows at most 65535 in y and z");
    // [[buffer(i)]]: device addresses, or the constants themselves by value; then the byte offset of
    // each [[threadgroup(i)]] buffer in the dynamic shared memory (entry_points.h).
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
    check(d_.cuLaunchKernel(f, d.groups.x, d.groups.y, d.groups.z, d.threads.x, d.threads.y, d.threads.z, shared,
                            nullptr, params.data(), nullptr),
          "launching ", d.kernel);
  }

  void copy(void* dst_base, size_t dst_offset, void* src_base, size_t src_offset, size_t nbytes) override {
    current();
    check(d_.cuMemcpyDtoDAsync(device_address(dst_base, dst_offset), device_address(src_base, src_offset), nbytes,
                               nullptr),
          "copying ", nbytes, " bytes on the device");
  }
  void read(const void* base, size_t offset, void* host, size_t nbytes) override {
    synchronize();
    check(d_.cuMemcpyDtoH(host, device_address(base, offset), nbytes), "reading ", nbytes, " bytes");
  }
  void write(void* base, size_t offset, const void* host, size_t nbytes) override {
    synchronize();
    check(d_.cuMemcpyHtoD(device_address(base, offset), host, nbytes), "writing ", nbytes, " bytes");
  }
  void synchronize() override {
    current();
    check(d_.cuCtxSynchronize(), "running the queued kernels");
  }
  bool emulated() const override { return false; }

 private:
  template <typename... Context> void check(CUresult r, const Context&... what) const {
    if (r == 0) return;
    const char* message = nullptr;
    d_.cuGetErrorString(r, &message);
    throw RuntimeError(detail::concat("cuda: ", what..., " failed: ", message ? message : "unknown error", " (",
                                      r, ")"));
  }

  // The driver keeps the current context per thread.
  void current() {
    thread_local CUcontext bound = nullptr;
    if (bound != context_) check(d_.cuCtxSetCurrent(bound = context_), "making the context current");
  }

  // The kernel's function, compiling and loading its family on first use.
  CUfunction function(const std::string& kernel, uint32_t shared) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = functions_.find(kernel);
    if (it == functions_.end()) {
      const KernelFamilySource* family = kernel_family_of(kernel);
      ORCHARD_CHECK(family, RuntimeError, "cuda: no kernel named ", kernel);
      const std::string ptx = compile_kernel_family(*family, arch_);
      CUmodule module = nullptr;
      check(d_.cuModuleLoadData(&module, ptx.c_str()), "loading the kernels of ", family->name);
      for (size_t i = 0; i < family->kernel_count; ++i) {
        CUfunction f = nullptr;
        check(d_.cuModuleGetFunction(&f, module, family->kernels[i]), "finding kernel ", family->kernels[i]);
        functions_[family->kernels[i]] = {f, 48 * 1024};
      }
      it = functions_.find(kernel);
      ORCHARD_CHECK(it != functions_.end(), RuntimeError, "cuda: family ", family->name, " has no kernel ", kernel);
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

  const Driver& d_;
  CUcontext context_;
  int arch_, max_shared_;
  std::mutex mutex_;
  std::unordered_map<std::string, Loaded> functions_;
};

// The backend of the machine's first GPU, or nullptr without a driver or a GPU.
metal::Backend* make_cuda_backend() {
  const Driver* d = Driver::load();
  int count = 0;
  CUdevice device = 0;
  if (!d || d->cuInit(0) != 0 || d->cuDeviceGetCount(&count) != 0 || count == 0 || d->cuDeviceGet(&device, 0) != 0)
    return nullptr;
  int major = 0, minor = 0, shared = 0;
  CUcontext context = nullptr;
  if (d->cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device) != 0 ||
      d->cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device) != 0 ||
      d->cuDeviceGetAttribute(&shared, kMaxSharedPerBlockOptin, device) != 0 ||
      d->cuDevicePrimaryCtxRetain(&context, device) != 0)
    return nullptr;
  static CudaBackend backend(*d, context, major * 10 + minor, shared);
  return &backend;
}

const bool registered = [] {
  metal::Backend* backend = make_cuda_backend();
  if (!backend) return false;
  static Runtime* runtime = metal::make_metal_runtime(*backend, Device::CUDA).release();  // as Metal's: never freed
  register_runtime(Device::CUDA, runtime);
  return true;
}();

}  // namespace

}  // namespace orchard::cuda
