// Launch parameters of metal/sort.metal and metal/scan.metal, shared with src/metal/plan_sort.cpp
// and src/metal/plan_scan.cpp.
#pragma once

#include "params.h"

ORCHARD_PARAMS_BEGIN

// One launch of the sort over `rows` rows of n elements. sort_init: thread t fills element
// start + t. sort_step: thread t handles pair start + t, the rows having `pairs` pairs each; within
// blocks of 2 * distance elements, pair q pairs element q with element q + distance, or, when
// `flip`, with element 2 * distance - 1 - q (src/metal/plan_sort.cpp says why).
struct SortParams {
  int64_t n;
  int64_t pairs;
  int64_t distance;
  int64_t start, count;
  uint32_t flip;
  uint32_t descending;
};

// cumsum of a contiguous [outer, n, inner] tensor: thread t sums line start + t (of outer * inner).
struct ScanParams {
  int64_t n, inner;
  int64_t start, count;
};

ORCHARD_PARAMS_END
