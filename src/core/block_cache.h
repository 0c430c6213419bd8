// A size-class cache of device memory blocks, shared by the runtimes' allocators. Freed blocks of
// `cache_min` bytes and more are kept by size class for reuse (warm pages on the CPU, no new
// MTLBuffer on Metal), up to `limit` bytes (the Metal runtime takes its backend's cache budget); an
// allocation that fails empties the cache and retries before raising OutOfMemoryError.
// Blocks belong to the pool they were allocated in (a CUDA stream; 0 for the default one) and return
// to it: a block freed in one pool is never handed to another.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace orchard {

class BlockCache {
 public:
  using RawAllocate = std::function<void*(size_t nbytes)>;  // nullptr when out of memory
  using RawFree = std::function<void(void* ptr)>;

  BlockCache(const char* device, size_t alignment, size_t cache_min, size_t limit, RawAllocate allocate,
             RawFree free);

  void* allocate(size_t nbytes, uintptr_t pool = 0);  // throws OutOfMemoryError naming the device
  void deallocate(void* ptr, size_t nbytes);
  uintptr_t pool_of(void* ptr);  // the pool of a live allocation
  void release();
  size_t cached_bytes();

 private:
  size_t size_class(size_t n) const;

  const char* device_;
  size_t alignment_, cache_min_, limit_;
  RawAllocate raw_allocate_;
  RawFree raw_free_;
  std::mutex mutex_;
  std::map<std::pair<uintptr_t, size_t>, std::vector<void*>> free_blocks_;  // by pool and size class
  std::unordered_map<void*, uintptr_t> pools_;  // the live allocations of pools other than 0
  std::atomic<bool> pooled_{false};             // whether pools_ was ever used: frees skip the lock until then
  size_t bytes_ = 0;
};

}  // namespace orchard
