// dtype and device objects, and the argument casters declared in bindings.h.
#include <string>

#include "bindings.h"

namespace orchard::python {

Shape shape_from(const nb::args& args, const char* op) {
  nb::handle src = args;
  if (args.size() == 1 && !PyLong_Check(args[0].ptr())) src = args[0];
  Shape shape;
  try {
    for (nb::handle h : src) shape.push_back(nb::cast<int64_t>(h));
  } catch (const std::exception&) {
    throw TypeError(std::string(op) + ": expected a shape given as ints or one tuple/list of ints");
  }
  return shape;
}

std::vector<int64_t> dims_from(const nb::handle& dim, const char* op) {
  if (dim.is_none()) return {};
  try {
    if (PyLong_Check(dim.ptr()) || PyIndex_Check(dim.ptr())) return {nb::cast<int64_t>(dim)};
    std::vector<int64_t> dims;
    for (nb::handle h : dim) dims.push_back(nb::cast<int64_t>(h));
    return dims;
  } catch (const std::exception&) {
    throw TypeError(std::string(op) + ": dim must be None, an int or a tuple of ints");
  }
}

const std::vector<int64_t>& DimsArg::get(const char* op) const {
  if (!valid) throw TypeError(std::string(op) + ": dim must be None, an int or a tuple of ints");
  return dims;
}

Device device_or(const std::optional<DeviceArg>& d, Device fallback) { return d ? d->get() : fallback; }

void bind_types(nb::module_& m) {
  nb::enum_<DType>(m, "dtype", "Element type of a tensor")
      .value("bool", DType::Bool)
      .value("int32", DType::Int32)
      .value("int64", DType::Int64)
      .value("float16", DType::Float16)
      .value("bfloat16", DType::BFloat16)
      .value("float32", DType::Float32)
      .value("float64", DType::Float64)
      .def_prop_ro("itemsize", [](DType t) { return itemsize(t); })
      .def_prop_ro("is_floating_point", [](DType t) { return is_floating(t); })
      .def("__repr__", [](DType t) { return std::string("orchard.") + dtype_name(t); })
      .def("__str__", [](DType t) { return std::string("orchard.") + dtype_name(t); });
  m.def("promote_types", &promote_types, "Result dtype of combining two dtypes (NumPy/PyTorch rules)");

  nb::class_<PyDevice>(m, "device", "A device: 'cpu' or 'metal'")
      .def("__init__", [](PyDevice* self, const DeviceArg& d) { new (self) PyDevice{d.get()}; })
      .def_prop_ro("type", [](const PyDevice& d) { return std::string(device_name(d.type)); })
      .def("__str__", [](const PyDevice& d) { return std::string(device_name(d.type)); })
      .def("__repr__", [](const PyDevice& d) { return "device(type='" + std::string(device_name(d.type)) + "')"; })
      .def("__eq__", [](const PyDevice& a, const DeviceArg& b) {
        return b.name == device_name(a.type);
      })
      .def("__eq__", [](const PyDevice&, nb::handle) { return false; })
      .def("__hash__", [](const PyDevice& d) { return std::hash<std::string>()(device_name(d.type)); });
}

}  // namespace orchard::python

namespace nanobind::detail {

using orchard::DType;
using orchard::scalar_tensor;

bool type_caster<orchard::python::TensorArg>::from_python(handle src, uint8_t flags, cleanup_list* cleanup) noexcept {
  make_caster<orchard::Tensor> tensor_caster;
  if (tensor_caster.from_python(src, flags, cleanup)) {
    value.t = tensor_caster.operator orchard::Tensor&();
    return true;
  }
  try {
    PyObject* o = src.ptr();
    if (PyBool_Check(o)) {
      value.t = scalar_tensor(o == Py_True, DType::Bool, orchard::Device::CPU, true);
    } else if (PyLong_Check(o) || (PyIndex_Check(o) && !PyFloat_Check(o))) {
      int overflow = 0;
      PyObject* as_int = PyNumber_Index(o);
      if (!as_int) { PyErr_Clear(); return false; }
      long long v = PyLong_AsLongLongAndOverflow(as_int, &overflow);
      Py_DECREF(as_int);
      if (overflow) return false;
      value.t = scalar_tensor(double(v), DType::Int64, orchard::Device::CPU, true);
    } else if (PyFloat_Check(o) || PyObject_HasAttrString(o, "__float__")) {
      double v = PyFloat_AsDouble(o);
      if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return false; }
      value.t = scalar_tensor(v, DType::Float64, orchard::Device::CPU, true);
    } else {
      return false;
    }
    return true;
  } catch (...) {
    return false;
  }
}

// Accepts any object, so that a bad one reaches the op, which names itself in the error.
bool type_caster<orchard::python::DimsArg>::from_python(handle src, uint8_t, cleanup_list*) noexcept {
  try {
    value.dims = orchard::python::dims_from(src, "");
    value.valid = true;
  } catch (const std::exception&) {
    PyErr_Clear();
    value.dims.clear();
    value.valid = false;
  }
  return true;
}

bool type_caster<orchard::python::DeviceArg>::from_python(handle src, uint8_t flags, cleanup_list* cleanup) noexcept {
  if (PyUnicode_Check(src.ptr())) {
    Py_ssize_t size;
    const char* s = PyUnicode_AsUTF8AndSize(src.ptr(), &size);
    if (!s) { PyErr_Clear(); return false; }
    value.name.assign(s, size_t(size));
    return true;
  }
  make_caster<orchard::python::PyDevice> dev;
  if (!dev.from_python(src, flags, cleanup)) return false;
  value.name = orchard::device_name(dev.operator orchard::python::PyDevice&().type);
  return true;
}

}  // namespace nanobind::detail
