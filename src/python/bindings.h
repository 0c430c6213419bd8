// Shared pieces of the nanobind module: argument casters that turn Python scalars, shapes, dims
// and devices into core types (one place for each conversion), and the bind_* entry points.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "ops.h"

namespace orchard::python {

namespace nb = nanobind;

// A Tensor argument that also takes a Python scalar (bool, int, float, or a NumPy scalar); scalars
// become 0-d "wrapped number" tensors that promote weakly, as in PyTorch.
struct TensorArg {
  Tensor t;
  operator const Tensor&() const { return t; }
};

// The Python-visible device object: `orchard.device("cpu")`, compared equal to its string.
struct PyDevice {
  Device type;
};

// A device argument: a string or an orchard.device, validated when used (ValueError naming the
// accepted devices).
struct DeviceArg {
  std::string name;
  Device get() const { return parse_device(name); }
};
Device device_or(const std::optional<DeviceArg>& d, Device fallback);

// A dim argument: None, an int or a sequence of ints, converted with the GIL held; an invalid one is
// reported when used, naming the op (TypeError).
struct DimsArg {
  std::vector<int64_t> dims;
  bool valid = true;
  const std::vector<int64_t>& get(const char* op) const;
};

// Shapes given as f(2, 3), f((2, 3)) or f([2, 3]).
Shape shape_from(const nb::args& args, const char* op);
// dim=None | int | tuple of ints, for bindings that hold the GIL anyway.
std::vector<int64_t> dims_from(const nb::handle& dim, const char* op);

// The tensors of a list or tuple (TypeError naming op otherwise). A Tensor is refused: it iterates,
// but cat(t) is a mistake. Needs the GIL.
std::vector<Tensor> tensor_list(nb::handle seq, const char* op);

// Releases the GIL while a bound function runs (kernels never touch Python objects); nanobind
// converts the arguments and the result with it held.
using nogil = nb::call_guard<nb::gil_scoped_release>;

void bind_types(nb::module_& m);
void bind_tensor(nb::module_& m);
void bind_indexing(nb::class_<Tensor>& cls);
void bind_interop(nb::module_& m, nb::class_<Tensor>& cls);
void bind_autograd(nb::module_& m, nb::class_<Tensor>& cls);
void bind_ops(nb::module_& m);
void bind_random(nb::module_& m);
void bind_attention(nb::module_& m);
void bind_autocast(nb::module_& m);
void bind_training(nb::module_& m);
void bind_profile(nb::module_& m);
void bind_devices(nb::module_& m);

}  // namespace orchard::python

namespace nanobind::detail {

template <>
struct type_caster<orchard::python::TensorArg> {
  NB_TYPE_CASTER(orchard::python::TensorArg, const_name("Tensor | float | int | bool"))
  bool from_python(handle src, uint8_t flags, cleanup_list* cleanup) noexcept;
  static handle from_cpp(const orchard::python::TensorArg& v, rv_policy p, cleanup_list* c) noexcept {
    return make_caster<orchard::Tensor>::from_cpp(v.t, p, c);
  }
};

template <>
struct type_caster<orchard::python::DimsArg> {
  NB_TYPE_CASTER(orchard::python::DimsArg, const_name("int | tuple[int, ...] | None"))
  bool from_python(handle src, uint8_t flags, cleanup_list* cleanup) noexcept;
  static handle from_cpp(const orchard::python::DimsArg& d, rv_policy p, cleanup_list* c) noexcept {
    return make_caster<std::vector<int64_t>>::from_cpp(d.dims, p, c);
  }
};

template <>
struct type_caster<orchard::python::DeviceArg> {
  NB_TYPE_CASTER(orchard::python::DeviceArg, const_name("orchard.device | str"))
  bool from_python(handle src, uint8_t flags, cleanup_list* cleanup) noexcept;
  static handle from_cpp(const orchard::python::DeviceArg& d, rv_policy, cleanup_list*) noexcept {
    return PyUnicode_FromString(d.name.c_str());
  }
};

}  // namespace nanobind::detail
