// orchard._core profiling hooks, wrapped by orchard.profile.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include "bindings.h"
#include "profile.h"

namespace orchard::python {

void bind_profile(nb::module_& m) {
  nb::module_ p = m.def_submodule("_profile", "Allocation profiling (see orchard.profile)");
  p.def("enabled", &profile::enabled);
  p.def("log_path", &profile::log_path);
  p.def("reset", &profile::reset);
  p.def("clear_log", &profile::clear_log);
  p.def("counts", [] {
    profile::Counts c = profile::counts();
    return std::make_pair(c.allocs, c.frees);
  });
  p.def("live_storages", [] {
    nb::list out;
    for (const auto& s : profile::live_storages())
      out.append(nb::make_tuple(s.id, s.nbytes, device_name(s.device)));
    return out;
  });
}

}  // namespace orchard::python
