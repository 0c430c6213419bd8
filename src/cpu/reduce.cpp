// Reductions over the middle dim of a contiguous [outer, r, inner] input, and softmax over rows.
// Every op is built from three reduction kinds (a sum of f(x), a running max/min, an arg max/min)
// run by one driver that vectorises along the row when inner == 1 and along inner otherwise.
#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu_runtime.h"
#include "parallel.h"
#include "row_reduce.h"
#include "vec_math.h"

namespace orchard::cpu {

namespace {

constexpr int64_t kTile = 512;          // outputs per task when inner > 1 (accumulators stay in L1)
constexpr int64_t kRowLeaf = 512;       // leaf of the pairwise sum along a row: 16 adds per lane
constexpr int64_t kColLeaf = 64;        // rows per leaf of the pairwise sum down columns
constexpr int64_t kSplitWork = 1 << 16; // elements that make splitting the reduced dim worth it

template <typename T> constexpr bool kFloating = std::is_floating_point_v<compute_t<T>>;

constexpr auto identity = [](auto v, int64_t) { return v; };

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Each kind reduces a contiguous row (row) or w adjacent columns of stride `inner` (cols) over n
// elements starting at index k0 of the reduced dim; `i` is the flat index of the first output.
// merge(a, b) combines partial states of consecutive ranges, a before b.

// The sum of f(x, output index), pairwise over blocks for accuracy close to NumPy's.
template <typename Acc, typename F> struct Sum {
  using State = Acc;
  F f;

  template <typename T> Acc row(const T* x, int64_t n, int64_t k0, int64_t i) const {
    if (n > kRowLeaf) {
      int64_t half = ceil_div(n / 2, kRowLeaf) * kRowLeaf;
      return row(x, half, k0, i) + row(x + half, n - half, k0 + half, i);
    }
    prefetch_next(x, n);  // the next leaf, usually
    return lane_sum<Acc>(n, [&](int64_t k) { return f(Acc(x[k]), i); });
  }

  template <typename T>
  void cols(const T* x, int64_t n, int64_t inner, int64_t w, int64_t k0, int64_t i,
            Acc* __restrict acc) const {
    if (n > kColLeaf) {
      int64_t half = n / 2;
      Acc rest[kTile];
      cols(x, half, inner, w, k0, i, acc);
      cols(x + half * inner, n - half, inner, w, k0 + half, i, rest);
      for (int64_t j = 0; j < w; ++j) acc[j] += rest[j];
      return;
    }
    std::fill(acc, acc + w, Acc(0));
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < w; ++j) acc[j] += f(Acc(x[k * inner + j]), i + j);
  }

  static void merge(Acc& a, Acc b) { a += b; }
};

template <typename Acc, typename F> Sum<Acc, F> sum_of(F f) { return {f}; }

template <typename Acc, bool kMax> struct Extreme {
  using State = Acc;

  template <typename T> Acc row(const T* x, int64_t n, int64_t, int64_t) const {
    return lane_extreme<kMax, Acc>(x, n);
  }

  template <typename T>
  void cols(const T* x, int64_t n, int64_t inner, int64_t w, int64_t, int64_t, Acc* __restrict acc) const {
    for (int64_t j = 0; j < w; ++j) acc[j] = Acc(x[j]);
    for (int64_t k = 1; k < n; ++k)
      for (int64_t j = 0; j < w; ++j) {
        Acc v = Acc(x[k * inner + j]);
        acc[j] = takes<kMax>(v, acc[j]) ? v : acc[j];
      }
  }

  static void merge(Acc& a, Acc b) { a = takes<kMax>(b, a) ? b : a; }
};

template <typename Acc> struct Best {
  Acc v;
  int64_t k;
};

// Strict comparisons keep the first index of the extreme on ties.
template <typename Acc, bool kMax> struct Arg {
  using State = Best<Acc>;

  // The extreme first (vectorised), then the first element equal to it; a NaN extreme equals no
  // element, and the first NaN is the first x != x.
  template <typename T> State row(const T* x, int64_t n, int64_t k0, int64_t) const {
    Acc m = Extreme<Acc, kMax>{}.row(x, n, k0, 0);
    auto hit = [m](Acc v) { return v == m || is_nan(v); };
    int64_t k = 0;
    for (; k + kLanes<Acc> <= n; k += kLanes<Acc>) {
      int any = 0;
      for (int l = 0; l < kLanes<Acc>; ++l) any |= hit(Acc(x[k + l]));
      if (any) break;
    }
    while (!hit(Acc(x[k]))) ++k;
    return {m, k0 + k};
  }

  // Values and indices in separate arrays, updated with selects, so the loop over j vectorises.
  template <typename T>
  void cols(const T* x, int64_t n, int64_t inner, int64_t w, int64_t k0, int64_t, State* __restrict acc) const {
    Acc best[kTile];
    int64_t at[kTile];
    for (int64_t j = 0; j < w; ++j) {
      best[j] = Acc(x[j]);
      at[j] = 0;
    }
    for (int64_t k = 1; k < n; ++k)
      for (int64_t j = 0; j < w; ++j) {
        Acc v = Acc(x[k * inner + j]);
        bool t = takes<kMax>(v, best[j]);
        best[j] = t ? v : best[j];
        at[j] = t ? k : at[j];
      }
    for (int64_t j = 0; j < w; ++j) acc[j] = {best[j], k0 + at[j]};
  }

  static void merge(State& a, State b) {
    if (takes<kMax>(b.v, a.v)) a = b;
  }
};

// Reduces x viewed as [outer, r, inner] with `kind` and hands each output's flat index and final
// state to finish(i, state). Tasks are tiles of up to kTile outputs; when there are fewer tiles
// than threads the reduced dim is split as well and the partial states merged in order.
template <typename Kind, typename T, typename Finish>
void run(const Kind& kind, const T* x, int64_t outer, int64_t r, int64_t inner, Finish finish) {
  using State = typename Kind::State;
  int64_t width = std::min(inner, kTile);
  int64_t per_outer = ceil_div(inner, width);
  int64_t tiles = outer * per_outer;
  struct Tile {
    const T* base;
    int64_t first, w;
  };
  auto tile_at = [&](int64_t t) {
    int64_t o = t / per_outer, j0 = t % per_outer * width;
    return Tile{x + o * r * inner + j0, o * inner + j0, std::min(width, inner - j0)};
  };
  auto reduce_tile = [&](const Tile& t, int64_t k0, int64_t n, State* st) {
    if (inner == 1) st[0] = kind.row(t.base + k0, n, k0, t.first);
    else kind.cols(t.base + k0 * inner, n, inner, t.w, k0, t.first, st);
  };

  int64_t threads = num_threads();
  int64_t splits = tiles >= threads ? 1 : std::clamp<int64_t>(r * width / kSplitWork, 1, threads);
  if (splits == 1) {
    parallel_for(tiles, grain_for(r * width), [&](int64_t begin, int64_t end) {
      State st[kTile];
      for (int64_t t = begin; t < end; ++t) {
        Tile tile = tile_at(t);
        reduce_tile(tile, 0, r, st);
        for (int64_t j = 0; j < tile.w; ++j) finish(tile.first + j, st[j]);
      }
    });
    return;
  }
  int64_t chunk = ceil_div(ceil_div(r, splits), kRowLeaf) * kRowLeaf;  // keeps the pairwise leaves
  splits = ceil_div(r, chunk);
  std::unique_ptr<State[]> part(new State[tiles * splits * width]);  // not vector: vector<bool>
  parallel_for(tiles * splits, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      int64_t k0 = p % splits * chunk;
      reduce_tile(tile_at(p / splits), k0, std::min(chunk, r - k0), &part[p * width]);
    }
  });
  for (int64_t t = 0; t < tiles; ++t) {
    Tile tile = tile_at(t);
    const State* p = &part[t * splits * width];
    for (int64_t j = 0; j < tile.w; ++j) {
      State s = p[j];
      for (int64_t c = 1; c < splits; ++c) Kind::merge(s, p[c * width + j]);
      finish(tile.first + j, s);
    }
  }
}

template <typename T>
void reduce_typed(ReduceOp op, const T* x, const Tensor& out, int64_t outer, int64_t r,
                  int64_t inner, int64_t correction) {
  using Acc = compute_t<T>;
  T* y = out.data_as<T>();
  auto store = [y](int64_t i, Acc v) { y[i] = T(v); };
  auto store_index = [index = out.data_as<int64_t>()](int64_t i, Best<Acc> b) { index[i] = b.k; };
  switch (op) {
    case ReduceOp::Max: return run(Extreme<Acc, true>{}, x, outer, r, inner, store);
    case ReduceOp::Min: return run(Extreme<Acc, false>{}, x, outer, r, inner, store);
    case ReduceOp::ArgMax: return run(Arg<Acc, true>{}, x, outer, r, inner, store_index);
    case ReduceOp::ArgMin: return run(Arg<Acc, false>{}, x, outer, r, inner, store_index);
    case ReduceOp::Sum:
      if constexpr (kFloating<T> || std::is_same_v<T, int64_t>)
        run(sum_of<Acc>(identity), x, outer, r, inner, store);
      return;
    case ReduceOp::Mean:
      if constexpr (kFloating<T>)
        run(sum_of<Acc>(identity), x, outer, r, inner, [&](int64_t i, Acc s) { y[i] = T(s / Acc(r)); });
      return;
    case ReduceOp::Var:
      if constexpr (kFloating<T>) {
        std::vector<Acc> mean(outer * inner);
        run(sum_of<Acc>(identity), x, outer, r, inner, [&](int64_t i, Acc s) { mean[i] = s / Acc(r); });
        auto square_dev = [m = mean.data()](Acc v, int64_t i) { return (v - m[i]) * (v - m[i]); };
        Acc dof = Acc(std::max<int64_t>(r - correction, 0));
        run(sum_of<Acc>(square_dev), x, outer, r, inner, [&](int64_t i, Acc s) { y[i] = T(s / dof); });
      }
      return;
    case ReduceOp::LogSumExp:
      if constexpr (kFloating<T>) {
        // Shift by the max, except an infinite one (all -inf gives -inf, any +inf gives +inf).
        // r == 0 keeps shift 0 and sums nothing: log(0) = -inf.
        std::vector<Acc> shift(outer * inner, Acc(0));
        if (r > 0)
          run(Extreme<Acc, true>{}, x, outer, r, inner,
              [&](int64_t i, Acc m) { shift[i] = std::isinf(m) ? Acc(0) : m; });
        auto shifted_exp = [s = shift.data()](Acc v, int64_t i) { return vexp(v - s[i]); };
        run(sum_of<Acc>(shifted_exp), x, outer, r, inner,
            [&](int64_t i, Acc s) { y[i] = T(std::log(s) + shift[i]); });
      }
      return;
  }
}

template <typename T> void softmax_rows(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  using Acc = compute_t<T>;
  parallel_for(rows, grain_for(cols), [&](int64_t begin, int64_t end) {
    std::vector<Acc> e(cols);  // exp(x - max) of one row, so each element needs one exp
    for (int64_t row = begin; row < end; ++row) {
      const T* xr = x + row * cols;
      T* yr = y + row * cols;
      // An all -inf row gives max -inf, then -inf - -inf = NaN throughout, as in PyTorch.
      Acc m = Extreme<Acc, true>{}.row(xr, cols, 0, 0);
      for (int64_t k = 0; k < cols; ++k) e[k] = vexp(Acc(xr[k]) - m);
      Acc s = sum_of<Acc>(identity).row(e.data(), cols, 0, 0);
      if (log) {
        Acc log_s = std::log(s);
        for (int64_t k = 0; k < cols; ++k) yr[k] = T(Acc(xr[k]) - m - log_s);
      } else {
        Acc inv = Acc(1) / s;
        for (int64_t k = 0; k < cols; ++k) yr[k] = T(e[k] * inv);
      }
    }
  });
}

}  // namespace

void CpuRuntime::reduce(const ReduceArgs& a) {
  ORCHARD_DISPATCH(a.in.dtype(),
                   reduce_typed<T>(a.op, a.in.data_as<T>(), a.out, a.outer, a.reduced, a.inner, a.correction));
}

void CpuRuntime::softmax(const SoftmaxArgs& a) {
  int64_t cols = a.in.shape().back();
  ORCHARD_DISPATCH_FLOATING(a.in.dtype(), softmax_rows<T>(a.in.data_as<T>(), a.out.data_as<T>(),
                                                          a.in.numel() / cols, cols, a.log));
}

}  // namespace orchard::cpu
