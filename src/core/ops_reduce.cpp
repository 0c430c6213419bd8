#include <algorithm>
#include <limits>

#include "autocast.h"
#include "derivatives.h"
#include "ops_common.h"

namespace orchard {

namespace {

DType reduce_dtype(ReduceOp op, DType in) {
  switch (op) {
    case ReduceOp::Sum: return is_floating(in) ? in : DType::Int64;
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin: return DType::Int64;
    case ReduceOp::Max:
    case ReduceOp::Min: return in;
    case ReduceOp::LogSumExp: return is_floating(in) ? in : DType::Float32;
    case ReduceOp::Mean:
    case ReduceOp::Var:
      detail::check_floating(in, op_name(op));
      return in;
  }
  return in;
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim,
              int64_t correction) {
  if (autocast::Cast c{op_name(op), {x}}) return reduce(op, c[0], dims_in, keepdim, correction);
  autograd::Recorder rec(node_name(op), {x});
  std::vector<int64_t> dims = normalize_dims(dims_in, x.ndim(), op_name(op));
  if (dims.empty() || x.ndim() == 0) {
    dims.clear();
    for (int64_t i = 0; i < x.ndim(); ++i) dims.push_back(i);
  }
  DType out_dtype = reduce_dtype(op, x.dtype());
  std::vector<bool> reduced(x.ndim(), false);
  for (int64_t d : dims) reduced[d] = true;

  int64_t outer = 1, r = 1, inner = 1;
  Shape out_shape, kept_shape;
  for (int64_t i = 0; i < x.ndim(); ++i) {
    if (reduced[i]) { r *= x.shape()[i]; if (keepdim) out_shape.push_back(1); }
    else { out_shape.push_back(x.shape()[i]); kept_shape.push_back(x.shape()[i]); }
  }
  bool needs_elements = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  ORCHARD_CHECK(!(needs_elements && r == 0), ValueError, op_name(op),
                "(): cannot reduce over a dimension of size 0 (input shape ", shape_str(x.shape()),
                "); the result has no identity");

  // Canonical [outer, r, inner]: reduced dims that form one block of a contiguous input reduce in
  // place; scattered ones are moved last in a contiguous copy.
  Tensor in = x.to(op == ReduceOp::Sum && !is_floating(x.dtype()) ? DType::Int64
                   : op == ReduceOp::LogSumExp ? out_dtype : x.dtype());
  bool block = dims.empty() || dims.back() - dims.front() + 1 == int64_t(dims.size());
  if (block) {
    in = in.contiguous();
    for (int64_t i = 0; !dims.empty() && i < dims.front(); ++i) outer *= x.shape()[i];
    for (int64_t i = dims.empty() ? 0 : dims.back() + 1; i < x.ndim(); ++i) inner *= x.shape()[i];
  } else {
    std::vector<int64_t> perm;
    for (int64_t i = 0; i < x.ndim(); ++i) if (!reduced[i]) perm.push_back(i);
    perm.insert(perm.end(), dims.begin(), dims.end());
    in = in.permute(perm).contiguous();
    outer = checked_numel(kept_shape);
  }
  Tensor out = empty(out_shape, out_dtype, x.device());
  if (out.numel() > 0) runtime_for(x.device()).reduce({op, in, out, outer, r, inner, correction});
  return rec.finish(out, [&] { return derivatives::reduce(op, x, dims_in, correction, out); });
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce(ReduceOp::Sum, x, dims, keepdim); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce(ReduceOp::Mean, x, dims, keepdim); }
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce(ReduceOp::Max, x, dims, keepdim); }
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) { return reduce(ReduceOp::Min, x, dims, keepdim); }
Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  return reduce(ReduceOp::Var, x, dims, keepdim, correction);
}
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(ReduceOp::LogSumExp, x, dims, keepdim);
}

namespace {
// argmax/argmin without a dim run over the flattened tensor, as in PyTorch.
Tensor arg_reduce(ReduceOp op, const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  if (dim) return reduce(op, x, {*dim}, keepdim);
  Tensor flat = reduce(op, x.reshape({-1}), {0}, false);
  return keepdim ? flat.reshape(Shape(x.ndim(), 1)) : flat;
}
}  // namespace

Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim) { return arg_reduce(ReduceOp::ArgMax, x, dim, keepdim); }
Tensor argmin(const Tensor& x, std::optional<int64_t> dim, bool keepdim) { return arg_reduce(ReduceOp::ArgMin, x, dim, keepdim); }

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  // Values gathered at the indices, so the gradient goes to the chosen element only (PyTorch).
  Tensor indices = argmax(x, dim, true);
  Tensor values = gather(x, dim, indices);
  if (keepdim || x.ndim() == 0) return {values, indices};
  return {values.squeeze(dim), indices.squeeze(dim)};
}

std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  Tensor indices = argmin(x, dim, true);
  Tensor values = gather(x, dim, indices);
  if (keepdim || x.ndim() == 0) return {values, indices};
  return {values.squeeze(dim), indices.squeeze(dim)};
}

namespace {
Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  autograd::Recorder rec(log ? "LogSoftmaxBackward" : "SoftmaxBackward", {x});
  detail::check_floating(x.dtype(), log ? "log_softmax" : "softmax");
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, log ? "log_softmax" : "softmax");  // 0 or -1, as for other 0-d reductions
    Tensor r = softmax_impl(x.reshape({1}), 0, log).reshape({});
    return rec.finish(r, [&] { return derivatives::softmax(r, 0, log); });
  }
  int64_t d = normalize_dim(dim, x.ndim(), log ? "log_softmax" : "softmax");
  int64_t last = x.ndim() - 1;
  Tensor in = x.transpose(d, last).contiguous();
  Tensor out = empty(in.shape(), in.dtype(), in.device());
  if (out.numel() > 0) runtime_for(x.device()).softmax({in, out, log});
  Tensor result = d == last ? out : out.transpose(d, last).contiguous();
  return rec.finish(result, [&] { return derivatives::softmax(result, d, log); });
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  if (autocast::Cast c{"softmax", {x}}) return softmax(c[0], dim);
  return softmax_impl(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (autocast::Cast c{"log_softmax", {x}}) return log_softmax(c[0], dim);
  return softmax_impl(x, dim, true);
}

}  // namespace orchard
