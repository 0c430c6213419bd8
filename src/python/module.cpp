// orchard._core: the nanobind module. Core exceptions map to the Python exception a NumPy or
// PyTorch user expects for the same mistake.
#include "bindings.h"

namespace orchard::python {

namespace {
// orchard.DTypeError(ValueError, TypeError): see errors.h.
PyObject* g_dtype_error = nullptr;

void register_exceptions(nb::module_& m) {
  nb::object bases = nb::make_tuple(nb::handle(PyExc_ValueError), nb::handle(PyExc_TypeError));
  g_dtype_error = PyErr_NewExceptionWithDoc("orchard.DTypeError",
                                            "A tensor's dtype is not one the op accepts (a ValueError and a TypeError)",
                                            bases.ptr(), nullptr);
  if (!g_dtype_error) throw nb::python_error();
  m.attr("DTypeError") = nb::handle(g_dtype_error);  // the module keeps a reference for good
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const std::runtime_error& e) {
      // The most derived kind first (DTypeError is a TypeError); other exceptions go to nanobind.
      PyObject* type = dynamic_cast<const DTypeError*>(&e)         ? g_dtype_error
                       : dynamic_cast<const ValueError*>(&e)       ? PyExc_ValueError
                       : dynamic_cast<const IndexError*>(&e)       ? PyExc_IndexError
                       : dynamic_cast<const TypeError*>(&e)        ? PyExc_TypeError
                       : dynamic_cast<const OutOfMemoryError*>(&e) ? PyExc_MemoryError
                       : dynamic_cast<const RuntimeError*>(&e)     ? PyExc_RuntimeError
                                                                   : nullptr;
      if (!type) throw;
      PyErr_SetString(type, e.what());
    }
  });
}
}  // namespace

}  // namespace orchard::python

NB_MODULE(_core, m) {
  using namespace orchard::python;
  m.doc() = "Orchard's C++ core: tensors, ops and device runtimes";
  register_exceptions(m);
  bind_types(m);
  bind_tensor(m);
  bind_ops(m);
  bind_random(m);
  bind_attention(m);
  bind_autocast(m);
  bind_training(m);
  bind_profile(m);
  bind_devices(m);
}
