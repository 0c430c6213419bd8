#include "allocator.h"

#include <cstdlib>
#if __has_include(<sys/mman.h>)
#include <sys/mman.h>
#endif

#include "block_cache.h"

namespace orchard::cpu {

namespace {

constexpr size_t kAlign = 64;
// Blocks of 4 MiB and more are 2 MiB-aligned and asked to be backed by transparent huge pages (as
// NumPy does): a streaming kernel then takes a TLB miss per 2 MiB instead of per 4 KiB, which is
// worth ~15% of a large reduction's bandwidth. A no-op where THP is off or absent.
constexpr size_t kHugePage = size_t(2) << 20, kHugeMin = size_t(4) << 20;

void* raw_allocate(size_t n) {
  if (n < kHugeMin) return std::aligned_alloc(kAlign, n);
  void* p = std::aligned_alloc(kHugePage, (n + kHugePage - 1) / kHugePage * kHugePage);
#ifdef MADV_HUGEPAGE
  if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
  return p;
}

BlockCache& cache() {
  // Smaller blocks than 64 KiB go straight to malloc, which is fast; 2 GiB are kept at most. Never
  // destroyed: tensors may be freed during static teardown.
  static BlockCache* c =
      new BlockCache("cpu", kAlign, size_t(1) << 16, size_t(2) << 30, raw_allocate, [](void* p) { std::free(p); });
  return *c;
}

}  // namespace

void* allocate(size_t nbytes) { return cache().allocate(nbytes); }
void deallocate(void* ptr, size_t nbytes) { cache().deallocate(ptr, nbytes); }
void release_cached_memory() { cache().release(); }
size_t cached_bytes() { return cache().cached_bytes(); }

}  // namespace orchard::cpu
