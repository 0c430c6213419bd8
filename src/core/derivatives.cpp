#include "derivatives.h"

#include <cmath>
#include <optional>
#include <tuple>

#include "ops_common.h"

namespace orchard::derivatives {

using autograd::SavedTensor;
using Grads = std::vector<Tensor>;

namespace {

Tensor gt(const Tensor& a, const Tensor& b) { return orchard::binary(BinaryOp::Gt, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return orchard::binary(BinaryOp::Lt, a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return orchard::binary(BinaryOp::Eq, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return orchard::binary(BinaryOp::Ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return orchard::binary(BinaryOp::LogicalAnd, a, b); }
Tensor scalar(double v, const Tensor& like) { return scalar_tensor(v, like.dtype(), like.device(), true); }
Tensor mask_as(const Tensor& cond, const Tensor& like) { return cast(cond, like.dtype()); }

}  // namespace

const char* node_name(UnaryOp op) {
  static const char* names[] = {"NegBackward", "AbsBackward", "ExpBackward", "LogBackward", "SqrtBackward",
                                "RsqrtBackward", "TanhBackward", "SigmoidBackward", "ReluBackward",
                                "GeluBackward", "GeluBackward", "SinBackward", "CosBackward",
                                "LogicalNotBackward", "ErfBackward"};
  return names[int(op)];
}

const char* node_name(BinaryOp op) {
  static const char* names[] = {"AddBackward", "SubBackward", "MulBackward", "DivBackward", "PowBackward",
                                "MaximumBackward", "MinimumBackward", "SafeDivBackward", "GeluBackwardBackward",
                                "GeluBackwardBackward", "EqBackward",
                                "NeBackward", "LtBackward", "LeBackward", "GtBackward", "GeBackward",
                                "LogicalAndBackward", "LogicalOrBackward"};
  return names[int(op)];
}

const char* node_name(ReduceOp op) {
  static const char* names[] = {"SumBackward", "MeanBackward", "AmaxBackward", "AminBackward", "ArgmaxBackward",
                                "ArgminBackward", "VarBackward", "LogsumexpBackward"};
  return names[int(op)];
}

BackwardFn identity(size_t inputs) {
  return [inputs](const Tensor& g) { return Grads(inputs, g); };
}

BackwardFn unary(UnaryOp op, const Tensor& x_in, const Tensor& out_in) {
  bool uses_out = op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Tanh ||
                  op == UnaryOp::Sigmoid;
  SavedTensor x = uses_out ? Tensor() : x_in, out = uses_out ? out_in : Tensor();
  return [op, x, out](const Tensor& g) -> Grads {
    switch (op) {
      case UnaryOp::Neg: return {unary(UnaryOp::Neg, g)};
      case UnaryOp::Abs: {
        const Tensor& v = x.get();
        return {mul(g, sub(mask_as(gt(v, scalar(0, v)), v), mask_as(lt(v, scalar(0, v)), v)))};
      }
      case UnaryOp::Relu: return {where(gt(x.get(), scalar(0, x.get())), g, scalar(0, g))};
      case UnaryOp::Exp: return {mul(g, out.get())};
      case UnaryOp::Log: return {div(g, x.get())};
      case UnaryOp::Sqrt: return {div(g, mul(scalar(2, out.get()), out.get()))};
      case UnaryOp::Rsqrt: {
        const Tensor& y = out.get();
        return {mul(g, mul(scalar(-0.5, y), mul(y, mul(y, y))))};
      }
      case UnaryOp::Tanh: {
        const Tensor& y = out.get();
        return {mul(g, sub(scalar(1, y), mul(y, y)))};
      }
      case UnaryOp::Sigmoid: {
        const Tensor& y = out.get();
        return {mul(g, mul(y, sub(scalar(1, y), y)))};
      }
      case UnaryOp::GeluExact:
      case UnaryOp::GeluTanh:  // one fused kernel: grad * gelu'(x)
        return {orchard::binary(op == UnaryOp::GeluTanh ? BinaryOp::GeluBackwardTanh : BinaryOp::GeluBackwardExact,
                                g, x.get())};
      case UnaryOp::Erf: {
        const Tensor& v = x.get();
        return {mul(g, mul(scalar(2 / std::sqrt(M_PI), v), unary(UnaryOp::Exp, unary(UnaryOp::Neg, mul(v, v)))))};
      }
      case UnaryOp::Sin: return {mul(g, unary(UnaryOp::Cos, x.get()))};
      case UnaryOp::Cos: return {unary(UnaryOp::Neg, mul(g, unary(UnaryOp::Sin, x.get())))};
      case UnaryOp::LogicalNot: break;
    }
    return {Tensor()};
  };
}

BackwardFn binary(BinaryOp op, const Tensor& a_in_arg, const Tensor& b_in_arg, const Tensor& out_in,
                  const Needs& needs) {
  // A Python scalar lives on the host as float64: the backward formulas get it as a tensor of the
  // result's dtype on the result's device, where the gradients are computed.
  auto resident = [&](const Tensor& t) {
    return t.is_wrapped_number() && t.device() != out_in.device() ? t.to(out_in.dtype()).to(out_in.device()) : t;
  };
  const Tensor a_in = resident(a_in_arg), b_in = resident(b_in_arg);
  SavedTensor a, b, out;
  switch (op) {
    case BinaryOp::Mul: a = needs[1] ? a_in : Tensor(); b = needs[0] ? b_in : Tensor(); break;
    case BinaryOp::Div: case BinaryOp::SafeDiv: b = b_in; out = needs[1] ? out_in : Tensor(); break;
    case BinaryOp::Pow: a = a_in; b = b_in; out = needs[1] ? out_in : Tensor(); break;
    case BinaryOp::Maximum: case BinaryOp::Minimum: a = a_in; b = b_in; break;
    case BinaryOp::GeluBackwardExact: case BinaryOp::GeluBackwardTanh: b = needs[0] ? b_in : Tensor(); break;
    default: break;
  }
  bool na = needs[0], nb = needs[1];
  // x ** c for a Python number c (always on the host): d/dx = c * x^(c-1) with c known now, so
  // the common c = 2 and c = 1 need no pow at all.
  std::optional<double> exponent;
  if (op == BinaryOp::Pow && !nb && b_in_arg.is_wrapped_number() && b_in_arg.device() == Device::CPU)
    exponent = *b_in_arg.to(DType::Float64).contiguous().data_as<double>();
  return [op, a, b, out, na, nb, exponent](const Tensor& g) -> Grads {
    switch (op) {
      case BinaryOp::Add: return {g, g};
      case BinaryOp::Sub: return {g, nb ? unary(UnaryOp::Neg, g) : Tensor()};
      case BinaryOp::Mul: return {na ? mul(g, b.get()) : Tensor(), nb ? mul(g, a.get()) : Tensor()};
      case BinaryOp::Div:
        return {na ? div(g, b.get()) : Tensor(), nb ? unary(UnaryOp::Neg, div(mul(g, out.get()), b.get())) : Tensor()};
      case BinaryOp::SafeDiv:  // 0 wherever b == 0, like the forward
        return {na ? safe_div(g, b.get()) : Tensor(),
                nb ? unary(UnaryOp::Neg, safe_div(mul(g, out.get()), b.get())) : Tensor()};
      case BinaryOp::Pow: {
        if (exponent) {
          const double c = *exponent;
          const Tensor& x = a.get();
          if (c == 0) return {zeros(x.shape(), g.dtype(), g.device()), Tensor()};
          if (c == 1) return {g, Tensor()};
          if (c == 2) return {mul(mul(g, x), scalar(2, g)), Tensor()};
          return {mul(g, mul(scalar(c, x), pow(x, scalar(c - 1, x)))), Tensor()};
        }
        const Tensor &x = a.get(), &y = b.get();
        Tensor da, db;
        // As PyTorch: d/dx is 0 where y == 0 (not 0 * x^-1 = NaN at x == 0); d/dy is 0 where
        // x == 0 and y >= 0 (not 0 * log(0)).
        if (na)
          da = where(eq(y, scalar(0, y)), scalar(0, g), mul(g, mul(y, pow(x, sub(y, scalar(1, y))))));
        if (nb)
          db = mul(g, where(logical_and(eq(x, scalar(0, x)), ge(y, scalar(0, y))), scalar(0, x),
                            mul(out.get(), unary(UnaryOp::Log, x))));
        return {da, db};
      }
      case BinaryOp::Maximum:
      case BinaryOp::Minimum: {
        // Ties split the gradient evenly, as PyTorch does.
        const Tensor &x = a.get(), &y = b.get();
        Tensor wins = mask_as(op == BinaryOp::Maximum ? gt(x, y) : lt(x, y), g);
        Tensor ties = mul(scalar(0.5, g), mask_as(eq(x, y), g));
        Tensor wa = add(wins, ties);
        return {na ? mul(g, wa) : Tensor(), nb ? mul(g, sub(scalar(1, g), wa)) : Tensor()};
      }
      case BinaryOp::GeluBackwardExact:
      case BinaryOp::GeluBackwardTanh:
        // Linear in the incoming gradient; differentiating in x would need gelu''.
        ORCHARD_CHECK(!nb, RuntimeError, node_name(op), ": the second derivative of gelu is not implemented");
        return {orchard::binary(op, g, b.get()), Tensor()};
      default: break;
    }
    return {Tensor(), Tensor()};
  };
}

BackwardFn where(const Tensor& cond_in) {
  SavedTensor cond = cond_in;
  return [cond](const Tensor& g) -> Grads {
    Tensor zero = scalar_tensor(0, g.dtype(), g.device(), true);
    return {Tensor(), where(cond.get(), g, zero), where(cond.get(), zero, g)};
  };
}

BackwardFn reduce(ReduceOp op, const Tensor& x_in, const std::vector<int64_t>& dims_in,
                  int64_t correction, const Tensor& out_in) {
  int64_t ndim = x_in.ndim();
  std::vector<int64_t> dims = normalize_dims(dims_in, ndim, "reduce");
  if (ndim == 0) dims.clear();  // a 0-d input reduced "over dim 0" keeps its (empty) shape
  Shape shape = x_in.shape();
  // The reduced result's shape with the reduced dims kept as 1, so it broadcasts against the input.
  Shape kept = shape;
  int64_t count = 1;
  for (int64_t i = 0; i < ndim; ++i)
    if (dims.empty() || std::find(dims.begin(), dims.end(), i) != dims.end()) {
      count *= shape[i];
      kept[i] = 1;
    }
  bool uses_x = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Var || op == ReduceOp::LogSumExp;
  bool uses_out = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::LogSumExp;
  SavedTensor x = uses_x ? x_in : Tensor(), out = uses_out ? out_in : Tensor();
  return [=](const Tensor& g_in) -> Grads {
    Tensor g = g_in.reshape(kept);
    switch (op) {
      case ReduceOp::Sum: return {g.expand(shape)};
      case ReduceOp::Mean: return {div(g, scalar(double(count), g)).expand(shape)};
      case ReduceOp::Max:
      case ReduceOp::Min: {
        // Ties share the gradient evenly (PyTorch's amax/amin).
        Tensor hit = mask_as(eq(x.get(), out.get().reshape(kept)), g);
        return {mul(div(g, sum(hit, dims, true)), hit)};
      }
      case ReduceOp::Var: {
        const Tensor& v = x.get();
        Tensor centered = sub(v, mean(v, dims, true));
        double denom = std::max<double>(double(count - correction), 0.0);
        return {mul(mul(g, scalar(2.0 / denom, g)), centered)};
      }
      case ReduceOp::LogSumExp:
        return {mul(g, unary(UnaryOp::Exp, sub(x.get(), out.get().reshape(kept))))};
      default: break;
    }
    return {Tensor()};
  };
}

BackwardFn softmax(const Tensor& out_in, int64_t dim, bool log) {
  SavedTensor out = out_in;
  return [out, dim, log](const Tensor& g) -> Grads {
    const Tensor& y = out.get();
    if (log) return {sub(g, mul(unary(UnaryOp::Exp, y), sum(g, {dim}, true)))};
    return {mul(y, sub(g, sum(mul(g, y), {dim}, true)))};
  };
}

BackwardFn matmul(const Tensor& a_in, const Tensor& b_in, const Needs& needs) {
  SavedTensor a = needs[1] ? a_in : Tensor(), b = needs[0] ? b_in : Tensor();
  Shape a_shape = a_in.shape(), b_shape = b_in.shape();
  bool na = needs[0], nb = needs[1];
  return [=](const Tensor& g_in) -> Grads {
    // Promote 1-D operands as the forward did, then undo it on the results.
    Tensor g = g_in;
    if (a_shape.size() == 1 && b_shape.size() == 1) g = g.reshape({1, 1});
    else if (a_shape.size() == 1) g = g.unsqueeze(-2);
    else if (b_shape.size() == 1) g = g.unsqueeze(-1);
    const Tensor bm = !na ? Tensor() : b_shape.size() == 1 ? b.get().unsqueeze(-1) : b.get();
    const Tensor am = !nb ? Tensor() : a_shape.size() == 1 ? a.get().unsqueeze(0) : a.get();
    const Shape a2 = a_shape.size() == 1 ? Shape{1, a_shape[0]} : a_shape;
    const Shape b2 = b_shape.size() == 1 ? Shape{b_shape[0], 1} : b_shape;
    Tensor da, db;
    if (na && nb) std::tie(da, db) = detail::matmul_pair(g, bm.transpose(-1, -2), am.transpose(-1, -2), g);
    else if (na) da = orchard::matmul(g, bm.transpose(-1, -2));
    else if (nb) db = orchard::matmul(am.transpose(-1, -2), g);
    if (na) da = autograd::sum_to(da, a2).reshape(a_shape);
    if (nb) db = autograd::sum_to(db, b2).reshape(b_shape);
    return {da, db};
  };
}

BackwardFn addmm(const Shape& input_shape, const Tensor& a, const Tensor& b, const Needs& needs) {
  const bool product = needs[1] || needs[2];
  BackwardFn product_grads = product ? matmul(a, b, {needs[1], needs[2]}) : BackwardFn();
  const bool ni = needs[0];
  return [=](const Tensor& g) -> Grads {
    Grads ab = product ? product_grads(g) : Grads{Tensor(), Tensor()};
    return {ni ? autograd::sum_to(g, input_shape) : Tensor(), ab[0], ab[1]};
  };
}

BackwardFn index_select(const Shape& x_shape, int64_t dim, const Tensor& index_in) {
  SavedTensor index = index_in;
  return [x_shape, dim, index](const Tensor& g) -> Grads {
    // Scatter-add each gathered slice back to the row it came from.
    Shape idx_shape(g.ndim(), 1);
    idx_shape[dim] = g.shape()[dim];
    Tensor idx = index.get().reshape(idx_shape).expand(g.shape());
    return {orchard::scatter_add(zeros(x_shape, g.dtype(), g.device()), dim, idx, g)};
  };
}

BackwardFn gather(const Shape& x_shape, int64_t dim, const Tensor& index_in) {
  SavedTensor index = index_in;
  return [x_shape, dim, index](const Tensor& g) -> Grads {
    return {orchard::scatter_add(zeros(x_shape, g.dtype(), g.device()), dim, index.get(), g)};
  };
}

BackwardFn scatter_add(int64_t dim, const Tensor& index_in, const Shape& src_shape, const Needs& needs) {
  SavedTensor index = index_in;
  bool nsrc = needs.size() > 2 && needs[2];
  return [dim, index, src_shape, nsrc](const Tensor& g) -> Grads {
    if (!nsrc) return {g, Tensor(), Tensor()};
    const Tensor& idx = index.get();
    Tensor gsrc = orchard::gather(g, dim, idx);
    if (idx.shape() != src_shape) {  // only the index-shaped corner of src was read
      Tensor full = zeros(src_shape, g.dtype(), g.device());
      Tensor corner = full;
      for (int64_t d = 0; d < idx.ndim(); ++d) corner = corner.narrow(d, 0, idx.size(d));
      copy_(corner, gsrc);
      gsrc = full;
    }
    return {g, Tensor(), gsrc};
  };
}

BackwardFn cat(const std::vector<Tensor>& inputs, int64_t dim) {
  std::vector<int64_t> sizes;
  for (const Tensor& t : inputs) sizes.push_back(t.shape()[dim]);
  return [sizes, dim](const Tensor& g) {
    Grads out;
    int64_t start = 0;
    for (int64_t s : sizes) {
      out.push_back(g.narrow(dim, start, s));
      start += s;
    }
    return out;
  };
}

}  // namespace orchard::derivatives
