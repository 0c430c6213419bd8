// Autocast's per-thread state and its casts, for orchard.autocast (python/orchard/amp/autocast_mode.py).
#include <optional>

#include <nanobind/stl/tuple.h>

#include "autocast.h"
#include "bindings.h"

namespace orchard::python {

namespace {
// autocast::Cast as a Python context manager, for ops composed in Python (linear, the losses):
// __enter__ gives the cast inputs (None when autocast leaves them), and autocast stays paused for the
// ops run inside, as for an op of the core.
struct PyCast {
  PyCast(std::string op, std::vector<Tensor> inputs) : op(std::move(op)), inputs(std::move(inputs)) {}
  std::string op;
  std::vector<Tensor> inputs;
  std::optional<autocast::Cast> cast;

  nb::object enter() {
    cast.emplace(op, inputs);
    return *cast ? nb::cast(cast->inputs()) : nb::none();
  }
  void exit(nb::args) { cast.reset(); }
};

// autocast::Pause as a Python context manager: for an explicit dtype= that overrides autocast's.
struct PyPause {
  std::optional<autocast::Pause> pause;
  void enter() { pause.emplace(); }
  void exit(nb::args) { pause.reset(); }
};
}  // namespace

void bind_autocast(nb::module_& m) {
  m.def("_autocast_state", [](DeviceArg d) {
    const autocast::DeviceState s = autocast::state(d.get());
    return std::make_tuple(s.enabled, s.dtype, s.cache_enabled);
  });
  m.def("_set_autocast_state", [](DeviceArg d, bool enabled, DType dtype, bool cache_enabled) {
    autocast::set_state(d.get(), {enabled, dtype, cache_enabled});
  });
  m.def("_autocast_default_dtype", [](DeviceArg d) { return autocast::default_dtype(d.get()); });
  m.def("_clear_autocast_cache", &autocast::clear_cache);
  nb::class_<PyCast>(m, "_AutocastCast")
      .def(nb::init<std::string, std::vector<Tensor>>())
      .def("__enter__", &PyCast::enter)
      .def("__exit__", &PyCast::exit);
  nb::class_<PyPause>(m, "_AutocastPause")
      .def(nb::init<>())
      .def("__enter__", &PyPause::enter)
      .def("__exit__", &PyPause::exit);
}

}  // namespace orchard::python
