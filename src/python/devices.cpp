// orchard._core device functions: synchronisation, the memory caches, and what the Metal device is.
#include <nanobind/stl/unique_ptr.h>

#include "bindings.h"

namespace orchard::python {

void bind_devices(nb::module_& m) {
  m.def("synchronize", [](const DeviceArg& d) { runtime_for(d.get()).synchronize(); },
        nb::arg("device") = DeviceArg{"cpu"}, "Waits until the device has finished the work queued so far");
  m.def("empty_cache", [] {
    for (Device d : {Device::CPU, Device::Metal, Device::CUDA})
      if (runtime_started(d)) runtime_for(d).release_cached_memory();
  }, "Returns cached device memory to the system");

  nb::module_ metal = m.def_submodule("_metal", "The Metal device (see orchard.metal)");
  metal.def("is_available", [] { return has_runtime(Device::Metal); });
  metal.def("is_emulated", [] { return has_runtime(Device::Metal) && runtime_is_emulated(Device::Metal); });
  // Streams belong to their runtime and live as long as the process: Python holds references.
  nb::class_<DeviceStream>(m, "_DeviceStream", "A queue of a device's work (orchard.cuda.Stream wraps it)")
      .def("query", &DeviceStream::query)
      .def("synchronize", &DeviceStream::synchronize, nb::call_guard<nb::gil_scoped_release>())
      .def("wait", &DeviceStream::wait, nb::arg("event"))
      .def_prop_ro("handle", &DeviceStream::handle);
  m.def("_default_stream", [](const DeviceArg& d) { return &runtime_for(d.get()).streams().default_stream(); },
        nb::arg("device"), nb::rv_policy::reference);
  m.def("_pool_stream", [](const DeviceArg& d, int priority) {
    return &runtime_for(d.get()).streams().pool_stream(priority);
  }, nb::arg("device"), nb::arg("priority"), nb::rv_policy::reference);
  m.def("_external_stream", [](const DeviceArg& d, uint64_t handle) {
    return &runtime_for(d.get()).streams().external(handle);
  }, nb::arg("device"), nb::arg("handle"), nb::rv_policy::reference);
  m.def("_current_stream", [](const DeviceArg& d) { return &runtime_for(d.get()).streams().current(); },
        nb::arg("device"), nb::rv_policy::reference);
  m.def("_set_stream", [](const DeviceArg& d, DeviceStream& s) { runtime_for(d.get()).streams().set_current(s); },
        nb::arg("device"), nb::arg("stream"));
  m.def("_record_stream", [](const Tensor& t, DeviceStream& s) {
    runtime_for(t.device()).record_stream(t.storage()->data(), s);
  }, nb::arg("tensor"), nb::arg("stream"));
  nb::class_<DeviceEvent>(m, "_DeviceEvent", "A marker in a device's queue (orchard.cuda.Event wraps it)")
      .def("record", &DeviceEvent::record, nb::arg("stream").none())
      .def("query", &DeviceEvent::query)
      .def("synchronize", &DeviceEvent::synchronize, nb::call_guard<nb::gil_scoped_release>())
      .def("elapsed_ms", &DeviceEvent::elapsed_ms, nb::arg("end"), nb::call_guard<nb::gil_scoped_release>());
  m.def("_make_event", [](const DeviceArg& d, bool timing, bool blocking) {
    return runtime_for(d.get()).make_event(timing, blocking);
  }, nb::arg("device"), nb::arg("timing"), nb::arg("blocking"));
  m.def("_cuda_is_available", [] { return has_runtime(Device::CUDA); });
  m.def("_cuda_is_initialized", [] { return runtime_started(Device::CUDA); });
  m.def("_set_float32_matmul_tf32", &set_float32_matmul_tf32, nb::arg("allowed"),
        "Lets the CUDA device's float32 products use TF32 (orchard.backends)");
}

}  // namespace orchard::python
