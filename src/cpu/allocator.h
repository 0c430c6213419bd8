// CPU memory: 64-byte aligned blocks, with freed large blocks kept for reuse by size class. Reuse
// keeps pages mapped and warm: a fresh 64 MiB block costs 16k page faults on first touch, which
// alone would halve the bandwidth of a large elementwise op.
#pragma once

#include <cstddef>

namespace orchard::cpu {

void* allocate(size_t nbytes);  // throws OutOfMemoryError
void deallocate(void* ptr, size_t nbytes);
void release_cached_memory();
size_t cached_bytes();

}  // namespace orchard::cpu
