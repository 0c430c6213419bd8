#include "kernel_compiler.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "errors.h"

namespace orchard::cuda {

namespace {

// The part of NVRTC's C API used here, declared after its documentation (nvrtc.h) so that building
// needs no CUDA: each function returns an nvrtcResult, 0 being NVRTC_SUCCESS.
struct NvrtcProgram;
struct Nvrtc {
  const char* (*GetErrorString)(int result);
  int (*Version)(int* major, int* minor);
  int (*CreateProgram)(NvrtcProgram** program, const char* source, const char* name, int header_count,
                       const char* const* headers, const char* const* include_names);
  int (*DestroyProgram)(NvrtcProgram** program);
  int (*CompileProgram)(NvrtcProgram* program, int option_count, const char* const* options);
  int (*GetProgramLogSize)(NvrtcProgram* program, size_t* size);
  int (*GetProgramLog)(NvrtcProgram* program, char* log);
  int (*GetPTXSize)(NvrtcProgram* program, size_t* size);
  int (*GetPTX)(NvrtcProgram* program, char* ptx);
  int (*GetCUBINSize)(NvrtcProgram* program, size_t* size);
  int (*GetCUBIN)(NvrtcProgram* program, char* cubin);
};

template <typename F> void bind(void* library, const std::string& path, const char* name, F& function) {
  function = reinterpret_cast<F>(dlsym(library, name));
  if (!function) throw RuntimeError(detail::concat(path, " is no NVRTC: it lacks ", name));
}

// ORCHARD_NVRTC_LIBRARY when set, else what the dynamic loader finds as libnvrtc.so.12 (CUDA 12's
// NVRTC, from the nvidia-cuda-nvrtc-cu12 wheel or a toolkit on the loader's path), else
// libnvrtc.so. The library stays loaded for the process.
Nvrtc load_nvrtc() {
  std::vector<std::string> candidates;
  if (const char* explicit_path = std::getenv("ORCHARD_NVRTC_LIBRARY"); explicit_path && *explicit_path)
    candidates = {explicit_path};
  else
    candidates = {"libnvrtc.so.12", "libnvrtc.so"};
  std::string errors;
  for (const std::string& path : candidates) {
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      errors += detail::concat("\n  ", dlerror());
      continue;
    }
    Nvrtc api{};
    bind(library, path, "nvrtcGetErrorString", api.GetErrorString);
    bind(library, path, "nvrtcVersion", api.Version);
    bind(library, path, "nvrtcCreateProgram", api.CreateProgram);
    bind(library, path, "nvrtcDestroyProgram", api.DestroyProgram);
    bind(library, path, "nvrtcCompileProgram", api.CompileProgram);
    bind(library, path, "nvrtcGetProgramLogSize", api.GetProgramLogSize);
    bind(library, path, "nvrtcGetProgramLog", api.GetProgramLog);
    bind(library, path, "nvrtcGetPTXSize", api.GetPTXSize);
    bind(library, path, "nvrtcGetPTX", api.GetPTX);
    bind(library, path, "nvrtcGetCUBINSize", api.GetCUBINSize);
    bind(library, path, "nvrtcGetCUBIN", api.GetCUBIN);
    return api;
  }
  throw RuntimeError(detail::concat(
      "CUDA kernels need NVRTC, which was not found:", errors,
      "\nInstall it with `pip install nvidia-cuda-nvrtc-cu12`, or set ORCHARD_NVRTC_LIBRARY to the path of libnvrtc.so.12 "
      "(in that wheel: nvidia/cuda_nvrtc/lib under site-packages)."));
}

// Loaded on first use; a failed load raises again at the next call.
const Nvrtc& nvrtc() {
  static const Nvrtc api = load_nvrtc();
  return api;
}

void check(const Nvrtc& api, int result, const char* call) {
  if (result != 0) throw RuntimeError(detail::concat(call, " failed: ", api.GetErrorString(result)));
}

}  // namespace

const KernelFamilySource* find_kernel_family(const std::string& name) {
  for (size_t f = 0; f < kKernelFamilySourceCount; ++f)
    if (name == kKernelFamilySources[f].name) return &kKernelFamilySources[f];
  return nullptr;
}

const KernelFamilySource* kernel_family_of(const std::string& kernel) {
  for (size_t f = 0; f < kKernelFamilySourceCount; ++f)
    for (size_t k = 0; k < kKernelFamilySources[f].kernel_count; ++k)
      if (kernel == kKernelFamilySources[f].kernels[k]) return &kKernelFamilySources[f];
  return nullptr;
}

std::vector<std::string> compile_options(int arch, KernelCode code) {
  return {
      detail::concat("--gpu-architecture=", code == KernelCode::Ptx ? "compute_" : "sm_", arch),
      "-default-device",     // unannotated functions are device functions, as every function in MSL
      "-std=c++20",          // MSL's ulong2(0, 0) builds CUDA's aggregate vector types (parenthesised init)
      "-diag-suppress=1097"  // "unknown attribute": the kernels' [[buffer(i)]]..., which the entry points carry
  };
}

std::string compile_kernel_family(const KernelFamilySource& family, int arch, KernelCode code) {
  const Nvrtc& api = nvrtc();
  std::vector<const char*> names, texts;
  for (size_t h = 0; h < kShimHeaderCount; ++h) {
    names.push_back(kShimHeaders[h].name);
    texts.push_back(kShimHeaders[h].text);
  }
  NvrtcProgram* program = nullptr;
  const std::string file = detail::concat(family.name, ".cu");
  check(api, api.CreateProgram(&program, family.source, file.c_str(), int(names.size()), texts.data(), names.data()),
        "nvrtcCreateProgram");
  struct Release {
    const Nvrtc& api;
    NvrtcProgram*& program;
    ~Release() { api.DestroyProgram(&program); }
  } release{api, program};

  const std::vector<std::string> option_strings = compile_options(arch, code);
  std::vector<const char*> options;
  for (const std::string& o : option_strings) options.push_back(o.c_str());
  const int compiled = api.CompileProgram(program, int(options.size()), options.data());
  size_t size = 0;
  check(api, api.GetProgramLogSize(program, &size), "nvrtcGetProgramLogSize");
  std::string log(size, '\0');
  check(api, api.GetProgramLog(program, log.data()), "nvrtcGetProgramLog");
  log.resize(std::strlen(log.c_str()));
  if (compiled != 0)
    throw RuntimeError(detail::concat("NVRTC could not compile the CUDA kernels of metal/", family.name, ".metal for compute_",
                                      arch, " (", api.GetErrorString(compiled), "):\n", log));
  if (code == KernelCode::Cubin) {
    check(api, api.GetCUBINSize(program, &size), "nvrtcGetCUBINSize");
    std::string cubin(size, '\0');
    check(api, api.GetCUBIN(program, cubin.data()), "nvrtcGetCUBIN");
    return cubin;
  }
  check(api, api.GetPTXSize(program, &size), "nvrtcGetPTXSize");
  std::string ptx(size, '\0');
  check(api, api.GetPTX(program, ptx.data()), "nvrtcGetPTX");
  ptx.resize(std::strlen(ptx.c_str()));
  return ptx;
}

int nvrtc_version() {
  const Nvrtc& api = nvrtc();
  int major = 0, minor = 0;
  check(api, api.Version(&major, &minor), "nvrtcVersion");
  return major * 1000 + minor * 10;
}

}  // namespace orchard::cuda
