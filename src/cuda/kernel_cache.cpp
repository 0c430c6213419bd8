// The on-disk cache of the kernels' CUBINs (kernel_compiler.h): NVRTC takes about a minute for all the
// families, which every process starting the CUDA device would otherwise pay again.
//
// One file per family and architecture, <cache>/cuda/<family>-sm_<arch>.cubin, where <cache> is
// ORCHARD_CACHE_DIR, else $XDG_CACHE_HOME/orchard, else ~/.cache/orchard. Its first line names the
// hash of everything the code depends on (the family's source, the <metal_stdlib> shim, NVRTC's
// options and version) and the hash of the code itself; a file whose line does not match, a torn
// or edited one included, is compiled again and replaced. Files are written whole under another
// name and renamed, so concurrent processes never read half a file. A cache that cannot be
// written (a read-only home) only costs the compile.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "errors.h"
#include "kernel_compiler.h"

namespace orchard::cuda {

namespace {

namespace fs = std::filesystem;

// FNV-1a, 64 bits: a content check, not a defence against someone who can write the cache.
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  Fnv& add(const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // ends each part, so that "ab"+"c" differs from "a"+"bc"
    return *this;
  }
  std::string hex() const {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
  }
};

fs::path cache_directory() {
  if (const char* dir = std::getenv("ORCHARD_CACHE_DIR"); dir && *dir) return fs::path(dir) / "cuda";
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "orchard" / "cuda";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "orchard" / "cuda";
  return {};
}

std::string inputs_hash(const KernelFamilySource& family, int arch) {
  Fnv f;
  f.add(family.source).add(std::to_string(nvrtc_version()));
  for (size_t h = 0; h < kShimHeaderCount; ++h) f.add(kShimHeaders[h].name).add(kShimHeaders[h].text);
  for (const std::string& option : compile_options(arch, KernelCode::Cubin)) f.add(option);
  return f.hex();
}

std::string header(const std::string& inputs, const std::string& code) {
  return detail::concat("orchard kernel cache ", inputs, " ", Fnv().add(code).hex(), "\n");
}

// The cached code, or "" when there is none that matches.
std::string load(const fs::path& file, const std::string& inputs) {
  std::ifstream in(file, std::ios::binary);
  std::string first;
  if (!in || !std::getline(in, first)) return {};
  std::ostringstream rest;
  rest << in.rdbuf();
  std::string code = rest.str();
  return header(inputs, code) == first + "\n" ? code : std::string();
}

void store(const fs::path& file, const std::string& inputs, const std::string& code) {
  std::error_code error;
  fs::create_directories(file.parent_path(), error);
  if (error) return;
  const fs::path partial = detail::concat(file.string(), ".", getpid(), ".",
                                          std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(partial, std::ios::binary);
    out << header(inputs, code) << code;
    if (!out.flush()) return fs::remove(partial, error), void();
  }
  fs::rename(partial, file, error);
  if (error) fs::remove(partial, error);
}

}  // namespace

std::string cached_kernel_family(const KernelFamilySource& family, int arch) {
  const fs::path directory = cache_directory();
  if (directory.empty()) return compile_kernel_family(family, arch, KernelCode::Cubin);
  const fs::path file = directory / detail::concat(family.name, "-sm_", arch, ".cubin");
  const std::string inputs = inputs_hash(family, arch);
  if (std::string code = load(file, inputs); !code.empty()) return code;
  std::string code = compile_kernel_family(family, arch, KernelCode::Cubin);
  store(file, inputs, code);
  return code;
}

}  // namespace orchard::cuda
