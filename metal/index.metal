// Indexing kernels (Runtime::index_select, gather, scatter_add) with src/cpu/index.cpp's semantics.
// Index tensors are contiguous int64, already bounds-checked and non-negative; every other operand
// is contiguous. One thread per output element for index_select and gather. scatter_add uses no
// atomics: two src elements can only land on the same out element when their positions differ in
// the indexed dim alone, so one thread owns each line along that dim and adds it in order, which
// makes the result deterministic and identical to the CPU's (16-bit floats round after every add,
// in the same order).
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

#define ORCHARD_INDEX(name, T)                                            \
  ORCHARD_KERNEL("index_select_" #name, index_select, T)                  \
  ORCHARD_KERNEL("index_gather_" #name, index_gather, T)                  \
  ORCHARD_KERNEL("index_scatter_add_" #name, index_scatter_add, T)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_INDEX)
