// Indexing kernels (Runtime::index_select, gather, scatter_add, index_add) with src/cpu/index.cpp's
// semantics. Index tensors are contiguous int64, already bounds-checked and non-negative; every other
// operand is contiguous. One thread per output element for index_select and gather. scatter_add and
// index_add use no atomics, so that results are deterministic and identical to the CPU's (16-bit
// floats round after every add, in the same order): for scatter_add two src elements can only land
// on the same out element when their positions differ in the indexed dim alone, so one thread owns
// each line along that dim and adds it in order; index_add runs over its index sorted stably, where
// every run of equal entries is added, in index order, by the thread of its first entry (with one
// thread per line instead, an embedding's gradient would add all its rows on a few hundred threads).
#include "common.h"
#include "index_params.h"

template <typename T>
[[kernel]] void index_select(device T* out [[buffer(0)]], device const T* src [[buffer(1)]],
                             device const int64_t* index [[buffer(2)]], constant IndexSelectParams& p [[buffer(3)]],
                             uint t [[thread_position_in_grid]]) {
  if (t >= p.count) return;
  const int64_t i = p.start + t;
  const int64_t row = i / p.inner, j = i - row * p.inner;  // out is [outer, m, inner]
  const int64_t o = row / p.m, k = row - o * p.m;
  out[i] = src[(o * p.n + index[k]) * p.inner + j];
}

template <typename T>
[[kernel]] void index_gather(device T* out [[buffer(0)]], device const T* src [[buffer(1)]],
                             device const int64_t* index [[buffer(2)]], constant IndexLoop& p [[buffer(3)]],
                             uint t [[thread_position_in_grid]]) {
  if (t >= p.numel) return;
  out[t] = src[strided_offset(t, p.shape, p.strides[0], p.ndim) + index[t] * p.dim_stride];
}

template <typename T>
[[kernel]] void index_scatter_add(device T* out [[buffer(0)]], device const T* src [[buffer(1)]],
                                  device const int64_t* index [[buffer(2)]], constant IndexLoop& p [[buffer(3)]],
                                  uint t [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  if (t >= p.numel) return;
  device T* line = out + strided_offset(t, p.shape, p.strides[0], p.ndim);
  int64_t q = strided_offset(t, p.shape, p.strides[1], p.ndim);
  for (int64_t k = 0; k < p.dim_size; ++k, q += p.index_dim_stride) {
    device T* o = line + index[q] * p.dim_stride;
    *o = T(C(*o) + C(src[q]));
  }
}

template <typename T>
[[kernel]] void index_add(device T* out [[buffer(0)]], device const T* src [[buffer(1)]],
                          device const int64_t* keys [[buffer(2)]], device const int64_t* order [[buffer(3)]],
                          constant IndexAddParams& p [[buffer(4)]], uint t [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  if (t >= p.count) return;
  const int64_t e = p.start + t;
  const int64_t row = e / (p.m * p.inner), rest = e - row * p.m * p.inner;
  const int64_t i = rest / p.inner, j = rest - i * p.inner;
  const int64_t key = keys[i];
  if (i > 0 && keys[i - 1] == key) return;  // the run of equal keys is its first entry's
  device T* dst = out + (row * p.n + key) * p.inner + j;
  T acc = *dst;
  for (int64_t s = i; s < p.m && keys[s] == key; ++s) acc = T(C(acc) + C(src[(row * p.m + order[s]) * p.inner + j]));
  *dst = acc;
}

#define ORCHARD_INDEX(name, T)                                            \
  ORCHARD_KERNEL("index_select_" #name, index_select, T)                  \
  ORCHARD_KERNEL("index_gather_" #name, index_gather, T)                  \
  ORCHARD_KERNEL("index_scatter_add_" #name, index_scatter_add, T)        \
  ORCHARD_KERNEL("index_add_" #name, index_add, T)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_INDEX)
