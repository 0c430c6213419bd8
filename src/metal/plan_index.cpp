// Plans for index_select, gather, scatter_add and index_add (kernels in metal/index.metal). All operands are
// contiguous and index tensors int64, already bounds-checked and non-negative (src/core/ops_index.cpp).
// - index_select: one thread per out element of [outer, m, inner].
// - gather: one thread per element of index (= of out), its src offset through an IndexLoop.
// - scatter_add: one thread per line of index along `dim`, walking it in order. Without atomics,
//   the only elements that can collide are those of one line, so the result is deterministic and
//   adds in the CPU's order. Parallelism is index.numel() / index.size(dim) threads.
// - index_add: plan_sort's stable sort of index, then one thread per element of src, of which the
//   first of each run of equal index entries adds the run, in index order.
// 256 threads per threadgroup (streaming work, as the elementwise kernels); launches stay under
// 2^31 threads and ORCHARD_METAL_MAX_DIMS dims (longer loops split over launches).
#include <algorithm>

#include "index_params.h"
#include "launch_split.h"
#include "plans.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;

std::string kernel(const char* op, DType t) { return std::string("index_") + op + "_" + dtype_name(t); }

// A loop over `shape` addressing two contiguous tensors: operand 0 the full tensor (gather's src,
// scatter_add's out), operand 1 index and the tensor of index's shape. Offsets in elements.
struct Loop {
  Shape shape;
  Strides strides[2];
  int64_t offset[2] = {0, 0};
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

// Drops size-1 dims and merges neighbours that both operands step through as one.
void coalesce(Loop& loop) {
  Loop out;
  for (size_t d = 0; d < loop.shape.size(); ++d) {
    if (loop.shape[d] == 1) continue;
    const size_t last = out.shape.size();
    if (last > 0 && out.strides[0][last - 1] == loop.strides[0][d] * loop.shape[d] &&
        out.strides[1][last - 1] == loop.strides[1][d] * loop.shape[d]) {
      out.shape[last - 1] *= loop.shape[d];
      out.strides[0][last - 1] = loop.strides[0][d];
      out.strides[1][last - 1] = loop.strides[1][d];
      continue;
    }
    out.shape.push_back(loop.shape[d]);
    for (int k = 0; k < 2; ++k) out.strides[k].push_back(loop.strides[k][d]);
  }
  for (int k = 0; k < 2; ++k) out.offset[k] = loop.offset[k];
  loop = std::move(out);
}

// Moves both operands of a piece of a loop to its row r (launch_split.h).
void shift_rows(Loop& piece, int64_t r, bool drop_dim0) {
  for (int k = 0; k < 2; ++k) {
    piece.offset[k] += r * piece.strides[k][0];
    if (drop_dim0) piece.strides[k].erase(piece.strides[k].begin());
  }
}

IndexLoop loop_params(const Loop& loop) {
  IndexLoop p{};
  p.ndim = uint32_t(loop.shape.size());
  p.numel = loop.numel();
  for (size_t d = 0; d < loop.shape.size(); ++d) {
    p.shape[d] = loop.shape[d];
    for (int k = 0; k < 2; ++k) p.strides[k][d] = loop.strides[k][d];
  }
  return p;
}

size_t byte_offset(const Tensor& t, int64_t extra) { return size_t(t.offset() + extra) * t.itemsize(); }

// One launch per piece of `loop`: buffers out, src, index, then the IndexLoop. `full` is the
// tensor operand 0 addresses; the other two follow operand 1.
Launches plan_loop(const std::string& name, const Loop& loop, const Tensor& out, const Tensor& src,
                   const Tensor& index, bool out_is_full, IndexLoop base) {
  Launches launches;
  Loop coalesced = loop;
  coalesce(coalesced);
  for_each_piece(coalesced, shift_rows, [&](const Loop& piece) {
    const int64_t n = piece.numel();
    if (n == 0) return;
    IndexLoop p = loop_params(piece);
    p.dim_stride = base.dim_stride;
    p.dim_size = base.dim_size;
    p.index_dim_stride = base.index_dim_stride;
    const int64_t full = piece.offset[0], follow = piece.offset[1];
    Launch launch(name);
    launch.buffer(out.storage()->data(), byte_offset(out, out_is_full ? full : follow));
    launch.buffer(src.storage()->data(), byte_offset(src, out_is_full ? follow : full));
    launch.buffer(index.storage()->data(), byte_offset(index, follow));
    launch.constants(p);
    launches.push_back(launch.grid({groups_for(n, kThreads)}, {kThreads}));
  });
  return launches;
}

}  // namespace

Launches plan_index_select(const IndexSelectArgs& args) {
  const auto& [src, index, out, outer, inner] = args;
  Launches launches;
  const int64_t total = out.numel();
  if (total == 0) return launches;
  IndexSelectParams p{};
  p.n = src.numel() / (outer * inner);
  p.m = index.numel();
  p.inner = inner;
  split_launches(launches, kernel("select", src.dtype()), p, total, kThreads,
                 [&](Launch& l) { l.buffer(out).buffer(src).buffer(index); });
  return launches;
}

Launches plan_gather(const GatherArgs& args) {
  const auto& [src, index, out, dim] = args;
  // Every position of index; src's stride along dim is replaced by the index value's.
  const Strides fs = contiguous_strides(src.shape());
  Loop loop;
  loop.shape = index.shape();
  loop.strides[0] = fs;
  loop.strides[0][dim] = 0;
  loop.strides[1] = contiguous_strides(index.shape());
  IndexLoop base{};
  base.dim_stride = fs[dim];
  return plan_loop(kernel("gather", src.dtype()), loop, out, src, index, false, base);
}

Launches plan_scatter_add(const GatherArgs& args) {
  const auto& [src, index, out, dim] = args;
  // Every position of index except along dim: one line per thread.
  const Strides fs = contiguous_strides(out.shape());
  const Strides is = contiguous_strides(index.shape());
  if (index.numel() == 0) return {};
  Loop loop;
  for (int64_t d = 0; d < index.ndim(); ++d) {
    if (d == dim) continue;
    loop.shape.push_back(index.shape()[d]);
    loop.strides[0].push_back(fs[d]);
    loop.strides[1].push_back(is[d]);
  }
  IndexLoop base{};
  base.dim_stride = fs[dim];
  base.dim_size = index.shape()[dim];
  base.index_dim_stride = is[dim];
  return plan_loop(kernel("scatter_add", out.dtype()), loop, out, src, index, true, base);
}

Launches plan_index_add(const IndexAddArgs& args) {
  const auto& [src, index, out, outer, inner] = args;
  const int64_t m = index.numel(), total = outer * m * inner;
  if (total == 0) return {};
  // index sorted stably: its runs of equal entries, each added by one thread, in index order.
  Tensor keys = Tensor::empty({1, m}, DType::Int64, out.device()), order = Tensor::empty({1, m}, DType::Int64, out.device());
  Launches launches = plan_sort({index.reshape({1, m}), keys, order, 1, m, m, false});
  IndexAddParams p{};
  p.n = out.numel() / (outer * inner);
  p.m = m;
  p.inner = inner;
  split_launches(launches, kernel("add", out.dtype()), p, total, kThreads,
                 [&](Launch& l) { l.buffer(out).buffer(src).buffer(keys).buffer(order); });
  // The launches read the sorted index after this function returns: they keep it alive.
  for (Dispatch& d : launches) d.keep_alive.insert(d.keep_alive.end(), {keys, order});
  return launches;
}

void index_kernel_names(std::vector<std::string>& names) {
  for (const char* op : {"select", "gather", "scatter_add", "add"})
    for (DType t : kMetalDTypes) names.push_back(kernel(op, t));
}

}  // namespace orchard::metal
