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

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::GeluExact: return "gelu";
    case UnaryOp::GeluTanh: return "gelu_tanh";
    case UnaryOp::Sin: return "sin";
    case UnaryOp::Cos: return "cos";
    case UnaryOp::LogicalNot: return "logical_not";
    case UnaryOp::Erf: return "erf";
  }
  return "?";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
    case BinaryOp::SafeDiv: return "safe_div";
    case BinaryOp::GeluBackwardExact: return "gelu_backward";
    case BinaryOp::GeluBackwardTanh: return "gelu_tanh_backward";
    case BinaryOp::Eq: return "eq";
    case BinaryOp::Ne: return "ne";
    case BinaryOp::Lt: return "lt";
    case BinaryOp::Le: return "le";
    case BinaryOp::Gt: return "gt";
    case BinaryOp::Ge: return "ge";
    case BinaryOp::LogicalAnd: return "logical_and";
    case BinaryOp::LogicalOr: return "logical_or";
  }
  return "?";
}

// The (op, dtype) pairs metal/elementwise.metal instantiates, matching what src/core requests.
bool has_unary(UnaryOp op, DType t) {
  if (t == DType::Bool) return op == UnaryOp::LogicalNot || op == UnaryOp::Abs || op == UnaryOp::Relu;
  if (is_integral(t)) return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Relu;
  return op != UnaryOp::LogicalNot;
}

bool has_binary(BinaryOp op, DType t) {
  switch (op) {
    case BinaryOp::Sub:
    case BinaryOp::Pow: return t != DType::Bool;
    case BinaryOp::Div:
    case BinaryOp::SafeDiv:
    case BinaryOp::GeluBackwardExact:
    case BinaryOp::GeluBackwardTanh: return is_floating(t);
    default: return true;
  }
}

std::string suffix(bool contiguous) { return contiguous ? "_c" : "_s"; }

std::string copy_kernel(DType to, DType from, bool contiguous) {
  return std::string("copy_") + dtype_name(to) + "_" + dtype_name(from) + suffix(contiguous);
}
std::string fill_kernel(DType t, bool contiguous) { return std::string("fill_") + dtype_name(t) + suffix(contiguous); }
std::string unary_kernel(UnaryOp op, DType t, bool contiguous) {
  return std::string("unary_") + unary_name(op) + "_" + dtype_name(t) + suffix(contiguous);
}
std::string binary_kernel(BinaryOp op, DType t, bool contiguous) {
  return std::string("binary_") + binary_name(op) + "_" + dtype_name(t) + suffix(contiguous);
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
  ORCHARD_CHECK(has_unary(op, t), RuntimeError, "metal: no ", unary_name(op), " kernel for ", dtype_name(t));
  return plan(loop, [&](bool c) { return unary_kernel(op, t, c); });
}

Launches plan_binary(BinaryOp op, const ElementwiseLoop& loop) {
  const DType t = loop.operands[1].dtype;
  ORCHARD_CHECK(has_binary(op, t), RuntimeError, "metal: no ", binary_name(op), " kernel for ", dtype_name(t));
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
      for (int op = 0; op <= int(UnaryOp::Erf); ++op)
        if (has_unary(UnaryOp(op), to)) names.push_back(unary_kernel(UnaryOp(op), to, c));
      for (int op = 0; op <= int(BinaryOp::LogicalOr); ++op)
        if (has_binary(BinaryOp(op), to)) names.push_back(binary_kernel(BinaryOp(op), to, c));
    }
  }
  for (DType t : kMetalDTypes) names.push_back(where_kernel(t));
}

}  // namespace orchard::metal
