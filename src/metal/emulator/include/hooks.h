// What the MSL shim (metal_stdlib) needs from the emulator: the synchronisation points of the
// calling emulated thread. Each call is made by one thread of a running threadgroup.
#pragma once

#include <cstddef>
#include <cstdint>

namespace orchard::metal_emu {

// Waits until every thread of the threadgroup (or of the simdgroup) has arrived. `orders_memory`:
// the barrier's mem_flags name some memory (not mem_none), so the threads' accesses before it
// happen before those after it.
void threadgroup_barrier(bool orders_memory);
void simdgroup_barrier(bool orders_memory);

// Publishes this lane's `size`-byte value and copies the values of all `count` lanes of the
// simdgroup, in lane order, into `all`; `lane` receives the caller's lane. Orders no memory.
void simd_exchange(const void* mine, void* all, size_t size, uint32_t* count, uint32_t* lane);

uint32_t simd_lane();

}  // namespace orchard::metal_emu
