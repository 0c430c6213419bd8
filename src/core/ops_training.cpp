// Front-ends of the fused training ops: layer norm, cross-entropy, dropout, the AdamW step and loss
// scaling's unscale with its inf check.
#include "autocast.h"
#include "derivatives.h"
#include "loop.h"
#include "ops_common.h"

namespace orchard {

Tensor detail::apply_dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) runtime_for(x.device()).dropout({x.contiguous(), out, p, seed, offset});
  return out;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  if (autocast::Cast c{"layer_norm", {x, weight, bias}}) return layer_norm(c[0], c[1], c[2], eps);
  detail::check_floating(x.dtype(), "layer_norm");
  // As PyTorch: parameters of the input's dtype, or float32 ones with a 16-bit input (as autocast leaves
  // them), which is normalised in float32 and rounded once to its dtype.
  const bool mixed = itemsize(x.dtype()) == 2 && weight.dtype() == DType::Float32 && bias.dtype() == DType::Float32;
  ORCHARD_CHECK(mixed || (weight.dtype() == x.dtype() && bias.dtype() == x.dtype()), DTypeError,
                "layer_norm: weight (", dtype_name(weight.dtype()), ") and bias (", dtype_name(bias.dtype()),
                ") must have the input's dtype (", dtype_name(x.dtype()),
                "), or both be float32 with a float16 or bfloat16 input");
  if (mixed) return layer_norm(x.to(DType::Float32), weight, bias, eps).to(x.dtype());
  autograd::Recorder rec("LayerNormBackward", {x, weight, bias});
  const int64_t k = weight.ndim();
  ORCHARD_CHECK(k >= 1 && k <= x.ndim() && weight.shape() == bias.shape() &&
                    Shape(x.shape().end() - k, x.shape().end()) == weight.shape(),
                ValueError, "layer_norm: weight ", shape_str(weight.shape()), " and bias ", shape_str(bias.shape()),
                " must both equal the trailing dims of the input ", shape_str(x.shape()));
  ORCHARD_CHECK(eps >= 0, ValueError, "layer_norm: eps must be >= 0, got ", eps);
  const Device dev = detail::common_device("layer_norm", {x, weight, bias});
  const int64_t n = weight.numel(), rows = n ? x.numel() / n : 0;
  Tensor xc = x.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), dev);
  Tensor mean = empty({rows}, DType::Float32, dev), rstd = empty({rows}, DType::Float32, dev);
  if (y.numel() > 0) runtime_for(dev).layer_norm_forward({xc, wc, bc, float(eps), y, mean, rstd});
  return rec.finish(y, [&] { return derivatives::layer_norm(xc, wc, mean, rstd); });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, Reduction reduction) {
  if (autocast::Cast c{"cross_entropy", {logits, targets}}) return cross_entropy(c[0], c[1], ignore_index, reduction);
  autograd::Recorder rec("CrossEntropyBackward", {logits});
  detail::check_floating(logits.dtype(), "cross_entropy", "logits");
  detail::check_integer_index(targets, "cross_entropy");
  ORCHARD_CHECK((logits.ndim() == 2 && targets.ndim() == 1 && targets.shape()[0] == logits.shape()[0]) ||
                    (logits.ndim() == 1 && (targets.ndim() == 0 || targets.shape() == Shape{1})),
                ValueError, "cross_entropy: expected logits [N, C] with targets [N] (or [C] with a 0-d or [1] target), got ",
                shape_str(logits.shape()), " and ", shape_str(targets.shape()));
  const Device dev = detail::common_device("cross_entropy", {logits, targets});
  const int64_t classes = logits.shape().back(), rows = targets.numel();
  Tensor x = logits.reshape({rows, classes}).contiguous();
  Tensor t = targets.reshape({rows}).to(DType::Int64).contiguous();
  // Targets must be classes, except the ignored value.
  Tensor ignored = binary(BinaryOp::Eq, t, scalar_tensor(double(ignore_index), DType::Int64, dev, true));
  Tensor valid = where(ignored, scalar_tensor(0, DType::Int64, dev, true), t);
  detail::checked_index(valid, classes, "cross_entropy", logits.ndim() - 1, detail::IndexBounds::Refuse);
  Tensor losses = empty({rows}, DType::Float32, dev), lse = empty({rows}, DType::Float32, dev);
  if (rows > 0) runtime_for(dev).cross_entropy_forward({x, t, ignore_index, losses, lse});
  // The rows the mean divides by, kept on the device: reading them would wait for the queued work.
  const Tensor count = sub(scalar_tensor(double(rows), DType::Int64, dev, true), sum(ignored)).to(DType::Float32);
  // An unbatched [C] gives one loss, 0-d, whatever the target's shape (as PyTorch's).
  Tensor out = reduction == Reduction::None ? losses.reshape(logits.ndim() == 1 ? Shape{} : targets.shape())
               : reduction == Reduction::Sum ? sum(losses)
                                              : div(sum(losses), count);
  out = out.to(logits.dtype());
  return rec.finish(out, [&] {
    return derivatives::cross_entropy(x, t, lse, ignore_index, reduction, count, logits.shape());
  });
}

Tensor dropout(const Tensor& x, double p, bool training) {
  ORCHARD_CHECK(p >= 0 && p <= 1, ValueError, "dropout: p must be in [0, 1], got ", p);
  detail::check_floating(x.dtype(), "dropout");
  if (!training || p == 0) return x;
  // p that rounds to 1 in float (as the kernels see it) would keep nothing anyway.
  if (float(p) == 1.0f) return mul(x, scalar_tensor(0.0, DType::Float64, Device::CPU, true));
  autograd::Recorder rec("DropoutBackward", {x});
  const auto [seed, offset] = next_random_offset(uint64_t(x.numel()));
  Tensor out = detail::apply_dropout(x, p, seed, offset);
  return rec.finish(out, [&, seed = seed, offset = offset] { return derivatives::dropout(p, seed, offset, x.dtype()); });
}

void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamWParams& p) {
  ORCHARD_CHECK(is_floating(param.dtype()) && grad.dtype() == param.dtype(), DTypeError,
                "adamw_step: parameter and gradient must share a floating dtype, got ", dtype_name(param.dtype()),
                " and ", dtype_name(grad.dtype()));
  ORCHARD_CHECK(exp_avg.dtype() == DType::Float32 && exp_avg_sq.dtype() == DType::Float32, DTypeError,
                "adamw_step: optimizer moments must be float32");
  ORCHARD_CHECK(grad.shape() == param.shape() && exp_avg.shape() == param.shape() &&
                    exp_avg_sq.shape() == param.shape(),
                ValueError, "adamw_step: gradient and moments must have the parameter's shape ",
                shape_str(param.shape()));
  ORCHARD_CHECK(param.is_contiguous() && exp_avg.is_contiguous() && exp_avg_sq.is_contiguous(), ValueError,
                "adamw_step: parameter and moments must be contiguous");
  ORCHARD_CHECK(p.lr >= 0 && p.eps >= 0 && p.beta1 >= 0 && p.beta1 < 1 && p.beta2 >= 0 && p.beta2 < 1 &&
                    p.bias_correction1 > 0 && p.bias_correction2 > 0,
                ValueError, "adamw_step: need lr >= 0, eps >= 0, betas in [0, 1) and step >= 1");
  const Device dev = detail::common_device("adamw_step", {param, grad, exp_avg, exp_avg_sq});
  runtime_for(dev).adamw_step({param, grad.contiguous(), exp_avg, exp_avg_sq, p});
  param.storage()->bump_version();
  exp_avg.storage()->bump_version();
  exp_avg_sq.storage()->bump_version();
}

void amp_foreach_non_finite_check_and_unscale_(const std::vector<Tensor>& grads, Tensor& found_inf,
                                               const Tensor& inv_scale) {
  constexpr const char* op = "_amp_foreach_non_finite_check_and_unscale_";
  if (grads.empty()) return;
  // Validate everything before writing anything. PyTorch raises RuntimeError for these.
  const Device dev = grads.front().device();
  auto check_scalar = [&](const Tensor& t, const char* name) {
    ORCHARD_CHECK(t.device() == dev, RuntimeError, op, ": ", name, " is on ", device_name(t.device()),
                  " but must be on the gradients' device, ", device_name(dev));
    ORCHARD_CHECK(t.numel() == 1, RuntimeError, op, ": ", name, " must be a 1-element tensor, got shape ",
                  shape_str(t.shape()));
    ORCHARD_CHECK(t.dtype() == DType::Float32, RuntimeError, op, ": ", name, " must be a float32 tensor, got ",
                  dtype_name(t.dtype()));
  };
  check_scalar(found_inf, "found_inf");
  check_scalar(inv_scale, "inv_scale");
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    ORCHARD_CHECK(g.device() == dev, RuntimeError, op, ": gradient ", i, " is on ", device_name(g.device()),
                  " but gradient 0 on ", device_name(dev), "; all must be on one device");
    detail::check_floating(g.dtype(), op, "gradient dtype");
    detail::check_writable(g, op);
  }
  Runtime& rt = runtime_for(dev);
  for (const Tensor& g : grads) {
    if (g.is_contiguous()) {
      if (g.numel() > 0) rt.amp_unscale({g, found_inf, inv_scale});
    } else {  // a strided view: unscale a contiguous copy and write it back
      Tensor c = empty(g.shape(), g.dtype(), dev);
      rt.copy(make_loop(c, {g}));
      rt.amp_unscale({c, found_inf, inv_scale});
      rt.copy(make_loop(g, {c}));
    }
    g.storage()->bump_version();
  }
  found_inf.storage()->bump_version();
}

}  // namespace orchard
