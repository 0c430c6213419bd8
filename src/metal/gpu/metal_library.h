// The kernels on one Apple GPU: their libraries (the embedded metallib, else each family's source,
// compiled when the family is first used) and the pipelines built from them, kept for the process
// and, through a Metal binary archive, for later processes (kernel_library.h says where).
// Thread-safe: a family compiles once, while other families' pipelines go on being served.
#pragma once

#include <Foundation/Foundation.hpp>
#include <Metal/Metal.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace orchard::metal {

// Scopes an autorelease pool: the objects metal-cpp returns without `new`/`alloc` in their name are
// autoreleased, and a thread that is not the main one must drain them itself.
class AutoreleasePool {
 public:
  AutoreleasePool() : pool_(NS::AutoreleasePool::alloc()->init()) {}
  ~AutoreleasePool() { pool_->release(); }
  AutoreleasePool(const AutoreleasePool&) = delete;
  AutoreleasePool& operator=(const AutoreleasePool&) = delete;

 private:
  NS::AutoreleasePool* pool_;
};

std::string describe(const NS::Error* error);  // the error's message, or "unknown error"

class KernelLibrary {
 public:
  struct Options {
    bool from_source = false;  // compile the families even when a metallib is embedded
    bool archive = true;       // keep pipelines in the user's binary archive
  };
  KernelLibrary(MTL::Device* device, Options options);
  ~KernelLibrary();

  // The pipeline of the kernel with this host name, built on first use and kept. Raises
  // RuntimeError when there is no such kernel or it does not build.
  MTL::ComputePipelineState* pipeline(const std::string& kernel);
  // The compiled library of kKernelFamilies[family] (the metallib, where one serves). Raises
  // RuntimeError when it does not compile.
  MTL::Library* family_library(size_t family);
  // Writes the archive when pipelines were added to it since the last write, at most every few
  // seconds (a write copies the whole archive). Failures only cost a later process time.
  void save_archive();

 private:
  struct Family;
  MTL::Library* compile(size_t family);
  void open_archive();
  NS::SharedPtr<MTL::ComputePipelineState> build(MTL::Function* function);

  NS::SharedPtr<MTL::Device> device_;
  Options options_;
  std::unique_ptr<Family[]> families_;
#ifdef ORCHARD_HAS_METALLIB
  std::once_flag metallib_once_;
  NS::SharedPtr<MTL::Library> metallib_;
#endif

  std::mutex pipelines_mutex_;
  std::unordered_map<std::string, NS::SharedPtr<MTL::ComputePipelineState>> pipelines_;

  std::mutex archive_mutex_;  // guards the members below
  NS::SharedPtr<MTL::BinaryArchive> archive_;
  std::string archive_path_;
  bool archive_dirty_ = false;
  std::chrono::steady_clock::time_point archive_saved_;
};

}  // namespace orchard::metal
