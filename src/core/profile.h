// Allocation profiling. With ORCHARD_TENSOR_PROFILE set (read on every query, so it can be toggled
// while running), each Storage creation appends one `alloc` line and its last release one `free`
// line to the log at ORCHARD_TENSOR_PROFILE_LOG (default: <tmp>/orchard_tensor_profile.log).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "device.h"

namespace orchard::profile {

bool enabled();
std::string log_path();

// Called by Storage; `logged_alloc` pairs each free with an alloc even if the flag flips between.
bool record_alloc(uint64_t id, size_t nbytes, Device device);
void record_free(uint64_t id, size_t nbytes, Device device, bool logged_alloc);

struct Counts { int64_t allocs = 0, frees = 0; };
Counts counts();  // events recorded since the last reset()
void reset();     // zero the counts (the flag itself is re-read on every query anyway)
void clear_log(); // remove the log file

struct LiveStorage { uint64_t id; size_t nbytes; Device device; };
std::vector<LiveStorage> live_storages();  // every Storage alive now, profiled or not

}  // namespace orchard::profile
