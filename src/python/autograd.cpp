// Autograd on the Python side: Tensor.requires_grad / grad / grad_fn / backward, grad mode, and
// orchard.autograd.grad.
#include <algorithm>
#include <memory>

#include <nanobind/stl/shared_ptr.h>

#include "autograd.h"
#include "bindings.h"

namespace orchard::python {

namespace {
nb::object node_or_none(const std::shared_ptr<autograd::Node>& n) {
  return n ? nb::cast(n) : nb::none();
}

// A Python callable the engine keeps: backward runs without the GIL, so the GIL is taken to drop
// the last reference to it (a node may die on any thread).
std::shared_ptr<PyObject> hold_for_engine(nb::handle f) {
  return {f.inc_ref().ptr(), [](PyObject* o) {
            if (!Py_IsInitialized()) return;  // at interpreter exit: nothing left to free it into
            nb::gil_scoped_acquire gil;
            Py_DECREF(o);
          }};
}

// A Python callable run as a gradient hook, taking the GIL to call it.
struct PyGradHook {
  std::shared_ptr<PyObject> fn;

  explicit PyGradHook(nb::handle f) : fn(hold_for_engine(f)) {}

  Tensor operator()(const Tensor& grad) const {
    nb::gil_scoped_acquire gil;
    nb::object out = nb::borrow(fn.get())(grad);
    if (out.is_none()) return Tensor();
    Tensor replaced;
    if (!nb::try_cast(out, replaced))
      throw TypeError(detail::concat("a gradient hook must return a Tensor or None, got ", nb::inst_name(out).c_str()));
    return replaced;
  }
};

// Every hook list holding a Python hook. A hook that refers to its own tensor (through a closure, or
// the globals of the module defining it) makes a cycle through C++ that Python's collector cannot
// see: at exit, before the interpreter goes, the lists are emptied so those objects are freed.
std::vector<std::weak_ptr<autograd::GradHooks>>& python_hook_lists() {
  static std::vector<std::weak_ptr<autograd::GradHooks>> lists;
  return lists;
}

void remember_python_hooks(const std::shared_ptr<autograd::GradHooks>& hooks) {
  auto& lists = python_hook_lists();
  if (lists.size() >= 64 && (lists.size() & (lists.size() - 1)) == 0)  // prune at each power of two
    lists.erase(std::remove_if(lists.begin(), lists.end(), [](const auto& w) { return w.expired(); }), lists.end());
  lists.push_back(hooks);
}

void clear_python_hooks() {
  for (const auto& w : python_hook_lists())
    if (auto hooks = w.lock()) hooks->clear();
  python_hook_lists().clear();
}

// What Tensor.register_hook returns: remove() takes the hook off (again: nothing happens).
struct GradHookHandle {
  std::weak_ptr<autograd::GradHooks> hooks;
  uint64_t id;

  void remove() const {
    if (auto h = hooks.lock()) h->remove(id);
  }
};

// A Python callable run after a leaf's gradient is accumulated, taking the GIL to call it.
autograd::PostAccumulateGradHook engine_callable(nb::callable fn) {
  return [held = hold_for_engine(fn)](const Tensor& leaf) {
    nb::gil_scoped_acquire gil;
    nb::borrow(held.get())(leaf);
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

  nb::class_<GradHookHandle>(m, "_GradHookHandle", "Removes a hook added by Tensor.register_hook")
      .def("remove", &GradHookHandle::remove)
      .def("__enter__", [](nb::handle self) { return self; })
      .def("__exit__", [](const GradHookHandle& h, nb::args) { h.remove(); });

  cls.def("register_hook", [](const Tensor& t, nb::handle hook) {
    if (!PyCallable_Check(hook.ptr()))
      throw TypeError(detail::concat("register_hook: hook must be callable, got ", nb::inst_name(hook).c_str()));
    std::shared_ptr<autograd::GradHooks> hooks = autograd::grad_hooks(t);
    remember_python_hooks(hooks);
    return GradHookHandle{hooks, hooks->add(PyGradHook(hook))};
  }, nb::arg("hook"),
     "Calls hook(grad) whenever the gradient with respect to this tensor is computed; a Tensor it "
     "returns replaces the gradient. Returns a handle whose remove() takes the hook off.");

  // Parameter's constructor (as torch.Tensor._make_subclass): an instance of the Python subclass
  // `cls` sharing data's memory, as a leaf.
  cls.def_static("_make_subclass", [](nb::type_object cls, const Tensor& data, bool require_grad) {
    if (!PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(cls.ptr()),
                          reinterpret_cast<PyTypeObject*>(nb::type<Tensor>().ptr())))
      throw TypeError(detail::concat("_make_subclass: ", nb::type_name(cls).c_str(), " is not a subclass of Tensor"));
    Tensor leaf = data.detach();
    autograd::set_requires_grad(leaf, require_grad);
    nb::object inst = nb::inst_alloc(cls);
    new (nb::inst_ptr<Tensor>(inst)) Tensor(std::move(leaf));
    nb::inst_mark_ready(inst);
    return inst;
  }, nb::arg("cls"), nb::arg("data"), nb::arg("require_grad") = false);

  nb::module_ ag = m.def_submodule("_autograd", "Autograd engine (see orchard.autograd)");
  ag.def("_clear_python_hooks", &clear_python_hooks, "Drops every Tensor.register_hook hook (run at exit)");
  nb::module_::import_("atexit").attr("register")(ag.attr("_clear_python_hooks"));
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
