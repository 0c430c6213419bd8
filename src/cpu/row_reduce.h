// Reductions along one contiguous row, written as independent lanes so the compiler vectorises
// them without reassociating additions (no -ffast-math). Shared by the reductions and the fused
// kernels that reduce rows (softmax, layer norm, cross-entropy).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace orchard::cpu {

template <typename A> bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return v != v;
  else return false;
}

// Whether v replaces the running max (or min) `best`: strictly better, or a NaN, which then
// sticks, so NaN propagates and the arg ops report the first NaN. Bitwise, not short-circuit, so
// the loops using it stay free of branches and vectorise.
template <bool kMax, typename A> bool takes(A v, A best) {
  return (best == best) & ((kMax ? v > best : v < best) | is_nan(v));
}

template <typename Acc> constexpr int kLanes = 128 / sizeof(Acc);

// Asks for the 2 KiB that follow x[0..n) (n elements of T) to be loaded into cache. A row kernel
// reads one stream per thread, which the hardware prefetcher alone does not keep full: prefetching
// the next leaf while summing this one makes a 64 MiB row sum ~25% faster here.
template <typename T> void prefetch_next(const T* x, int64_t n) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(T)), kAhead = 2048 / int64_t(sizeof(T));
  for (int64_t k = 0; k < std::min(n, kAhead); k += kLine) __builtin_prefetch(x + n + k);
}

// The sum of term(k) over k < n, one partial sum per lane.
template <typename Acc, typename F> Acc lane_sum(int64_t n, F term) {
  Acc lane[kLanes<Acc>] = {};
  int64_t full = n - n % kLanes<Acc>;
  for (int64_t k = 0; k < full; k += kLanes<Acc>)
    for (int l = 0; l < kLanes<Acc>; ++l) lane[l] += term(k + l);
  for (int w = kLanes<Acc> / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lane[l] += lane[l + w];
  for (int64_t k = full; k < n; ++k) lane[0] += term(k);
  return lane[0];
}

// The max (or min) of x[0..n), n >= 1; NaN if any element is NaN.
template <bool kMax, typename Acc, typename T> Acc lane_extreme(const T* x, int64_t n) {
  Acc lane[kLanes<Acc>];
  std::fill(lane, lane + kLanes<Acc>, Acc(x[0]));
  int64_t full = n - n % kLanes<Acc>;
  for (int64_t k = 0; k < full; k += kLanes<Acc>)
    for (int l = 0; l < kLanes<Acc>; ++l) {
      Acc v = Acc(x[k + l]);
      lane[l] = takes<kMax>(v, lane[l]) ? v : lane[l];
    }
  auto merge = [](Acc& a, Acc b) { a = takes<kMax>(b, a) ? b : a; };
  for (int64_t k = full; k < n; ++k) merge(lane[0], Acc(x[k]));
  for (int l = 1; l < kLanes<Acc>; ++l) merge(lane[0], lane[l]);
  return lane[0];
}

}  // namespace orchard::cpu
