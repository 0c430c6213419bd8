// Compiles every kernel family, and the native kernels' modules, to PTX with NVRTC for sm_80 and sm_90
// (src/cuda/kernel_compiler.h),
// checks that each PTX holds an entry point for every kernel of its family, and reports each failure
// with NVRTC's log. Needs no GPU: CI runs it (ctest nvrtc_compile_all) so that the CUDA build of the
// kernels cannot rot. Exit status 1 when anything failed. Prints, per family and architecture, the
// wall and CPU seconds NVRTC took (the families compile in parallel, one thread each). Then checks the
// CUBIN path and the on-disk cache (cached_kernel_family) in a fresh directory: it stores a family's
// CUBIN, reads it back, and compiles again over a file that was cut short.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kernel_compiler.h"

using namespace orchard::cuda;

namespace {

struct Job {
  const KernelFamilySource* family;
  int arch;
  double wall = 0, cpu = 0;
  std::string failure;
};

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void run(Job& job) {
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = thread_cpu_seconds();
  try {
    const std::string ptx = compile_kernel_family(*job.family, job.arch);
    for (size_t k = 0; k < job.family->kernel_count; ++k)
      if (ptx.find(std::string(".entry ") + job.family->kernels[k] + "(") == std::string::npos)
        job.failure += std::string("\n  no entry point ") + job.family->kernels[k] + " in the PTX";
  } catch (const std::exception& e) {
    job.failure = std::string("\n") + e.what();
  }
  job.cpu = thread_cpu_seconds() - cpu_start;
  job.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The cache's failure, or "".
std::string check_cache(const KernelFamilySource& family, const std::string& expected) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("orchard_kernel_cache_" + std::to_string(::getpid()));
  setenv("ORCHARD_CACHE_DIR", dir.c_str(), 1);
  std::string failure;
  const fs::path file = dir / "cuda" / (std::string(family.name) + "-sm_80.cubin");
  if (expected.size() < 4 || expected.compare(0, 4, "\x7f" "ELF") != 0) failure = "NVRTC's CUBIN is no ELF file";
  else if (cached_kernel_family(family, 80) != expected) failure = "the first call's CUBIN differs from NVRTC's";
  else if (!fs::exists(file)) failure = "no file at " + file.string();
  else if (cached_kernel_family(family, 80) != expected) failure = "the cached CUBIN differs from NVRTC's";
  else {
    fs::resize_file(file, fs::file_size(file) / 2);
    if (cached_kernel_family(family, 80) != expected) failure = "a file cut short was read as code";
    else if (fs::file_size(file) <= expected.size()) failure = "a file cut short was not replaced";
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  unsetenv("ORCHARD_CACHE_DIR");
  return failure;
}

}  // namespace

int main() {
  try {
    const int version = nvrtc_version();
    std::printf("NVRTC %d.%d\n", version / 1000, version % 1000 / 10);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED %s\n", e.what());
    return 1;
  }
  std::vector<Job> jobs;  // a family's two architectures side by side
  size_t kernels = 0;
  std::vector<const KernelFamilySource*> modules;  // the families, then the native kernels' modules
  for (size_t f = 0; f < kKernelFamilySourceCount; ++f) modules.push_back(&kKernelFamilySources[f]);
  modules.insert(modules.end(), kNativeModules, kNativeModules + kNativeModuleCount);
  for (const KernelFamilySource* module : modules) {
    kernels += module->kernel_count;
    for (int arch : {80, 90}) jobs.push_back({module, arch, 0, 0, {}});
  }
  const auto start = std::chrono::steady_clock::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < std::max(1u, std::thread::hardware_concurrency()); ++t)
    workers.emplace_back([&] {
      for (size_t j; (j = next++) < jobs.size();) run(jobs[j]);
    });
  for (std::thread& w : workers) w.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  double cpu = 0;
  size_t failed = 0;
  for (const Job& job : jobs) {
    cpu += job.cpu;
    std::printf("%-24s sm_%d %4zu kernels %7.1f s wall %7.1f s CPU%s\n", job.family->name, job.arch,
                job.family->kernel_count, job.wall, job.cpu, job.failure.empty() ? "" : "  FAILED");
    if (!job.failure.empty()) ++failed;
  }
  std::printf("%zu kernels of %zu modules, each for sm_80 and sm_90: %.1f s wall, %.1f s CPU\n", kernels,
              modules.size(), wall, cpu);
  for (const Job& job : jobs)
    if (!job.failure.empty()) std::fprintf(stderr, "FAILED %s.metal for sm_%d:%s\n", job.family->name, job.arch, job.failure.c_str());

  const Job& smallest = *std::min_element(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) {
    return a.family->kernel_count < b.family->kernel_count;
  });
  try {
    const std::string cubin = compile_kernel_family(*smallest.family, 80, KernelCode::Cubin);
    if (const std::string failure = check_cache(*smallest.family, cubin); !failure.empty()) {
      std::fprintf(stderr, "FAILED the kernel cache (%s.metal): %s\n", smallest.family->name, failure.c_str());
      ++failed;
    } else {
      std::printf("kernel cache: stored, read back and replaced %s.metal's CUBIN\n", smallest.family->name);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED the kernel cache: %s\n", e.what());
    ++failed;
  }
  return failed == 0 ? 0 : 1;
}
