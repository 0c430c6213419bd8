// Fused training ops for orchard.nn.functional, orchard.optim and orchard.amp.
#include <cmath>

#include "bindings.h"

namespace orchard::python {

void bind_training(nb::module_& m) {
  m.def("layer_norm", [](const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
    return layer_norm(x, weight, bias, eps);
  }, nb::arg("input"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps") = 1e-5, nogil(),
     "Layer norm over the trailing dims weight covers, fused into one pass");

  m.def("cross_entropy", [](const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                            const std::string& reduction) {
    Reduction r = reduction == "mean" ? Reduction::Mean : reduction == "sum" ? Reduction::Sum
                  : reduction == "none" ? Reduction::None
                                        : throw ValueError("cross_entropy: reduction must be 'mean', 'sum' or "
                                                           "'none', got '" + reduction + "'");
    return cross_entropy(logits, targets, ignore_index, r);
  }, nb::arg("input"), nb::arg("target"), nb::arg("ignore_index") = -100, nb::arg("reduction") = "mean", nogil(),
     "Cross-entropy of logits [N, C] against class indices [N], fused with its log-softmax");

  m.def("dropout", [](const Tensor& x, double p, bool training) {
    return dropout(x, p, training);
  }, nb::arg("input"), nb::arg("p") = 0.5, nb::arg("training") = true, nogil(),
     "x * keep / (1 - p) with a Philox mask the backward regenerates instead of storing");

  m.def("adamw_step", [](Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr,
                         double beta1, double beta2, double eps, double weight_decay, int64_t step) {
    if (step < 1) throw ValueError("adamw_step: step counts from 1, got " + std::to_string(step));
    AdamWParams p{float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                  float(1 - std::pow(beta1, double(step))), float(1 - std::pow(beta2, double(step)))};
    adamw_step(param, grad, exp_avg, exp_avg_sq, p);
  }, nb::arg("param"), nb::arg("grad"), nb::arg("exp_avg"), nb::arg("exp_avg_sq"), nb::arg("lr"),
     nb::arg("beta1"), nb::arg("beta2"), nb::arg("eps"), nb::arg("weight_decay"), nb::arg("step"), nogil(),
     "One fused AdamW update of a parameter and its float32 moments, in place");

  m.def("_amp_foreach_non_finite_check_and_unscale_", [](nb::handle grads, Tensor& found_inf,
                                                         const Tensor& inv_scale) {
    std::vector<Tensor> ts = tensor_list(grads, "_amp_foreach_non_finite_check_and_unscale_");
    nb::gil_scoped_release release;
    amp_foreach_non_finite_check_and_unscale_(ts, found_inf, inv_scale);
  }, nb::arg("self"), nb::arg("found_inf"), nb::arg("inv_scale"),
     "Multiplies float gradients by inv_scale in place and sets found_inf to 1 where any is inf or NaN");
}

}  // namespace orchard::python
