// Plans for reductions and softmax (kernels in metal/reduce.metal).
//
// A reduction of a contiguous [outer, reduced, inner] input into [outer, inner] runs one of three
// kernel variants, chosen from the shape:
//   - inner == 1 and rows longer than kShortRow: `_row`, a team of threads per row. A team is one
//     simdgroup (32 threads: a shuffle butterfly, no threadgroup memory or barrier) for rows up to
//     1024 elements; longer rows double it (64, 128, at most 256 threads from 8192 elements on) so
//     that each thread walks about kElementsPerThread elements before the team combines, the
//     simdgroups then meeting in threadgroup memory. Teams only grow while the whole grid is short
//     of kTargetThreads: when there are many rows, the rows already fill the GPU and small teams
//     save the cross-simdgroup round trip. Teams under 128 threads are packed kRowGroupThreads /
//     team to a threadgroup. Threadgroups stay at most 256 threads: the GPU needs no more to
//     saturate a core on one row, and the emulator runs each thread of a cooperating threadgroup as
//     an OS thread. A kernel that reads its row more than once (var, logsumexp, softmax: two or
//     three passes) sizes its team by the row alone: with small teams on many rows, the rows in
//     flight outgrow the caches and every pass reads device memory again (softmax of 8192 rows of
//     8192 floats in 32-thread teams ran at 0.6x PyTorch's bandwidth on an H200), where 256-thread
//     teams keep fewer rows in flight, within a core's cache between passes.
//   - inner == 1 and rows of at most kShortRow elements (empty ones included): `_thread`, one
//     thread per row. A team would leave most lanes idle and pay the combine for a handful of
//     elements; a thread reads its row's few contiguous elements (one or two cache lines).
//   - inner > 1: `_thread`, one thread per output walking the reduced dim with stride inner, so
//     adjacent threads read adjacent addresses (coalesced). When those threads are too few to fill
//     the GPU (fewer than kTargetThreads) and the reduced dim is long, `_split` also divides the
//     reduced dim: threadgroups of up to 32 adjacent columns times a power-of-two number of slices
//     (at most 256 threads, each slice at least kMinSlice elements), the slices' partial states
//     combined as a tree in threadgroup memory.
// Softmax over [rows, cols] uses `_thread` for rows of at most kShortRow elements and `_row` beyond,
// with the same team sizes.
//
// The plans assume the 32-wide simdgroups of Apple GPUs (threadgroup sizes are multiples of 32 and
// threadgroup memory is sized for width / 32 simdgroups per row). Launches cover at most 2^31
// threads or threadgroups; larger outer dims are split over launches.
#include <algorithm>

#include "launch_split.h"
#include "params.h"
#include "plans.h"
#include "reduce_params.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kSimdWidth = 32;
constexpr uint32_t kThreads = 256;            // threads per threadgroup of the _thread kernels
constexpr int64_t kShortRow = 32;             // rows up to this length get one thread each
constexpr int64_t kElementsPerThread = 32;    // what a row team aims to give each thread
constexpr uint32_t kMaxRowThreads = 256;      // the largest row team (and threadgroup)
constexpr uint32_t kRowGroupThreads = 128;    // threads per threadgroup when teams are smaller
constexpr uint32_t kMaxSplitThreads = 256;    // threads per threadgroup of the _split kernels
constexpr uint32_t kMaxSplitColumns = 32;     // adjacent columns per _split threadgroup
constexpr int64_t kTargetThreads = 16384;     // threads that keep every core of a large GPU busy
constexpr int64_t kMinSlice = 32;             // elements per slice of a _split reduction, at least
constexpr uint32_t kStateBytes = 16;          // threadgroup memory per partial state (>= any State)

enum class Variant { Thread, Row, Split };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::Thread: return "thread";
    case Variant::Row: return "row";
    case Variant::Split: return "split";
  }
  return "?";
}

#define ORCHARD_REDUCE_ENUMERATOR(E, ...) ReduceOp::E,
constexpr ReduceOp kReduceOps[] = {ORCHARD_REDUCE_OPS(ORCHARD_REDUCE_ENUMERATOR)};
#undef ORCHARD_REDUCE_ENUMERATOR

// The (op, input dtype) pairs metal/reduce.metal instantiates, matching what src/core requests:
// integer sums arrive as int64, mean/var/logsumexp as floats, the extremes and arg ops in any dtype.
bool has_reduce(ReduceOp op, DType t) {
  if (!is_metal_dtype(t)) return false;
  switch (op) {
    case ReduceOp::Sum: return is_floating(t) || t == DType::Int64;
    case ReduceOp::Mean:
    case ReduceOp::Var:
    case ReduceOp::LogSumExp: return is_floating(t);
    default: return true;
  }
}

std::string reduce_kernel(ReduceOp op, DType t, Variant v) {
  return std::string("reduce_") + op_name(op) + "_" + dtype_name(t) + "_" + variant_name(v);
}
std::string softmax_kernel(bool log, DType t, Variant v) {
  return std::string(log ? "reduce_log_softmax_" : "reduce_softmax_") + dtype_name(t) + "_" + variant_name(v);
}

// Team size for `rows` rows of n elements: a power of two from 32 to 256, doubled while the row
// gives each thread more than kElementsPerThread elements and, unless the kernel reads its row more
// than once (`passes` > 1), the grid is short of kTargetThreads.
uint32_t row_threads(int64_t rows, int64_t n, int passes) {
  uint32_t threads = kSimdWidth;
  while (threads < kMaxRowThreads && threads * kElementsPerThread < n && (passes > 1 || rows * threads < kTargetThreads))
    threads *= 2;
  return threads;
}

// How one launch is laid out; `params.outer` is filled in per launch.
struct Layout {
  Variant variant;
  uint32_t threads;         // per threadgroup
  int64_t outer_per_group;  // _row: rows per threadgroup; otherwise unused
  int64_t groups_per_outer; // _split: threadgroups per outer index; otherwise unused
  uint32_t threadgroup_bytes;
  ReduceParams params;
};

uint32_t round16(uint64_t n) { return uint32_t((n + 15) / 16 * 16); }

Layout row_layout(int64_t outer, int64_t n, uint32_t state_bytes, int passes) {
  Layout l{};
  l.variant = Variant::Row;
  const uint32_t team = row_threads(outer, n, passes);
  const int64_t rows = std::min<int64_t>(std::max<uint32_t>(1, kRowGroupThreads / team), outer);
  l.threads = team * uint32_t(rows);
  l.outer_per_group = rows;
  l.threadgroup_bytes = round16(uint64_t(rows) * (team / kSimdWidth) * state_bytes);
  l.params.width = team;
  l.params.depth = uint32_t(rows);
  return l;
}

Layout thread_layout() {
  Layout l{};
  l.variant = Variant::Thread;
  l.threads = kThreads;
  return l;
}

// Splits the reduced dim when the outputs alone are too few threads and there is enough to split.
Layout reduce_layout(ReduceOp op, int64_t outer, int64_t reduced, int64_t inner) {
  const int passes = op == ReduceOp::Var || op == ReduceOp::LogSumExp ? 2 : 1;
  if (inner == 1) return reduced > kShortRow ? row_layout(outer, reduced, kStateBytes, passes) : thread_layout();
  int64_t columns = 1;
  while (columns < inner && columns < kMaxSplitColumns) columns *= 2;
  const int64_t outputs = outer * inner;
  int64_t slices = 1;
  while (columns * slices * 2 <= kMaxSplitThreads && outputs * slices * 2 <= kTargetThreads &&
         reduced >= slices * 2 * kMinSlice)
    slices *= 2;
  if (slices == 1) return thread_layout();
  Layout l{};
  l.variant = Variant::Split;
  l.threads = uint32_t(columns * slices);
  l.groups_per_outer = (inner + columns - 1) / columns;
  l.threadgroup_bytes = uint32_t(columns * slices) * kStateBytes;
  l.params.width = uint32_t(columns);
  l.params.depth = uint32_t(slices);
  return l;
}

// The launches of `layout` over outer indices [0, outer), in pieces of at most kMaxLaunchThreads
// threads (_thread) or threadgroups; `kernel` names the variant's kernel. Each piece offsets the
// input and output by their elements per outer index; _thread kernels run `threads_per_outer`
// threads per outer index.
Launches plan_layout(const Layout& layout, const std::string& kernel, const Tensor& in, const Tensor& out,
                     int64_t outer, int64_t in_per_outer, int64_t out_per_outer, int64_t threads_per_outer) {
  Launches launches;
  if (outer == 0 || out_per_outer == 0) return launches;
  // Threads (or threadgroups) one outer index needs, and outer indices per launch.
  int64_t items_per_outer = 1;
  if (layout.variant == Variant::Thread) items_per_outer = threads_per_outer;
  if (layout.variant == Variant::Split) items_per_outer = layout.groups_per_outer;
  ORCHARD_CHECK(items_per_outer <= kMaxLaunchThreads, RuntimeError, "metal: reduction with ", out_per_outer,
                " outputs per outer index is too large for one launch");
  int64_t step = kMaxLaunchThreads / items_per_outer;
  if (layout.variant == Variant::Row) step = kMaxLaunchThreads / 2 * layout.outer_per_group;
  for (int64_t o0 = 0; o0 < outer; o0 += step) {
    const int64_t n = std::min(step, outer - o0);
    ReduceParams p = layout.params;
    p.outer = n;
    Launch launch(kernel);
    launch.buffer(out.storage()->data(), size_t(out.offset() + o0 * out_per_outer) * out.itemsize());
    launch.buffer(in.storage()->data(), size_t(in.offset() + o0 * in_per_outer) * in.itemsize());
    launch.constants(p);
    if (layout.variant != Variant::Thread) launch.threadgroup_memory(layout.threadgroup_bytes);
    uint32_t groups = 0;
    switch (layout.variant) {
      case Variant::Thread: groups = groups_for(n * threads_per_outer, layout.threads); break;
      case Variant::Row: groups = groups_for(n, layout.outer_per_group); break;
      case Variant::Split: groups = uint32_t(n * layout.groups_per_outer); break;
    }
    launches.push_back(launch.grid({groups}, {layout.threads}));
  }
  return launches;
}

}  // namespace

Launches plan_reduce(const ReduceArgs& args) {
  const auto& [op, in, out, outer, reduced, inner, correction] = args;
  const DType t = in.dtype();
  ORCHARD_CHECK(has_reduce(op, t), RuntimeError, "metal: no ", op_name(op), " kernel for ", dtype_name(t));
  Layout layout = reduce_layout(op, outer, reduced, inner);
  layout.params.reduced = reduced;
  layout.params.inner = inner;
  layout.params.correction = correction;
  return plan_layout(layout, reduce_kernel(op, t, layout.variant), in, out, outer, reduced * inner, inner, inner);
}

Launches plan_softmax(const SoftmaxArgs& args) {
  const auto& [in, out, log] = args;
  const DType t = in.dtype();
  ORCHARD_CHECK(is_floating(t) && is_metal_dtype(t), RuntimeError, "metal: no softmax kernel for ", dtype_name(t));
  if (in.numel() == 0) return {};
  const int64_t cols = in.shape().empty() ? 1 : in.shape().back();
  const int64_t rows = in.numel() / cols;
  // The row kernel's partial states are floats; it reads each row three times (max, sum, output).
  Layout layout = cols > kShortRow ? row_layout(rows, cols, sizeof(float), 3) : thread_layout();
  layout.params.reduced = cols;
  layout.params.inner = 1;
  return plan_layout(layout, softmax_kernel(log, t, layout.variant), in, out, rows, cols, cols, 1);
}

void reduce_kernel_names(std::vector<std::string>& names) {
  for (ReduceOp op : kReduceOps)
    for (DType t : kMetalDTypes)
      if (has_reduce(op, t))
        for (Variant v : {Variant::Thread, Variant::Row, Variant::Split}) names.push_back(reduce_kernel(op, t, v));
  for (bool log : {false, true})
    for (DType t : kFloatDTypes)
      for (Variant v : {Variant::Thread, Variant::Row}) names.push_back(softmax_kernel(log, t, v));
}

}  // namespace orchard::metal
