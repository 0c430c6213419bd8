#include <cmath>

#include "autocast.h"
#include "derivatives.h"
#include "loop.h"
#include "ops_common.h"

namespace orchard {

namespace detail {

DType result_type(const Tensor& a, const Tensor& b) {
  if (a.is_wrapped_number() && !b.is_wrapped_number()) return promote_with_scalar(b.dtype(), a.dtype());
  if (b.is_wrapped_number() && !a.is_wrapped_number()) return promote_with_scalar(a.dtype(), b.dtype());
  DType t = promote_types(a.dtype(), b.dtype());
  // Two Python scalars (where(c, 1.0, 0.0)) give the default dtype of their kind, as in PyTorch.
  if (a.is_wrapped_number() && b.is_wrapped_number() && t == DType::Float64) return DType::Float32;
  return t;
}

Device common_device(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (t.is_wrapped_number()) continue;
    if (!first) { first = &t; continue; }
    ORCHARD_CHECK(t.device() == first->device(), RuntimeError, op,
                  ": expected all tensors on the same device, got ", device_name(first->device()),
                  " and ", device_name(t.device()), "; move them with .to(device)");
  }
  return first ? first->device() : tensors.begin()->device();
}

Tensor on_device(const Tensor& t, Device device) { return t.device() == device ? t : t.to(device); }

// Cast first: a Python scalar arrives as a float64 CPU tensor, which a device without float64 could
// not hold before the cast. It then reaches another device as a fill, queued like any kernel: copying
// it there would wait for the device's queue (Runtime::write synchronises) at every `x * 2`.
Tensor on_device(const Tensor& t, Device device, DType dtype) {
  const Tensor cast = t.to(dtype);
  if (!t.is_wrapped_number() || cast.device() == device) return on_device(cast, device);
  Tensor out = Tensor::empty({}, dtype, device);
  const Scalar value{*static_cast<const double*>(cast.to(DType::Float64).data()),
                     *static_cast<const int64_t*>(cast.to(DType::Int64).data())};
  runtime_for(device).fill(make_loop(out, {}), value);
  return out;
}

void check_floating(DType dtype, const char* op, const char* what) {
  ORCHARD_CHECK(is_floating(dtype), DTypeError, op, ": ", what, " must be floating point, got ", dtype_name(dtype),
                "; convert with .to(orchard.float32)");
}

void check_writable(const Tensor& out, const char* op) {
  if (out.numel() == 0) return;  // no elements, none shared (PyTorch writes to such views too)
  for (int64_t i = 0; i < out.ndim(); ++i)
    ORCHARD_CHECK(out.strides()[i] != 0 || out.shape()[i] <= 1, ValueError, op,
                  ": cannot write in place to an expanded tensor (several elements share memory); "
                  "call .clone() first");
}

Tensor unaliased(const Tensor& src, const Tensor& out) {
  if (!src.is_alias_of(out)) return src;
  bool same_layout = src.offset() == out.offset() && src.shape() == out.shape() && src.strides() == out.strides();
  return same_layout ? src : src.clone();
}

}  // namespace detail

using namespace detail;

namespace {

// The dtype an elementwise op computes in, given its (promoted) input dtype: what its table row's
// inputs column says (op_table.h).
DType compute_dtype(OpInputs inputs, DType t, const char* op) {
  switch (inputs) {
    case OpInputs::Float: return is_floating(t) ? t : DType::Float32;
    case OpInputs::Bool: return DType::Bool;
    case OpInputs::Number:
      ORCHARD_CHECK(t != DType::Bool, DTypeError, op, ": not supported for bool tensors; use logical_not(), "
                    "logical_and() or logical_or(), or convert with .to(orchard.int64)");
      return t;
    case OpInputs::Any: break;
  }
  return t;
}

}  // namespace

Tensor cast(const Tensor& x, DType dtype) {
  autograd::Recorder rec("ToCopyBackward", {x});  // Node::apply casts the gradient back
  Tensor out = empty(x.shape(), dtype, x.device());
  copy_(out, x);
  return rec.finish(out, [] { return derivatives::identity(); });
}

Tensor unary(UnaryOp op, const Tensor& x) {
  if (autocast::Cast c{op_name(op), {x}}) return unary(op, c[0]);
  autograd::Recorder rec(node_name(op), {x});
  const DType dt = compute_dtype(op_inputs(op), x.dtype(), op_name(op));
  Tensor in = x.to(dt);
  Tensor out = empty(x.shape(), dt, x.device());
  runtime_for(x.device()).unary(op, make_loop(out, {in}));
  return rec.finish(out, [&] { return derivatives::unary(op, x, out); });
}

namespace {
// PyTorch's rule: a 0-d CPU tensor joins an elementwise op on another device as a Python number
// would. It is cast to the result's dtype and moved there through to(), so its gradient comes back.
std::pair<Tensor, Tensor> cpu_scalars_follow(const Tensor& a, const Tensor& b) {
  auto cpu_scalar = [](const Tensor& t) {
    return t.ndim() == 0 && t.device() == Device::CPU && !t.is_wrapped_number();
  };
  if (a.device() == b.device() || a.is_wrapped_number() || b.is_wrapped_number()) return {a, b};
  const DType dt = result_type(a, b);
  if (cpu_scalar(b)) return {a, b.to(dt).to(a.device())};
  if (cpu_scalar(a)) return {a.to(dt).to(b.device()), b};
  return {a, b};
}
}  // namespace

Tensor binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  if (autocast::Cast c{op_name(op), {a_in, b_in}}) return binary(op, c[0], c[1]);
  const auto [a, b] = cpu_scalars_follow(a_in, b_in);
  autograd::Recorder rec(node_name(op), {a, b});
  Device dev = common_device(op_name(op), {a, b});
  DType dt = compute_dtype(op_inputs(op), result_type(a, b), op_name(op));
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = empty(shape, op_output(op) == OpOutput::Bool ? DType::Bool : dt, dev);
  Tensor ca = on_device(a, dev, dt), cb = on_device(b, dev, dt);
  runtime_for(dev).binary(op, make_loop(out, {ca, cb}));
  return rec.finish(out, [&] { return derivatives::binary(op, a, b, out, {rec.needs(0), rec.needs(1)}); });
}

namespace {
// b * alpha for add/sub. As in PyTorch, alpha keeps integer inputs integral and must then be whole.
Tensor scaled(const char* op, const Tensor& a, const Tensor& b, double alpha) {
  if (alpha == 1.0) return b;
  const bool whole = std::isfinite(alpha) && alpha == std::trunc(alpha);
  ORCHARD_CHECK(whole || is_floating(result_type(a, b)), ValueError, op, ": alpha must be a whole number for ",
                dtype_name(result_type(a, b)), " inputs, got ", alpha);
  // Bool inputs stay bool, as PyTorch computes b * alpha in the inputs' common dtype.
  const bool boolean = result_type(a, b) == DType::Bool;
  if (b.is_wrapped_number()) {  // a Python scalar times alpha is still one: weakly typed, on the host
    const double v = b.to(DType::Float64).data_as<double>()[0] * alpha;
    const DType t = b.dtype() == DType::Float64 || !whole ? DType::Float64 : boolean ? DType::Bool : DType::Int64;
    return scalar_tensor(v, t, Device::CPU, true);
  }
  const DType t = boolean ? DType::Bool : whole ? DType::Int64 : DType::Float64;
  // A fractional alpha scales b in the common dtype (float16 + int * 0.5 stays float16).
  return mul(whole ? b : b.to(result_type(a, b)), scalar_tensor(alpha, t, Device::CPU, true));  // a host scalar
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b, double alpha) { return binary(BinaryOp::Add, a, scaled("add", a, b, alpha)); }
Tensor sub(const Tensor& a, const Tensor& b, double alpha) { return binary(BinaryOp::Sub, a, scaled("sub", a, b, alpha)); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Pow, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }
Tensor safe_div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::SafeDiv, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  ORCHARD_CHECK(cond.dtype() == DType::Bool, DTypeError, "where: condition must be a bool tensor, got ",
                dtype_name(cond.dtype()));
  autograd::Recorder rec("WhereBackward", {cond, a, b});
  Device dev = common_device("where", {cond, a, b});
  DType dt = result_type(a, b);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  Tensor out = empty(shape, dt, dev);
  runtime_for(dev).where(make_loop(out, {on_device(cond, dev), on_device(a, dev, dt), on_device(b, dev, dt)}));
  return rec.finish(out, [&] { return derivatives::where(cond); });
}

Tensor clamp(const Tensor& x, std::optional<Tensor> min, std::optional<Tensor> max) {
  ORCHARD_CHECK(min || max, ValueError, "clamp: at least one of min and max must be given");
  // Composed from where, so the gradient reaches x wherever it lies within [min, max] (bounds
  // included) and the bound elsewhere, as in PyTorch; NaN in x propagates, and so does a NaN bound
  // (it is taken where it is NaN, as PyTorch's clamp does).
  auto beyond = [](BinaryOp cmp, const Tensor& v, const Tensor& bound) {
    Tensor c = binary(cmp, v, bound);
    if (!is_floating(bound.dtype())) return c;
    Tensor nan = binary(BinaryOp::Ne, bound, bound);  // on the host for a Python scalar bound
    return binary(BinaryOp::LogicalOr, c, on_device(nan, c.device()));
  };
  Tensor out = x;
  if (min) out = where(beyond(BinaryOp::Lt, out, *min), *min, out);
  if (max) out = where(beyond(BinaryOp::Gt, out, *max), *max, out);
  return out;
}

namespace {
// masked_fill's operands checked and the filled values computed: where(mask, value, x) in x's dtype.
Tensor masked_values(const Tensor& x, const Tensor& mask, const Tensor& value, const char* op) {
  ORCHARD_CHECK(mask.dtype() == DType::Bool, RuntimeError, op, ": mask must be a bool tensor, got ",
                dtype_name(mask.dtype()));
  ORCHARD_CHECK(value.ndim() == 0, RuntimeError, op, ": value must be a number or a 0-d tensor, got a tensor of "
                "shape ", shape_str(value.shape()));
  const Device dev = common_device(op, {x, mask});
  Tensor v = cast(value, x.dtype());
  return where(mask, v.device() == dev ? v : v.to(dev), x);
}
}  // namespace

Tensor masked_fill(const Tensor& x, const Tensor& mask, const Tensor& value) {
  return masked_values(x, mask, value, "masked_fill");
}

Tensor& masked_fill_(Tensor& x, const Tensor& mask, const Tensor& value) {
  ORCHARD_CHECK(broadcast_shapes(x.shape(), mask.shape()) == x.shape(), RuntimeError, "masked_fill_: mask of shape ",
                shape_str(mask.shape()), " cannot be broadcast to the shape ", shape_str(x.shape()),
                " of the tensor filled in place");
  return copy_(x, masked_values(x, mask, value, "masked_fill_"));
}

Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return unary(tanh_approximation ? UnaryOp::GeluTanh : UnaryOp::GeluExact, x);
}

Tensor& binary_(BinaryOp op, Tensor& out, const Tensor& value) {
  ORCHARD_CHECK(op_output(op) == OpOutput::Same, ValueError, op_name(op), "_: comparisons have no in-place form");
  autograd::Recorder rec(node_name(op), {out, value}, &out);
  check_writable(out, op_name(op));
  Device dev = common_device(op_name(op), {out, value});
  DType dt = compute_dtype(op_inputs(op), result_type(out, value), op_name(op));
  ORCHARD_CHECK(can_cast(dt, out.dtype()), DTypeError, op_name(op), "_: result type ",
                dtype_name(dt), " cannot be stored in the ", dtype_name(out.dtype()),
                " tensor being updated in place");
  ORCHARD_CHECK(broadcast_shapes(out.shape(), value.shape()) == out.shape(), ValueError, op_name(op),
                "_: value of shape ", shape_str(value.shape()), " cannot be broadcast to the shape ",
                shape_str(out.shape()), " of the tensor updated in place");
  Tensor v = unaliased(on_device(value, dev, out.dtype()), out);
  // What backward reads must stay as the formula saw it, though this op overwrites `out` and later
  // in-place ops may overwrite it again: copies of the target before the op (mul's gradient for
  // `value`, pow, maximum/minimum), of `value` when it is the target itself (t.mul_(t)), and of
  // the result (div's gradient for `value`).
  const derivatives::Needs needs{rec.needs(0), rec.needs(1)};
  const derivatives::BinarySaves saves =
      rec.active() ? derivatives::binary_saves(op, needs) : derivatives::BinarySaves{false, false, false};
  Tensor before = saves.a ? out.clone() : out;
  Tensor value_seen = saves.b && value.is_alias_of(out) ? value.clone() : value;
  runtime_for(dev).binary(op, make_loop(out, {out, v}));
  out.storage()->bump_version();
  rec.finish(out, [&] { return derivatives::binary(op, before, value_seen, saves.out ? out.clone() : out, needs); });
  return out;
}

Tensor& fill_(Tensor& out, double value) {
  autograd::Recorder rec("FillBackward", {out}, &out);
  check_writable(out, "fill_");
  runtime_for(out.device()).fill(make_loop(out, {}), Scalar::of(value));
  out.storage()->bump_version();
  rec.finish(out, [] { return derivatives::overwrite(); });
  return out;
}

Tensor& copy_(Tensor& out, const Tensor& src) {
  autograd::Recorder rec("CopyBackward", {out, src}, &out);
  check_writable(out, "copy_");
  ORCHARD_CHECK(broadcast_shapes(out.shape(), src.shape()) == out.shape(), ValueError,
                "copy_: source of shape ", shape_str(src.shape()), " cannot be broadcast to ",
                shape_str(out.shape()));
  if (src.device() == out.device()) {
    runtime_for(out.device()).copy(make_loop(out, {unaliased(src, out)}));
  } else {
    // Across devices: converted on the source device, then the contiguous bytes cross once through
    // host memory (Runtime::read/write; between two accelerators, through a host copy).
    Tensor staged = src.to(out.dtype()).expand(out.shape()).contiguous();
    Tensor landing = out.is_contiguous() ? out : empty(out.shape(), out.dtype(), out.device());
    if (out.device() == Device::CPU) {
      runtime_for(src.device()).read(staged, landing.data());
    } else if (src.device() == Device::CPU) {
      runtime_for(out.device()).write(landing, staged.data());
    } else {
      Tensor host = empty(out.shape(), out.dtype(), Device::CPU);
      runtime_for(src.device()).read(staged, host.data());
      runtime_for(out.device()).write(landing, host.data());
    }
    if (!landing.same(out)) runtime_for(out.device()).copy(make_loop(out, {landing}));
  }
  out.storage()->bump_version();
  rec.finish(out, [] { return derivatives::copy(); });
  return out;
}

}  // namespace orchard
