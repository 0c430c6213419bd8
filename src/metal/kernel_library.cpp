#include "kernel_library.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace orchard::metal {

const KernelFamily* kernel_family(const std::string& kernel) {
  for (size_t i = 0; i < kKernelPrefixCount; ++i)
    if (kernel.compare(0, std::strlen(kKernelPrefixes[i].prefix), kKernelPrefixes[i].prefix) == 0)
      return &kKernelFamilies[kKernelPrefixes[i].family];
  return nullptr;
}

std::string pipeline_archive_path(const std::string& os_version, const std::string& device_name) {
  std::string cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    cache = xdg;
  else if (const char* home = std::getenv("HOME"); home && *home)
    cache = std::string(home) + "/Library/Caches";
  else
    return {};
  uint64_t hash = 14695981039346656037ull;  // FNV-1a: stable across runs and builds, unlike std::hash
  for (unsigned char c : os_version + '\0' + device_name) hash = (hash ^ c) * 1099511628211ull;
  char system[17];
  std::snprintf(system, sizeof system, "%016llx", static_cast<unsigned long long>(hash));
  return cache + "/orchard/pipelines-" + kKernelLibraryHash + "-" + system + ".metalar";
}

}  // namespace orchard::metal
