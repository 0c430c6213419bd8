// Plans for copy, fill, unary, binary and where (kernels in metal/elementwise.metal). A loop whose
// operands are all contiguous runs the `_c` kernel on a flat index; any other runs the `_s` kernel,
// which addresses each operand through a StridedLoop. One thread per element, 256 per threadgroup
// (a multiple of the 32-wide SIMD groups that keeps every core's occupancy high for streaming work).
#include <functional>

#include "launch_split.h"
#include "params.h"
#include "plans.h"

namespace orchard::metal {

namespace {

constexpr uint32_t kThreads = 256;

std::string suffix(bool contiguous) { return contiguous ? "_c" : "_s"; }

std::string copy_kernel(DType to, DType from, bool contiguous) {
  return std::string("copy_") + dtype_name(to) + "_" + dtype_name(from) + suffix(contiguous);
}
std::string fill_kernel(DType t, bool contiguous) { return std::string("fill_") + dtype_name(t) + suffix(contiguous); }
std::string unary_kernel(UnaryOp op, DType t, bool contiguous) {
  return std::string("unary_") + op_name(op) + "_" + dtype_name(t) + suffix(contiguous);
}
std::string binary_kernel(BinaryOp op, DType t, bool contiguous) {
  return std::string("binary_") + op_name(op) + "_" + dtype_name(t) + suffix(contiguous);
}
std::string where_kernel(DType t) { return std::string("where_") + dtype_name(t) + "_s"; }

bool is_contiguous(const ElementwiseLoop& loop) {
  if (loop.shape.size() > 1) return false;
  for (const Operand& op : loop.operands)
    if (!loop.shape.empty() && loop.shape[0] > 1 && op.strides[0] != 1) return false;
  return true;
}

// Moves each operand of a piece of a loop to its row r (launch_split.h).
void shift_rows(ElementwiseLoop& piece, int64_t r, bool drop_dim0) {
  for (Operand& op : piece.operands) {
    op.offset += r * op.strides[0];
    if (drop_dim0) op.strides.erase(op.strides.begin());
  }
}

StridedLoop strided_params(const ElementwiseLoop& loop) {
  StridedLoop p{};
  p.ndim = uint32_t(loop.shape.size());
  p.numel = loop.numel();
  for (size_t d = 0; d < loop.shape.size(); ++d) {
    p.shape[d] = loop.shape[d];
    for (size_t k = 0; k < loop.operands.size(); ++k) p.strides[k][d] = loop.operands[k].strides[d];
  }
  return p;
}

// One launch per piece: the operands' buffers in order, then `extra` constants (if any), then the
// element count (contiguous kernels) or the StridedLoop.
template <typename Extra = std::nullptr_t>
Launches plan(const ElementwiseLoop& loop, const std::function<std::string(bool contiguous)>& kernel,
              const Extra* extra = nullptr, bool has_contiguous_kernel = true) {
  Launches out;
  for_each_piece(loop, shift_rows, [&](const ElementwiseLoop& piece) {
    const int64_t n = piece.numel();
    if (n == 0) return;
    const bool contiguous = has_contiguous_kernel && is_contiguous(piece);
    Launch launch(kernel(contiguous));
    for (const Operand& op : piece.operands)
      launch.buffer(op.storage->data(), size_t(op.offset) * itemsize(op.dtype));
    if (extra) launch.constants(*extra);
    if (contiguous) launch.constants(n);
    else launch.constants(strided_params(piece));
    out.push_back(launch.grid({groups_for(n, kThreads)}, {kThreads}));
  });
  return out;
}

}  // namespace

Launches plan_copy(const ElementwiseLoop& loop) {
  const DType to = loop.operands[0].dtype, from = loop.operands[1].dtype;
  return plan(loop, [&](bool c) { return copy_kernel(to, from, c); });
}

Launches plan_fill(const ElementwiseLoop& loop, Scalar value) {
  const FillValue v{float(value.f), 0, value.i};
  return plan(loop, [&](bool c) { return fill_kernel(loop.operands[0].dtype, c); }, &v);
}

Launches plan_unary(UnaryOp op, const ElementwiseLoop& loop) {
  const DType t = loop.operands[0].dtype;
  ORCHARD_CHECK(op_accepts(op, t), RuntimeError, "metal: no ", op_name(op), " kernel for ", dtype_name(t));
  return plan(loop, [&](bool c) { return unary_kernel(op, t, c); });
}

Launches plan_binary(BinaryOp op, const ElementwiseLoop& loop) {
  const DType t = loop.operands[1].dtype;
  ORCHARD_CHECK(op_accepts(op, t), RuntimeError, "metal: no ", op_name(op), " kernel for ", dtype_name(t));
  return plan(loop, [&](bool c) { return binary_kernel(op, t, c); });
}

Launches plan_where(const ElementwiseLoop& loop) {
  // Strided only: the condition and the values rarely share one contiguous layout.
  const DType t = loop.operands[0].dtype;
  return plan<std::nullptr_t>(loop, [&](bool) { return where_kernel(t); }, nullptr, false);
}

void elementwise_kernel_names(std::vector<std::string>& names) {
  for (bool c : {true, false}) {
    for (DType to : kMetalDTypes) {
      names.push_back(fill_kernel(to, c));
      for (DType from : kMetalDTypes) names.push_back(copy_kernel(to, from, c));
#define ORCHARD_UNARY_NAME(E, ...) \
  if (op_accepts(UnaryOp::E, to)) names.push_back(unary_kernel(UnaryOp::E, to, c));
#define ORCHARD_BINARY_NAME(E, ...) \
  if (op_accepts(BinaryOp::E, to)) names.push_back(binary_kernel(BinaryOp::E, to, c));
      ORCHARD_UNARY_OPS(ORCHARD_UNARY_NAME)
      ORCHARD_BINARY_OPS(ORCHARD_BINARY_NAME)
#undef ORCHARD_BINARY_NAME
#undef ORCHARD_UNARY_NAME
    }
  }
  for (DType t : kMetalDTypes) names.push_back(where_kernel(t));
}

}  // namespace orchard::metal
