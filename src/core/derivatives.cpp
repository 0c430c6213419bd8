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

BackwardFn identity(size_t inputs) {
  return [inputs](const Tensor& g) { return Grads(inputs, g); };
}

// Each case saves exactly what its formula reads, in the closure it returns.
BackwardFn unary(UnaryOp op, const Tensor& x_in, const Tensor& out_in) {
  auto of_x = [&](auto formula) {
    return BackwardFn([x = SavedTensor(x_in), formula](const Tensor& g) { return Grads{formula(g, x.get())}; });
  };
  auto of_out = [&](auto formula) {
    return BackwardFn([y = SavedTensor(out_in), formula](const Tensor& g) { return Grads{formula(g, y.get())}; });
  };
  switch (op) {
    case UnaryOp::Neg: return [](const Tensor& g) { return Grads{unary(UnaryOp::Neg, g)}; };
    case UnaryOp::Abs:
      return of_x([](const Tensor& g, const Tensor& x) {
        return mul(g, sub(mask_as(gt(x, scalar(0, x)), x), mask_as(lt(x, scalar(0, x)), x)));
      });
    case UnaryOp::Relu:
      return of_x([](const Tensor& g, const Tensor& x) { return where(gt(x, scalar(0, x)), g, scalar(0, g)); });
    case UnaryOp::Exp: return of_out([](const Tensor& g, const Tensor& y) { return mul(g, y); });
    case UnaryOp::Log: return of_x([](const Tensor& g, const Tensor& x) { return div(g, x); });
    case UnaryOp::Sqrt: return of_out([](const Tensor& g, const Tensor& y) { return div(g, mul(scalar(2, y), y)); });
    case UnaryOp::Rsqrt:
      return of_out([](const Tensor& g, const Tensor& y) { return mul(g, mul(scalar(-0.5, y), mul(y, mul(y, y)))); });
    case UnaryOp::Tanh:
      return of_out([](const Tensor& g, const Tensor& y) { return mul(g, sub(scalar(1, y), mul(y, y))); });
    case UnaryOp::Sigmoid:
      return of_out([](const Tensor& g, const Tensor& y) { return mul(g, mul(y, sub(scalar(1, y), y))); });
    case UnaryOp::GeluExact:
    case UnaryOp::GeluTanh: {  // one fused kernel: grad * gelu'(x)
      const BinaryOp backward = op == UnaryOp::GeluTanh ? BinaryOp::GeluBackwardTanh : BinaryOp::GeluBackwardExact;
      return of_x([backward](const Tensor& g, const Tensor& x) { return orchard::binary(backward, g, x); });
    }
    case UnaryOp::Erf:
      return of_x([](const Tensor& g, const Tensor& x) {
        return mul(g, mul(scalar(2 / std::sqrt(M_PI), x), unary(UnaryOp::Exp, unary(UnaryOp::Neg, mul(x, x)))));
      });
    case UnaryOp::Sin: return of_x([](const Tensor& g, const Tensor& x) { return mul(g, unary(UnaryOp::Cos, x)); });
    case UnaryOp::Cos:
      return of_x([](const Tensor& g, const Tensor& x) { return unary(UnaryOp::Neg, mul(g, unary(UnaryOp::Sin, x))); });
    case UnaryOp::LogicalNot: break;
  }
  return identity();  // never recorded: bool outputs have no gradient
}

BinarySaves binary_saves(BinaryOp op, const Needs& needs) {
  const bool na = needs[0], nb = needs[1];
  switch (op) {
    case BinaryOp::Mul: return {nb, na, false};
    case BinaryOp::Div:
    case BinaryOp::SafeDiv: return {false, true, nb};
    case BinaryOp::Pow: return {true, true, nb};
    case BinaryOp::Maximum:
    case BinaryOp::Minimum: return {true, true, false};
    case BinaryOp::GeluBackwardExact:
    case BinaryOp::GeluBackwardTanh: return {false, na, false};
    default: return {false, false, false};
  }
}

BackwardFn binary(BinaryOp op, const Tensor& a_in_arg, const Tensor& b_in_arg, const Tensor& out_in,
                  const Needs& needs) {
  // A Python scalar lives on the host as float64: the backward formulas get it as a tensor of the
  // result's dtype on the result's device, where the gradients are computed.
  auto resident = [&](const Tensor& t) {
    return t.is_wrapped_number() && t.device() != out_in.device() ? t.to(out_in.dtype()).to(out_in.device()) : t;
  };
  const BinarySaves saves = binary_saves(op, needs);
  const SavedTensor a = saves.a ? resident(a_in_arg) : Tensor(), b = saves.b ? resident(b_in_arg) : Tensor(),
                    out = saves.out ? out_in : Tensor();
  const bool na = needs[0], nb = needs[1];
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
  switch (op) {
    case ReduceOp::Sum: return [=](const Tensor& g) { return Grads{g.reshape(kept).expand(shape)}; };
    case ReduceOp::Mean:
      return [=](const Tensor& g) { return Grads{div(g.reshape(kept), scalar(double(count), g)).expand(shape)}; };
    case ReduceOp::Max:
    case ReduceOp::Min:
      // Ties share the gradient evenly (PyTorch's amax/amin).
      return [=, x = SavedTensor(x_in), out = SavedTensor(out_in)](const Tensor& g) {
        Tensor hit = mask_as(eq(x.get(), out.get().reshape(kept)), g);
        return Grads{mul(div(g.reshape(kept), sum(hit, dims, true)), hit)};
      };
    case ReduceOp::Var:
      return [=, x = SavedTensor(x_in)](const Tensor& g) {
        const Tensor& v = x.get();
        Tensor centered = sub(v, mean(v, dims, true));
        double denom = std::max<double>(double(count - correction), 0.0);
        return Grads{mul(mul(g.reshape(kept), scalar(2.0 / denom, g)), centered)};
      };
    case ReduceOp::LogSumExp:
      return [=, x = SavedTensor(x_in), out = SavedTensor(out_in)](const Tensor& g) {
        return Grads{mul(g.reshape(kept), unary(UnaryOp::Exp, sub(x.get(), out.get().reshape(kept))))};
      };
    case ReduceOp::ArgMax:
    case ReduceOp::ArgMin: break;
  }
  return identity();  // never recorded: integer outputs have no gradient
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
    // Add each gathered slice back to the row it came from.
    return {orchard::index_add(zeros(x_shape, g.dtype(), g.device()), dim, index.get(), g)};
  };
}

BackwardFn gather(const Shape& x_shape, int64_t dim, const Tensor& index_in) {
  SavedTensor index = index_in;
  return [x_shape, dim, index](const Tensor& g) -> Grads {
    return {orchard::scatter_add(zeros(x_shape, g.dtype(), g.device()), dim, index.get(), g)};
  };
}

BackwardFn index_add(int64_t dim, const Tensor& index_in, const Shape& source_shape, const Needs& needs) {
  SavedTensor index = index_in;
  const bool nsource = needs.size() > 2 && needs[2];
  return [dim, index, source_shape, nsource](const Tensor& g) -> Grads {
    return {g, Tensor(), nsource ? orchard::index_select(g, dim, index.get()).reshape(source_shape) : Tensor()};
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

BackwardFn cumsum(int64_t dim) {
  // Each input element adds to every later output: the gradient is the reverse cumulative sum.
  return [dim](const Tensor& g) { return Grads{orchard::flip(orchard::cumsum(orchard::flip(g, {dim}), dim), {dim})}; };
}

BackwardFn flip(const std::vector<int64_t>& dims) {
  return [dims](const Tensor& g) { return Grads{orchard::flip(g, dims)}; };
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

// ---- views and copies ------------------------------------------------------------------------

BackwardFn reshape(const Shape& in_shape) {
  return [in_shape](const Tensor& g) { return Grads{g.reshape(in_shape)}; };
}

BackwardFn transpose(int64_t dim0, int64_t dim1) {
  return [dim0, dim1](const Tensor& g) { return Grads{g.transpose(dim0, dim1)}; };
}

BackwardFn permute(const std::vector<int64_t>& dims) {
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[dims[i]] = int64_t(i);
  return [inverse](const Tensor& g) { return Grads{g.permute(inverse)}; };
}

// ---- in-place writes --------------------------------------------------------------------------

BackwardFn overwrite() {
  return [](const Tensor&) { return Grads{Tensor()}; };
}

BackwardFn copy() {
  return [](const Tensor& g) { return Grads{Tensor(), g}; };
}

// ---- fused ops: each saves what its runtime backward reads ----------------------------------

BackwardFn layer_norm(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  return [sx = SavedTensor(x), sw = SavedTensor(weight), mean, rstd](const Tensor& g) {
    const Tensor &xs = sx.get(), &ws = sw.get();
    Tensor dx = empty(xs.shape(), xs.dtype(), xs.device());
    Tensor dw = empty(ws.shape(), ws.dtype(), ws.device()), db = empty(ws.shape(), ws.dtype(), ws.device());
    if (xs.numel() > 0) {
      runtime_for(xs.device()).layer_norm_backward({g.to(xs.dtype()).contiguous(), xs, ws, mean, rstd, dx, dw, db});
    } else {
      fill_(dw, 0.0);
      fill_(db, 0.0);
    }
    return Grads{dx, dw, db};
  };
}

BackwardFn cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& lse, int64_t ignore_index,
                         Reduction reduction, const Tensor& count, const Shape& shape) {
  return [sx = SavedTensor(logits), targets, lse, ignore_index, reduction, count, shape](const Tensor& g) {
    const Tensor& xs = sx.get();
    const int64_t rows = targets.numel();
    Tensor per_row = g.to(DType::Float32);
    if (reduction == Reduction::Mean) per_row = div(per_row, count);
    per_row = per_row.reshape(reduction == Reduction::None ? Shape{rows} : Shape{1}).expand({rows}).contiguous();
    Tensor dx = empty(xs.shape(), xs.dtype(), xs.device());
    if (rows > 0) runtime_for(xs.device()).cross_entropy_backward({xs, targets, lse, per_row, ignore_index, dx});
    return Grads{dx.reshape(shape)};
  };
}

BackwardFn dropout(double p, uint64_t seed, uint64_t offset, DType dtype) {
  // The same mask (same stream position) applied to the gradient: nothing saved.
  return [p, seed, offset, dtype](const Tensor& g) {
    return Grads{detail::apply_dropout(g.to(dtype), p, seed, offset)};
  };
}

BackwardFn attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                     const Tensor& mask, const AttentionParams& p) {
  return [q = SavedTensor(q), k = SavedTensor(k), v = SavedTensor(v), out = SavedTensor(out),
          lse = SavedTensor(lse), mask = SavedTensor(mask), p](const Tensor& grad) {
    const Tensor &qt = q.get(), &kt = k.get(), m = mask.get();
    const Device device = qt.device();
    AttentionParams params = p;
    params.mask = m.defined() ? &m : nullptr;
    const Tensor g = grad.to(qt.dtype()).contiguous();
    Tensor dq = empty(qt.shape(), qt.dtype(), device), dk = empty(kt.shape(), qt.dtype(), device),
           dv = empty(kt.shape(), qt.dtype(), device);
    if (qt.numel() > 0)
      runtime_for(device).attention_backward({qt, kt, v.get(), out.get(), lse.get(), g, params, dq, dk, dv});
    else
      for (Tensor* t : {&dk, &dv}) fill_(*t, 0.0);  // no query sees these keys
    return Grads{dq, dk, dv};
  };
}

}  // namespace orchard::derivatives
