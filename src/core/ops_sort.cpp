// Sorting, cumulative sums and flips along a dim.
#include <algorithm>

#include "autocast.h"
#include "derivatives.h"
#include "ops_common.h"

namespace orchard {

using namespace detail;

namespace {

// Sorts x (at least 1-d) along dim d, recording nothing: (values, int64 indices), contiguous, of
// which the first k along d are in order. The runtime sorts rows of a contiguous [rows, n] input, so
// another dim is moved last and back.
std::pair<Tensor, Tensor> sort_rows(const Tensor& x, int64_t d, int64_t k, bool descending) {
  const int64_t last = x.ndim() - 1;
  Tensor in = (d == last ? x : x.transpose(d, last)).contiguous();
  Tensor values = empty(in.shape(), in.dtype(), in.device());
  Tensor indices = empty(in.shape(), DType::Int64, in.device());
  const int64_t n = in.size(last);
  if (in.numel() > 0) runtime_for(in.device()).sort({in, values, indices, in.numel() / n, n, k, descending});
  if (d == last) return {values, indices};
  return {values.transpose(d, last).contiguous(), indices.transpose(d, last).contiguous()};
}

// Sort, then keep the first k along dim: sort's and topk's body. The gradient goes to the chosen
// elements, as gather's does.
std::pair<Tensor, Tensor> sorted_prefix(const char* node, const char* op, const Tensor& x, int64_t k_or_all,
                                        int64_t dim, bool descending) {
  autograd::Recorder rec(node, {x});
  if (x.ndim() == 0) {  // the value itself, at index 0 (topk's k = 0 too, as PyTorch)
    normalize_dim(dim, 0, op);
    return {rec.finish(x.clone(), [] { return derivatives::identity(); }), zeros({}, DType::Int64, x.device())};
  }
  const int64_t d = normalize_dim(dim, x.ndim(), op);
  const int64_t k = k_or_all >= 0 ? k_or_all : x.size(d);
  auto [values, indices] = sort_rows(x, d, k, descending);
  if (k < x.size(d)) {
    values = values.narrow(d, 0, k).contiguous();
    indices = indices.narrow(d, 0, k).contiguous();
  }
  values = rec.finish(values, [&] { return derivatives::gather(x.shape(), d, indices); });
  return {values, indices};
}

}  // namespace

std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim, bool descending) {
  return sorted_prefix("SortBackward", "sort", x, -1, dim, descending);
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) { return sort(x, dim, descending).second; }

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  const int64_t d = normalize_dim(dim, x.ndim(), "topk");
  const int64_t size = x.ndim() == 0 ? 1 : x.size(d);
  ORCHARD_CHECK(k >= 0 && k <= size, RuntimeError, "topk: k = ", k, " is out of range for dimension ", d,
                " of size ", size, " (expected 0 <= k <= ", size, ")");
  return sorted_prefix("TopkBackward", "topk", x, k, dim, largest);
}

Tensor cumsum(const Tensor& x, int64_t dim, std::optional<DType> dtype) {
  if (!dtype)  // an explicit dtype overrides autocast's float32, as in PyTorch
    if (autocast::Cast c{"cumsum", {x}}) return cumsum(c[0], dim, dtype);
  autograd::Recorder rec("CumsumBackward", {x});
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, "cumsum");
    return rec.finish(cumsum(x.reshape({1}), 0, dtype).reshape({}), [] { return derivatives::identity(); });
  }
  const int64_t d = normalize_dim(dim, x.ndim(), "cumsum");
  // Integers and bool accumulate in int64 unless a dtype is given, as in PyTorch.
  const DType out_dtype = dtype ? *dtype : is_floating(x.dtype()) ? x.dtype() : DType::Int64;
  ORCHARD_CHECK(out_dtype != DType::Bool, DTypeError, "cumsum: cannot accumulate in bool; give an integer or "
                "floating dtype");
  Tensor in = x.to(out_dtype).contiguous();
  Tensor out = empty(in.shape(), out_dtype, in.device());
  const Shape& s = in.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[i];
  for (int64_t i = d + 1; i < in.ndim(); ++i) inner *= s[i];
  if (out.numel() > 0) runtime_for(in.device()).cumsum({in, out, outer, s[d], inner});
  return rec.finish(out, [&] { return derivatives::cumsum(d); });
}

Tensor flip(const Tensor& x, const std::vector<int64_t>& dims) {
  autograd::Recorder rec("FlipBackward", {x});
  std::vector<int64_t> ds;
  for (int64_t dim : dims) ds.push_back(normalize_dim(dim, x.ndim(), "flip"));
  std::sort(ds.begin(), ds.end());
  ORCHARD_CHECK(std::adjacent_find(ds.begin(), ds.end()) == ds.end(), RuntimeError, "flip: dims ",
                shape_str(dims), " name a dimension more than once");
  Tensor out = x;
  for (int64_t d : ds) {
    if (x.ndim() == 0) break;  // a 0-d tensor flips to itself
    const double n = double(x.size(d));
    out = index_select(out, d, arange(n - 1, -1, -1, DType::Int64, x.device()));
  }
  if (out.same(x)) out = x.clone();  // a copy, as PyTorch's
  return rec.finish(out, [&] { return derivatives::flip(ds); });
}

}  // namespace orchard
