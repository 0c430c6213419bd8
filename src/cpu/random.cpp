#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu_runtime.h"
#include "parallel.h"
#include "philox.h"

namespace orchard::cpu {

namespace {

// Significand bits of T, capped at the 32 a Philox number holds.
template <typename T>
constexpr int uniform_bits() {
  if constexpr (std::is_same_v<T, Half>) return 11;
  else if constexpr (std::is_same_v<T, BFloat16>) return 8;
  else return std::min(32, std::numeric_limits<T>::digits);
}

// [0, 1) from the top bits of u: only as many as T represents exactly, so rounding to T can
// never produce 1.
template <typename T>
T uniform(uint32_t u) {
  using C = compute_t<T>;
  constexpr int bits = uniform_bits<T>();
  return T(C(u >> (32 - bits)) * (C(1) / C(uint64_t(1) << bits)));
}

// Box-Muller; 1 - uniform lies in (0, 1], so the log is finite.
template <typename C>
C box_muller(uint32_t u1, uint32_t u2) {
  return std::sqrt(C(-2) * std::log(C(1) - uniform<C>(u1))) * std::cos(C(6.283185307179586) * uniform<C>(u2));
}

}  // namespace

void CpuRuntime::random(const RandomArgs& a) {
  const auto& [out, normal, seed, offset] = a;
  const uint64_t per_element = normal ? 2 : 1;
  ORCHARD_DISPATCH_FLOATING(out.dtype(), {
    T* p = out.data_as<T>();
    // Every element depends only on its own stream position, so any chunking gives the same bits.
    parallel_for(out.numel(), grain_for(normal ? 100 : 25), [&](int64_t begin, int64_t end) {
      PhiloxStream stream(seed, offset + uint64_t(begin) * per_element);
      for (int64_t i = begin; i < end; ++i) {
        if (normal) {
          uint32_t u1 = stream.next();
          p[i] = T(box_muller<compute_t<T>>(u1, stream.next()));
        } else {
          p[i] = uniform<T>(stream.next());
        }
      }
    });
  });
}

void CpuRuntime::random_integers(const RandomIntegersArgs& a) {
  const auto& [out, low, range, seed, offset] = a;
  int64_t* p = out.data_as<int64_t>();
  parallel_for(out.numel(), grain_for(50), [&](int64_t begin, int64_t end) {
    PhiloxStream stream(seed, offset + uint64_t(begin) * 2);
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t lo = stream.next();
      const uint64_t u = lo | uint64_t(stream.next()) << 32;
      p[i] = int64_t(uint64_t(low) + (range == 0 ? u : u % range));  // wraps in unsigned, as int64 does
    }
  });
}

void CpuRuntime::dropout(const DropoutArgs& a) {
  const auto& [in, out, p, seed, offset] = a;
  const uint32_t threshold = dropout_threshold(float(p));
  ORCHARD_DISPATCH_FLOATING(out.dtype(), {
    using C = compute_t<T>;
    // In float for 16-bit dtypes and float32, as metal/random.metal computes it.
    const C scale = C(1) / (C(1) - C(p));
    const T* x = in.data_as<T>();
    T* y = out.data_as<T>();
    parallel_for(out.numel(), grain_for(10), [&](int64_t begin, int64_t end) {
      PhiloxStream stream(seed, offset + uint64_t(begin));
      // Multiplying dropped elements by 0 keeps NaN and infinities NaN, as PyTorch does.
      for (int64_t i = begin; i < end; ++i) y[i] = T(C(x[i]) * (stream.next() >= threshold ? scale : C(0)));
    });
  });
}

}  // namespace orchard::cpu
