// The kernel library a Mac compiles from source: one MSL translation unit per kernel family
// (metal/<family>.metal with its includes inlined), embedded by tools/metal_codegen.py, so that a
// process compiles only the families it uses, each when it first needs one of its kernels. Portable
// C++, so that the family lookup and the pipeline cache's path are tested on Linux; the GPU backend
// (gpu/) uses them.
#pragma once

#include <cstddef>
#include <string>

namespace orchard::metal {

struct KernelFamily {
  const char* name;    // the .metal file's stem
  const char* source;  // its translation unit, as newLibraryWithSource receives it
};

struct KernelPrefix {
  const char* prefix;  // the literal that a host name of one of the family's ORCHARD_KERNEL lines starts with
  size_t family;       // index into kKernelFamilies
};

// Generated into library_source.cpp. The generator checks that no prefix of one family starts a
// prefix of another, so a host name's family is never ambiguous.
extern const KernelFamily kKernelFamilies[];
extern const size_t kKernelFamilyCount;
extern const KernelPrefix kKernelPrefixes[];
extern const size_t kKernelPrefixCount;
extern const char kKernelLibraryHash[];  // of every family's source

// The family that holds the kernel with this host name, or nullptr when none can.
const KernelFamily* kernel_family(const std::string& kernel);

// Where the GPU backend keeps the pipelines it has compiled (a Metal binary archive) for later
// processes: <cache>/orchard/pipelines-<sources>-<system>.metalar, <cache> being $XDG_CACHE_HOME or
// else ~/Library/Caches. The name changes with the kernel sources and with the OS version or GPU,
// either of which invalidates compiled binaries. Empty when neither variable is set.
std::string pipeline_archive_path(const std::string& os_version, const std::string& device_name);

}  // namespace orchard::metal
