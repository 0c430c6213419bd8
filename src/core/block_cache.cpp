#include "block_cache.h"

#include <algorithm>
#include <utility>

#include "errors.h"

namespace orchard {

BlockCache::BlockCache(const char* device, size_t alignment, size_t cache_min, size_t limit, RawAllocate allocate,
                       RawFree free)
    : device_(device), alignment_(alignment), cache_min_(cache_min), limit_(limit), raw_allocate_(std::move(allocate)),
      raw_free_(std::move(free)) {}

// Small sizes round to the alignment; large ones to one of four steps per power of two, so blocks of
// similar size are interchangeable (at most 25% slack).
size_t BlockCache::size_class(size_t n) const {
  if (n == 0) n = 1;
  if (n < cache_min_) return (n + alignment_ - 1) / alignment_ * alignment_;
  size_t top = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = std::max(top / 4, alignment_);
  return (n + step - 1) / step * step;
}

void* BlockCache::allocate(size_t nbytes, uintptr_t pool) {
  const size_t n = size_class(nbytes);
  void* p = nullptr;
  if (n >= cache_min_) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_blocks_.find({pool, n});
    if (it != free_blocks_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      bytes_ -= n;
    }
  }
  if (!p) p = raw_allocate_(n);
  if (!p) {
    release();
    p = raw_allocate_(n);
  }
  ORCHARD_CHECK(p, OutOfMemoryError, "cannot allocate ", nbytes, " bytes on ", device_, ": out of memory");
  if (pool != 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    pooled_.store(true, std::memory_order_relaxed);
    pools_[p] = pool;
  }
  return p;
}

void BlockCache::deallocate(void* ptr, size_t nbytes) {
  const size_t n = size_class(nbytes);
  if (n >= cache_min_ || pooled_.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(mutex_);
    uintptr_t pool = 0;
    if (auto it = pools_.find(ptr); it != pools_.end()) {
      pool = it->second;
      pools_.erase(it);
    }
    if (n >= cache_min_ && bytes_ + n <= limit_) {
      free_blocks_[{pool, n}].push_back(ptr);
      bytes_ += n;
      return;
    }
  }
  raw_free_(ptr);  // outside the lock: cuMemFree waits for the device
}

uintptr_t BlockCache::pool_of(void* ptr) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pools_.find(ptr);
  return it == pools_.end() ? 0 : it->second;
}

void BlockCache::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [pool_and_size, blocks] : free_blocks_)
    for (void* p : blocks) raw_free_(p);
  free_blocks_.clear();
  bytes_ = 0;
}

size_t BlockCache::cached_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

}  // namespace orchard
