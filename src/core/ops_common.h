// Checks shared by the op front-ends; each error text lives here once.
#pragma once

#include <utility>

#include "ops.h"

namespace orchard::detail {

// Result dtype of a binary op, with Python scalars (wrapped numbers) promoting weakly.
DType result_type(const Tensor& a, const Tensor& b);

// The device an op runs on. Python scalars follow the other operand; tensors on two different
// devices raise RuntimeError naming both.
Device common_device(const char* op, std::initializer_list<Tensor> tensors);
// `t` on `device`: moves only Python scalars, which are created on the CPU.
Tensor on_device(const Tensor& t, Device device);
Tensor on_device(const Tensor& t, Device device, DType dtype);  // cast, then move

// In-place targets must not have several elements sharing memory (an expanded view).
void check_writable(const Tensor& out, const char* op);
// `src` as safe to read while `out` is written: a copy when the two overlap differently.
Tensor unaliased(const Tensor& src, const Tensor& out);

// DTypeError "<op>: <what> must be floating point, got <dtype>; convert with .to(orchard.float32)".
void check_floating(DType dtype, const char* op, const char* what = "input dtype");

void check_integer_index(const Tensor& index, const char* op);
// What an op does with index tensor entries outside [0, size) of its dimension `dim`. Index ops
// refuse them as PyTorch does; only Python-style keys (t[[-1]]) count negative entries from the end.
enum class IndexBounds {
  Refuse,                  // IndexError (index_select, embedding, cross-entropy targets)
  RefuseAsRuntimeError,    // PyTorch's RuntimeError (gather, scatter_add)
  WrapNegative,            // [-size, 0) counts from the end; anything else out of range is an IndexError
};
// `index` as contiguous int64 entries in [0, size), after the check `bounds` asks for; the error
// names the offending index, the dimension, its size and the valid range.
Tensor checked_index(const Tensor& index, int64_t size, const char* op, int64_t dim, IndexBounds bounds);

// {a1 @ b1, a2 @ b2}, two products of equal cost that the runtime may run side by side; records no
// gradient (for backward formulas, which run with grad mode off).
std::pair<Tensor, Tensor> matmul_pair(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2);

// x * keep / (1 - p) for the mask of Philox stream (seed, offset): dropout's forward, and its
// backward on the gradient. Records no gradient.
Tensor apply_dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);

}  // namespace orchard::detail
