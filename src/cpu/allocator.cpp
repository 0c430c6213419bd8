#include "allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "errors.h"

namespace orchard::cpu {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kCacheMin = size_t(1) << 16;    // smaller blocks go straight to malloc, which is fast
constexpr size_t kCacheLimit = size_t(2) << 30;  // bytes kept for reuse at most

// Rounds large sizes up to one of four steps per power of two, so blocks of similar size are
// interchangeable (at most 25% slack).
size_t size_class(size_t n) {
  if (n < kCacheMin) return (n + kAlign - 1) / kAlign * kAlign;
  size_t top = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = top / 4;
  return (n + step - 1) / step * step;
}

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free_blocks;
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during static teardown
  return *c;
}

void* system_alloc(size_t n) { return std::aligned_alloc(kAlign, n); }

}  // namespace

void* allocate(size_t nbytes) {
  size_t n = size_class(nbytes == 0 ? 1 : nbytes);
  if (n >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= n;
      return p;
    }
  }
  void* p = system_alloc(n);
  if (!p) {
    release_cached_memory();
    p = system_alloc(n);
  }
  ORCHARD_CHECK(p, OutOfMemoryError, "cannot allocate ", nbytes, " bytes on cpu: out of memory");
  return p;
}

void deallocate(void* ptr, size_t nbytes) {
  size_t n = size_class(nbytes == 0 ? 1 : nbytes);
  if (n >= kCacheMin) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + n <= kCacheLimit) {
      c.free_blocks[n].push_back(ptr);
      c.bytes += n;
      return;
    }
  }
  std::free(ptr);
}

void release_cached_memory() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& [size, blocks] : c.free_blocks)
    for (void* p : blocks) std::free(p);
  c.free_blocks.clear();
  c.bytes = 0;
}

size_t cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace orchard::cpu
