// Reductions over the middle dim of a contiguous [outer, reduced, inner] input into contiguous
// [outer, inner] (sum, mean, max, min, argmax, argmin, var, logsumexp), and softmax / log_softmax
// over the rows of a contiguous [rows, cols] input. The results follow the CPU kernels
// (src/cpu/reduce.cpp): 16-bit floats accumulate in float; a NaN wins max/min and the arg ops report
// the first NaN; ties pick the first index; var is two-pass with divisor max(reduced - correction, 0);
// logsumexp shifts by the max unless it is infinite; an empty sum is 0 (so mean and var are NaN and
// logsumexp is -inf).
//
// Every op is written once (the *Op structs) against a reducer that hands back the combined state of
// the reduction to every thread working on one output. Three kernel variants supply the reducers:
//   _thread  one thread per output walking the reduced dim (adjacent threads read adjacent inner
//            indices, so loads coalesce when inner > 1); also used for short rows;
//   _row     (inner == 1) `depth` rows per threadgroup, `width` threads per row: the threads stride
//            along the row, combine across the simdgroup with a butterfly of simd_shuffle_xor and
//            across simdgroups through threadgroup memory;
//   _split   (inner > 1, few outputs, long reduced dim) `width` adjacent columns times `depth` slices
//            of the reduced dim per threadgroup, slices combined as a tree in threadgroup memory.
// The cross-lane steps use shuffles with the ops' own combine rather than simd_sum/simd_max: the
// order is then a fixed pairwise tree, NaNs propagate (simd_max would drop them, as fmax does) and
// the arg ops carry their indices. Sums are pairwise within a thread too (leaves of
// ORCHARD_REDUCE_LEAF elements merged like a binary counter), so their error grows with log(n).
#include "common.h"
#include "params.h"
#include "reduce_params.h"

#define ORCHARD_REDUCE_LEAF 16

namespace orchard_reduce {

// ---- helpers ---------------------------------------------------------------------------------

template <typename A> struct Bounds;
template <> struct Bounds<float> {
  static float lowest() { return -INFINITY; }
  static float highest() { return INFINITY; }
};
template <> struct Bounds<int32_t> {
  static int32_t lowest() { return -2147483647 - 1; }
  static int32_t highest() { return 2147483647; }
};
template <> struct Bounds<int64_t> {
  static int64_t lowest() { return -int64_t(0x7fffffffffffffff) - 1; }
  static int64_t highest() { return int64_t(0x7fffffffffffffff); }
};
template <> struct Bounds<bool> {
  static bool lowest() { return false; }
  static bool highest() { return true; }
};

// The max (kMax) or min of a and b, NaN-propagating (common.h); ties keep a, the earlier.
template <bool kMax, typename A> A extreme(A a, A b) { return kMax ? nan_max(a, b) : nan_min(a, b); }
// Whether v replaces the running extreme `best` of an arg op (the CPU's `takes`): strictly better,
// or a NaN, which then sticks.
template <bool kMax, typename A> bool better(A a, A b) { return kMax ? a > b : a < b; }
template <bool kMax, typename A> bool takes(A v, A best) { return !is_nan(best) && (better<kMax>(v, best) || is_nan(v)); }

// A lane's value from lane ^ mask, for every accumulator type (64-bit values travel as two halves,
// bools as uint).
inline float shuffle_xor(float v, ushort mask) { return simd_shuffle_xor(v, mask); }
inline int32_t shuffle_xor(int32_t v, ushort mask) { return simd_shuffle_xor(v, mask); }
inline int64_t shuffle_xor(int64_t v, ushort mask) {
  const uint64_t u = uint64_t(v);
  const uint lo = simd_shuffle_xor(uint(u), mask), hi = simd_shuffle_xor(uint(u >> 32), mask);
  return int64_t((uint64_t(hi) << 32) | uint64_t(lo));
}
inline bool shuffle_xor(bool v, ushort mask) { return simd_shuffle_xor(uint(v), mask) != 0u; }

// ---- kinds of reduction ------------------------------------------------------------------------
// A kind has a State, identity(), combine(a, b) and walk(x, k0, n, step, stride): the state of the
// n elements at reduced indices k = k0 + j * step (j < n), element k being x[k * stride].

template <typename A> struct Plain {
  A operator()(A v) const { return v; }
};
struct SquareDev {
  float mean;
  float operator()(float v) const { return (v - mean) * (v - mean); }
};
struct ShiftedExp {
  float shift;
  float operator()(float v) const { return exp(v - shift); }
};

// The sum of f(x), pairwise: leaves of ORCHARD_REDUCE_LEAF elements, level[l] holding the sum of
// 2^l leaves while bit l of the leaf count is set.
template <typename A, typename F> struct SumOf {
  typedef A State;
  F f;
  static A identity() { return A(0); }
  static A combine(A a, A b) { return a + b; }
  template <typename T> A walk(device const T* x, int64_t k0, int64_t n, int64_t step, int64_t stride) const {
    A level[32];
    uint leaves = 0;
    device const T* p = x + k0 * stride;
    const int64_t d = step * stride;
    for (int64_t j = 0; j < n; j += ORCHARD_REDUCE_LEAF) {
      const int64_t end = n - j < ORCHARD_REDUCE_LEAF ? n : j + ORCHARD_REDUCE_LEAF;
      A leaf = A(0);
      for (int64_t i = j; i < end; ++i) leaf += f(A(p[i * d]));
      uint l = 0;
      for (uint c = leaves++; (c & 1u) != 0u; c >>= 1) leaf = level[l++] + leaf;
      level[l] = leaf;
    }
    A total = A(0);
    for (uint l = 0; leaves != 0u; ++l, leaves >>= 1)
      if ((leaves & 1u) != 0u) total = level[l] + total;
    return total;
  }
};

// The max (kMax) or min, NaN-propagating.
template <typename A, bool kMax> struct ExtremeOf {
  typedef A State;
  static A identity() { return kMax ? Bounds<A>::lowest() : Bounds<A>::highest(); }
  static A combine(A a, A b) { return extreme<kMax>(a, b); }
  template <typename T> A walk(device const T* x, int64_t k0, int64_t n, int64_t step, int64_t stride) const {
    A best = identity();
    device const T* p = x + k0 * stride;
    const int64_t d = step * stride;
    for (int64_t j = 0; j < n; ++j) best = extreme<kMax>(best, A(p[j * d]));
    return best;
  }
};

template <typename A> struct Best {
  A v;
  int64_t k;
};
template <typename A> Best<A> shuffle_xor(Best<A> s, ushort mask) {
  Best<A> r;
  r.v = shuffle_xor(s.v, mask);
  r.k = shuffle_xor(s.k, mask);
  return r;
}

// The index of the max (kMax) or min: the first NaN if there is one, else the first index of the
// extreme. combine orders states by (value, index), so partial results merge in any order.
template <typename A, bool kMax> struct ArgOf {
  typedef Best<A> State;
  static State identity() {
    State s;
    s.v = ExtremeOf<A, kMax>::identity();
    s.k = int64_t(0x7fffffffffffffff);
    return s;
  }
  static State combine(State a, State b) {
    const bool a_nan = is_nan(a.v), b_nan = is_nan(b.v);
    const bool take_b = (a_nan || b_nan) ? (b_nan && (!a_nan || b.k < a.k))
                                         : (better<kMax>(b.v, a.v) || (b.v == a.v && b.k < a.k));
    return take_b ? b : a;
  }
  template <typename T> State walk(device const T* x, int64_t k0, int64_t n, int64_t step, int64_t stride) const {
    if (n <= 0) return identity();
    device const T* p = x + k0 * stride;
    const int64_t d = step * stride;
    State best;
    best.v = A(p[0]);
    best.k = k0;
    for (int64_t j = 1; j < n; ++j) {
      const A v = A(p[j * d]);
      if (takes<kMax>(v, best.v)) {
        best.v = v;
        best.k = k0 + j * step;
      }
    }
    return best;
  }
};

// Combines the states of `lanes` lanes (a power of two, at most the simdgroup) in a butterfly:
// every lane ends with the combination of all of them.
template <typename Kind> typename Kind::State simd_combine(typename Kind::State s, uint lanes) {
  for (uint mask = lanes / 2; mask > 0u; mask >>= 1) s = Kind::combine(s, shuffle_xor(s, ushort(mask)));
  return s;
}

// ---- reducers: who walks which elements of one output, and how the partial states meet ---------

// One thread reduces an output alone.
template <typename T> struct ThreadReducer {
  device const T* x;  // element k at x[k * stride]
  int64_t n, stride;
  template <typename Kind> typename Kind::State reduce(Kind kind) const { return kind.walk(x, 0, n, 1, stride); }
};

// `threads` threads reduce a contiguous row; every thread of the threadgroup calls reduce() alike.
template <typename T, typename State> struct RowReducer {
  device const T* x;
  int64_t n;                    // 0 for the idle rows of the last threadgroup
  uint t, threads;              // this thread's index in the row, the row's threads
  uint lane, lanes;             // this thread's lane, lanes per simdgroup (all within the row)
  uint simd, simds;             // this thread's simdgroup in the row, the row's simdgroups
  threadgroup State* partials;  // one slot per simdgroup of the row
  template <typename Kind> State reduce(Kind kind) const {
    const int64_t count = n > int64_t(t) ? (n - int64_t(t) + threads - 1) / threads : 0;
    State s = simd_combine<Kind>(kind.walk(x, t, count, threads, 1), lanes);
    if (simds > 1u) {
      if (lane == 0u) partials[simd] = s;
      threadgroup_barrier(mem_flags::mem_threadgroup);
      s = Kind::identity();
      if (lane < simds) s = partials[lane];
      s = simd_combine<Kind>(s, lanes);
      threadgroup_barrier(mem_flags::mem_threadgroup);  // the slots are free for the next reduce()
    }
    return s;
  }
};

// `slices` threads reduce one column (stride `stride`), each a strided slice of the reduced dim;
// `columns` columns side by side per threadgroup. Every thread of the threadgroup calls reduce().
template <typename T, typename State> struct SplitReducer {
  device const T* x;
  int64_t n, stride;            // n is 0 for the idle columns of the last threadgroup
  uint slice, slices;           // slices: a power of two
  uint column, columns;
  threadgroup State* partials;  // [slices][columns]
  template <typename Kind> State reduce(Kind kind) const {
    const int64_t count = n > int64_t(slice) ? (n - int64_t(slice) + slices - 1) / slices : 0;
    partials[slice * columns + column] = kind.walk(x, slice, count, slices, stride);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint w = slices / 2; w > 0u; w >>= 1) {
      if (slice < w) {
        const State a = partials[slice * columns + column];
        const State b = partials[(slice + w) * columns + column];
        partials[slice * columns + column] = Kind::combine(a, b);
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    const State s = partials[column];
    threadgroup_barrier(mem_flags::mem_threadgroup);  // the slots are free for the next reduce()
    return s;
  }
};

// The RowReducer of thread `tid` of threadgroup `group` in a _row launch, and its row.
template <typename T, typename State>
RowReducer<T, State> row_reducer(device const T* in, constant ReduceParams& p, threadgroup State* partials, uint group,
                                 uint tid, uint simd_width, thread int64_t& row) {
  const uint threads = p.width;
  const uint t = tid % threads, row_in_group = tid / threads;
  const uint lanes = simd_width < threads ? simd_width : threads;
  row = int64_t(group) * p.depth + row_in_group;
  const bool valid = row < p.outer;
  RowReducer<T, State> r;
  r.x = in + (valid ? row : 0) * p.reduced;
  r.n = valid ? p.reduced : 0;
  r.t = t;
  r.threads = threads;
  r.lane = t % lanes;
  r.lanes = lanes;
  r.simd = t / lanes;
  r.simds = threads / lanes;
  r.partials = partials + row_in_group * r.simds;
  return r;
}

// ---- the ops ---------------------------------------------------------------------------------
// run(r, p) reduces one output through reducer r and returns its value.

template <typename T> struct SumOp {
  typedef typename Compute<T>::type Acc;
  typedef Acc State;
  typedef T Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    return Out(r.reduce(SumOf<Acc, Plain<Acc> >()));
  }
};

template <typename T> struct MeanOp {
  typedef float Acc;
  typedef Acc State;
  typedef T Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    return Out(r.reduce(SumOf<Acc, Plain<Acc> >()) / Acc(p.reduced));
  }
};

// Two passes, as the CPU: the mean, then the sum of squared deviations from it.
template <typename T> struct VarOp {
  typedef float Acc;
  typedef Acc State;
  typedef T Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    SumOf<Acc, SquareDev> squares;
    squares.f.mean = r.reduce(SumOf<Acc, Plain<Acc> >()) / Acc(p.reduced);
    const Acc sum = r.reduce(squares);
    const int64_t dof = p.reduced - p.correction;
    return Out(sum / Acc(dof > 0 ? dof : 0));
  }
};

// Shifted by the max unless it is infinite (all -inf gives log(0) = -inf, a +inf gives +inf); an
// empty reduction keeps shift 0 and gives -inf; a NaN max makes everything NaN.
template <typename T> struct LogSumExpOp {
  typedef float Acc;
  typedef Acc State;
  typedef T Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    const Acc m = r.reduce(ExtremeOf<Acc, true>());
    SumOf<Acc, ShiftedExp> exps;
    exps.f.shift = isinf(m) ? Acc(0) : m;
    const Acc sum = r.reduce(exps);
    return Out(log(sum) + exps.f.shift);
  }
};

template <typename T, bool kMax> struct ExtremeOp {
  typedef typename Compute<T>::type Acc;
  typedef Acc State;
  typedef T Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    return Out(r.reduce(ExtremeOf<Acc, kMax>()));
  }
};
template <typename T> struct MaxOp : ExtremeOp<T, true> {};
template <typename T> struct MinOp : ExtremeOp<T, false> {};

template <typename T, bool kMax> struct ArgOp {
  typedef typename Compute<T>::type Acc;
  typedef Best<Acc> State;
  typedef int64_t Out;
  template <typename R> static Out run(thread const R& r, constant ReduceParams& p) {
    return r.reduce(ArgOf<Acc, kMax>()).k;
  }
};
template <typename T> struct ArgMaxOp : ArgOp<T, true> {};
template <typename T> struct ArgMinOp : ArgOp<T, false> {};

// Softmax of the n elements at k0 + j * step once the row's max m and sum of exp(x - m) are known,
// with the CPU's formulas (an all -inf row or a +inf or NaN in it gives NaN throughout).
template <bool kLog, typename T>
void softmax_store(device const T* x, device T* y, int64_t k0, int64_t n, int64_t step, float m, float sum) {
  if (kLog) {
    const float log_sum = log(sum);
    for (int64_t k = k0; k < n; k += step) y[k] = T(float(x[k]) - m - log_sum);
  } else {
    const float inv = 1.0f / sum;
    for (int64_t k = k0; k < n; k += step) y[k] = T(exp(float(x[k]) - m) * inv);
  }
}

}  // namespace orchard_reduce

// ---- reduction kernels -----------------------------------------------------------------------

// One thread per output o * inner + j.
template <typename T, typename Op>
[[kernel]] void reduce_thread(device typename Op::Out* out [[buffer(0)]], device const T* in [[buffer(1)]],
                              constant ReduceParams& p [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i >= p.outer * p.inner) return;
  const int64_t o = i / p.inner, j = i - o * p.inner;
  orchard_reduce::ThreadReducer<T> r;
  r.x = in + o * p.reduced * p.inner + j;
  r.n = p.reduced;
  r.stride = p.inner;
  out[i] = Op::run(r, p);
}

// p.depth rows of p.width threads per threadgroup (inner == 1).
template <typename T, typename Op>
[[kernel]] void reduce_row(device typename Op::Out* out [[buffer(0)]], device const T* in [[buffer(1)]],
                           constant ReduceParams& p [[buffer(2)]],
                           threadgroup typename Op::State* partials [[threadgroup(0)]],
                           uint group [[threadgroup_position_in_grid]], uint tid [[thread_index_in_threadgroup]],
                           uint simd_width [[threads_per_simdgroup]]) {
  int64_t row;
  const orchard_reduce::RowReducer<T, typename Op::State> r =
      orchard_reduce::row_reducer(in, p, partials, group, tid, simd_width, row);
  const typename Op::Out y = Op::run(r, p);
  if (row < p.outer && r.t == 0u) out[row] = y;
}

// p.width columns times p.depth slices per threadgroup; threadgroups run along inner, then outer.
template <typename T, typename Op>
[[kernel]] void reduce_split(device typename Op::Out* out [[buffer(0)]], device const T* in [[buffer(1)]],
                             constant ReduceParams& p [[buffer(2)]],
                             threadgroup typename Op::State* partials [[threadgroup(0)]],
                             uint group [[threadgroup_position_in_grid]], uint tid [[thread_index_in_threadgroup]]) {
  const int64_t column_groups = (p.inner + p.width - 1) / p.width;
  const int64_t o = group / column_groups;
  const int64_t j = (group - o * column_groups) * p.width + tid % p.width;
  const bool valid = j < p.inner;
  orchard_reduce::SplitReducer<T, typename Op::State> r;
  r.x = in + o * p.reduced * p.inner + (valid ? j : 0);
  r.n = valid ? p.reduced : 0;
  r.stride = p.inner;
  r.slice = tid / p.width;
  r.slices = p.depth;
  r.column = tid % p.width;
  r.columns = p.width;
  r.partials = partials;
  const typename Op::Out y = Op::run(r, p);
  if (valid && r.slice == 0u) out[o * p.inner + j] = y;
}

// ---- softmax kernels (rows: p.outer, cols: p.reduced) ------------------------------------------

template <typename T, bool kLog>
[[kernel]] void reduce_softmax_thread(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                                      constant ReduceParams& p [[buffer(2)]], uint row [[thread_position_in_grid]]) {
  if (row >= p.outer) return;
  orchard_reduce::ThreadReducer<T> r;
  r.x = in + row * p.reduced;
  r.n = p.reduced;
  r.stride = 1;
  const float m = r.reduce(orchard_reduce::ExtremeOf<float, true>());
  orchard_reduce::SumOf<float, orchard_reduce::ShiftedExp> exps;
  exps.f.shift = m;
  const float sum = r.reduce(exps);
  orchard_reduce::softmax_store<kLog>(r.x, out + row * p.reduced, 0, p.reduced, 1, m, sum);
}

template <typename T, bool kLog>
[[kernel]] void reduce_softmax_row(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                                   constant ReduceParams& p [[buffer(2)]], threadgroup float* partials [[threadgroup(0)]],
                                   uint group [[threadgroup_position_in_grid]], uint tid [[thread_index_in_threadgroup]],
                                   uint simd_width [[threads_per_simdgroup]]) {
  int64_t row;
  const orchard_reduce::RowReducer<T, float> r =
      orchard_reduce::row_reducer(in, p, partials, group, tid, simd_width, row);
  const float m = r.reduce(orchard_reduce::ExtremeOf<float, true>());
  orchard_reduce::SumOf<float, orchard_reduce::ShiftedExp> exps;
  exps.f.shift = m;
  const float sum = r.reduce(exps);
  if (row < p.outer) orchard_reduce::softmax_store<kLog>(r.x, out + row * p.reduced, r.t, r.n, r.threads, m, sum);
}

// ---- instantiations: reduce_<op>_<dtype>_<variant>, reduce_[log_]softmax_<dtype>_<variant> -------

#define ORCHARD_REDUCE(op, Op, name, T)                                                            \
  ORCHARD_KERNEL("reduce_" #op "_" #name "_thread", reduce_thread, T, orchard_reduce::Op<T>)       \
  ORCHARD_KERNEL("reduce_" #op "_" #name "_row", reduce_row, T, orchard_reduce::Op<T>)             \
  ORCHARD_KERNEL("reduce_" #op "_" #name "_split", reduce_split, T, orchard_reduce::Op<T>)
#define ORCHARD_REDUCE_ANY(name, T)                                                                \
  ORCHARD_REDUCE(amax, MaxOp, name, T) ORCHARD_REDUCE(amin, MinOp, name, T)                        \
  ORCHARD_REDUCE(argmax, ArgMaxOp, name, T) ORCHARD_REDUCE(argmin, ArgMinOp, name, T)
#define ORCHARD_SOFTMAX(name, T)                                                                   \
  ORCHARD_KERNEL("reduce_softmax_" #name "_thread", reduce_softmax_thread, T, false)               \
  ORCHARD_KERNEL("reduce_softmax_" #name "_row", reduce_softmax_row, T, false)                     \
  ORCHARD_KERNEL("reduce_log_softmax_" #name "_thread", reduce_softmax_thread, T, true)            \
  ORCHARD_KERNEL("reduce_log_softmax_" #name "_row", reduce_softmax_row, T, true)
#define ORCHARD_REDUCE_FLOAT(name, T)                                                              \
  ORCHARD_REDUCE_ANY(name, T) ORCHARD_REDUCE(sum, SumOp, name, T) ORCHARD_REDUCE(mean, MeanOp, name, T) \
  ORCHARD_REDUCE(var, VarOp, name, T) ORCHARD_REDUCE(logsumexp, LogSumExpOp, name, T) ORCHARD_SOFTMAX(name, T)
ORCHARD_REDUCE_ANY(bool, bool)
ORCHARD_REDUCE_ANY(int32, int32_t)
ORCHARD_REDUCE_ANY(int64, int64_t)
ORCHARD_REDUCE(sum, SumOp, int64, int64_t)
ORCHARD_FOR_EACH_FLOAT(ORCHARD_REDUCE_FLOAT)
