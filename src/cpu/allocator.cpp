#include "allocator.h"

#include <cstdlib>

#include "block_cache.h"

namespace orchard::cpu {

namespace {

constexpr size_t kAlign = 64;

BlockCache& cache() {
  // Smaller blocks than 64 KiB go straight to malloc, which is fast; 2 GiB are kept at most. Never
  // destroyed: tensors may be freed during static teardown.
  static BlockCache* c = new BlockCache(
      "cpu", kAlign, size_t(1) << 16, size_t(2) << 30, [](size_t n) { return std::aligned_alloc(kAlign, n); },
      [](void* p) { std::free(p); });
  return *c;
}

}  // namespace

void* allocate(size_t nbytes) { return cache().allocate(nbytes); }
void deallocate(void* ptr, size_t nbytes) { cache().deallocate(ptr, nbytes); }
void release_cached_memory() { cache().release(); }
size_t cached_bytes() { return cache().cached_bytes(); }

}  // namespace orchard::cpu
