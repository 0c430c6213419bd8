// The backward formula of every primitive op, in one place (as PyTorch keeps derivatives.yaml).
// Each returns the closure an op's Recorder stores; `needs[i]` says whether input i wants a
// gradient, so formulas skip work for the others. Results may have broadcast shapes or another
// dtype: Node::apply fits them to each input.
#pragma once

#include <vector>

#include "autograd.h"
#include "ops.h"

namespace orchard::derivatives {

using autograd::BackwardFn;
using Needs = std::vector<bool>;


BackwardFn unary(UnaryOp op, const Tensor& x, const Tensor& out);
// Which of a binary op's operands and result its backward reads, given which inputs need a gradient:
// binary() saves exactly these, and an in-place op keeps copies of them before overwriting.
struct BinarySaves {
  bool a, b, out;
};
BinarySaves binary_saves(BinaryOp op, const Needs& needs);
BackwardFn binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out, const Needs& needs);
BackwardFn where(const Tensor& cond);
BackwardFn identity(size_t inputs = 1);  // cast, clone, to(device), reshape-free copies
BackwardFn reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                  int64_t correction, const Tensor& out);
BackwardFn softmax(const Tensor& out, int64_t dim, bool log);
BackwardFn matmul(const Tensor& a, const Tensor& b, const Needs& needs);
BackwardFn addmm(const Shape& input_shape, const Tensor& a, const Tensor& b, const Needs& needs);
BackwardFn index_select(const Shape& x_shape, int64_t dim, const Tensor& index);
BackwardFn gather(const Shape& x_shape, int64_t dim, const Tensor& index);
BackwardFn scatter_add(int64_t dim, const Tensor& index, const Shape& src_shape, const Needs& needs);
BackwardFn index_add(int64_t dim, const Tensor& index, const Shape& source_shape, const Needs& needs);
BackwardFn cat(const std::vector<Tensor>& inputs, int64_t dim);
BackwardFn cumsum(int64_t dim);
BackwardFn flip(const std::vector<int64_t>& dims);

// Views: the gradient takes the inverse view (expand and squeeze go through identity/reshape;
// slice and select are Recorder::finish_view's).
BackwardFn reshape(const Shape& in_shape);
BackwardFn transpose(int64_t dim0, int64_t dim1);
BackwardFn permute(const std::vector<int64_t>& dims);

// In-place writes: the overwritten values get no gradient (fill_), or it flows to the source (copy_).
BackwardFn overwrite();
BackwardFn copy();

// Fused ops: the runtime's backward kernel, with what it reads saved here.
BackwardFn layer_norm(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd);
BackwardFn cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& lse, int64_t ignore_index,
                         Reduction reduction, const Tensor& count, const Shape& shape);
BackwardFn dropout(double p, uint64_t seed, uint64_t offset, DType dtype);
BackwardFn attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& mask, const AttentionParams& p);

}  // namespace orchard::derivatives
