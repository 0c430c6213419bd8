// Sorting (Runtime::sort) by a bitonic network on (value, position) keys, in place in the outputs.
// Positions are unique, so the keys order totally and any correct network gives the stable order
// of src/cpu/sort.cpp: NaN above every number, ties by position. The plan (src/metal/plan_sort.cpp)
// runs sort_init, then the network's steps, one launch each.
#include "common.h"
#include "sort_params.h"

// Whether (a, ia) sorts before (b, ib): by value (NaN largest; reversed when descending), then by
// position.
template <typename C>
bool sort_key_before(C a, int64_t ia, C b, int64_t ib, bool descending) {
  const bool a_nan = is_nan(a), b_nan = is_nan(b);
  const bool less = (!a_nan && b_nan) || a < b, greater = (a_nan && !b_nan) || a > b;
  if (descending ? greater : less) return true;
  if (descending ? less : greater) return false;
  return ia < ib;
}

// values = in, indices = the position of each element in its row.
template <typename T>
[[kernel]] void sort_init(device T* values [[buffer(0)]], device int64_t* indices [[buffer(1)]],
                          device const T* in [[buffer(2)]], constant SortParams& p [[buffer(3)]],
                          uint t [[thread_position_in_grid]]) {
  if (t >= p.count) return;
  const int64_t i = p.start + t;
  values[i] = in[i];
  indices[i] = i % p.n;
}

// One compare-exchange per thread: the key that sorts first goes to the lower position.
template <typename T>
[[kernel]] void sort_step(device T* values [[buffer(0)]], device int64_t* indices [[buffer(1)]],
                          constant SortParams& p [[buffer(2)]], uint t [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  if (t >= p.count) return;
  const int64_t pair = p.start + t;
  const int64_t row = pair / p.pairs, k = pair - row * p.pairs;
  const int64_t q = k % p.distance, block = (k / p.distance) * 2 * p.distance;
  const int64_t lo = block + q, hi = p.flip != 0 ? block + 2 * p.distance - 1 - q : lo + p.distance;
  if (hi >= p.n) return;  // padding past the row's end, which sorts last and never moves
  device T* v = values + row * p.n;
  device int64_t* ix = indices + row * p.n;
  const T a = v[lo], b = v[hi];
  const int64_t ia = ix[lo], ib = ix[hi];
  if (sort_key_before(C(b), ib, C(a), ia, p.descending != 0)) {
    v[lo] = b;
    v[hi] = a;
    ix[lo] = ib;
    ix[hi] = ia;
  }
}

#define ORCHARD_SORT(name, T)                           \
  ORCHARD_KERNEL("sort_init_" #name, sort_init, T)      \
  ORCHARD_KERNEL("sort_step_" #name, sort_step, T)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_SORT)
