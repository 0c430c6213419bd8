// Autograd on the Python side: Tensor.requires_grad / grad / grad_fn / backward, grad mode, and
// orchard.autograd.grad.
#include <memory>

#include <nanobind/stl/shared_ptr.h>

#include "autograd.h"
#include "bindings.h"

namespace orchard::python {

namespace {
nb::object node_or_none(const std::shared_ptr<autograd::Node>& n) {
  return n ? nb::cast(n) : nb::none();
}

// A Python callable the engine can keep and call while the GIL is released (backward runs without
// it): the GIL is taken to call it and to drop it.
autograd::PostAccumulateGradHook engine_callable(nb::callable fn) {
  std::shared_ptr<nb::object> held(new nb::object(std::move(fn)), [](nb::object* o) {
    if (!Py_IsInitialized()) return;  // at exit Python has already freed it
    nb::gil_scoped_acquire gil;
    delete o;
  });
  return [held](const Tensor& leaf) {
    nb::gil_scoped_acquire gil;
    (*held)(leaf);
  };
}
}  // namespace

void bind_autograd(nb::module_& m, nb::class_<Tensor>& cls) {
  nb::class_<autograd::Node>(m, "Node", "A recorded op in the autograd graph")
      .def("name", &autograd::Node::name)
      .def_prop_ro("next_functions", [](const autograd::Node& n) {
        nb::list out;
        for (const auto& e : n.next()) out.append(node_or_none(e.node));
        return nb::tuple(out);
      })
      .def("__repr__", [](const autograd::Node& n) { return std::string("<") + n.name() + ">"; });

  nb::class_<autograd::PostAccumulateGradHookHandle>(m, "PostAccumulateGradHookHandle",
                                                     "Unregisters a post-accumulate-grad hook with remove()")
      .def("remove", &autograd::PostAccumulateGradHookHandle::remove);
  cls.def("register_post_accumulate_grad_hook", [](const Tensor& t, nb::callable hook) {
    return autograd::add_post_accumulate_grad_hook(t, engine_callable(std::move(hook)));
  }, nb::arg("hook"), "Calls hook(tensor) after each backward has accumulated into this leaf's .grad. The tensor "
     "keeps the hook: a hook referring to the tensor itself makes a cycle that Python's garbage collector cannot "
     "see (use the tensor it is passed, or a weakref).");

  cls.def_prop_rw("requires_grad", &autograd::requires_grad, &autograd::set_requires_grad)
      .def("requires_grad_", [](Tensor& t, bool v) -> Tensor& {
        autograd::set_requires_grad(t, v);
        return t;
      }, nb::arg("requires_grad") = true, nb::rv_policy::none)
      .def_prop_rw("grad",
          [](const Tensor& t) -> std::optional<Tensor> {
            const Tensor& g = autograd::grad(t);
            return g.defined() ? std::optional<Tensor>(g) : std::nullopt;
          },
          [](const Tensor& t, std::optional<Tensor> g) { autograd::set_grad(t, g.value_or(Tensor())); },
          nb::arg("value").none())
      .def_prop_ro("grad_fn", [](const Tensor& t) { return node_or_none(autograd::grad_fn(t)); })
      .def_prop_ro("is_leaf", &autograd::is_leaf)
      .def("backward", [](const Tensor& t, std::optional<Tensor> gradient, bool retain_graph) {
        autograd::backward({t}, {gradient.value_or(Tensor())}, retain_graph);
      }, nb::arg("gradient").none() = nb::none(), nb::arg("retain_graph") = false, nogil());

  nb::module_ ag = m.def_submodule("_autograd", "Autograd engine (see orchard.autograd)");
  ag.def("is_grad_enabled", &autograd::grad_enabled);
  ag.def("set_grad_enabled", &autograd::set_grad_enabled, nb::arg("enabled"));
  ag.def("backward", [](const std::vector<Tensor>& roots, const std::vector<std::optional<Tensor>>& grads,
                        bool retain_graph) {
    std::vector<Tensor> gs;
    for (const auto& g : grads) gs.push_back(g.value_or(Tensor()));
    autograd::backward(roots, gs, retain_graph);
  }, nb::arg("tensors"), nb::arg("grad_tensors"), nb::arg("retain_graph") = false, nogil());
  ag.def("grad", [](const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                    const std::vector<std::optional<Tensor>>& grad_outputs, bool retain_graph, bool allow_unused) {
    std::vector<Tensor> gs;
    for (const auto& g : grad_outputs) gs.push_back(g.value_or(Tensor()));
    std::vector<Tensor> result;
    {
      nb::gil_scoped_release release;
      result = autograd::grad(outputs, inputs, gs, retain_graph, allow_unused);
    }
    nb::list out;
    for (const Tensor& r : result) out.append(r.defined() ? nb::cast(r) : nb::none());
    return nb::tuple(out);
  }, nb::arg("outputs"), nb::arg("inputs"), nb::arg("grad_outputs"), nb::arg("retain_graph") = false,
     nb::arg("allow_unused") = false);
}

}  // namespace orchard::python
