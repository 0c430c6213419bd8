// The Tensor class: properties, views, conversions, operators and the op methods.
#include <nanobind/operators.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include "bindings.h"

namespace orchard::python {

namespace {

nb::tuple to_tuple(const std::vector<int64_t>& v) {
  nb::list l;
  for (int64_t x : v) l.append(x);
  return nb::tuple(l);
}

// Reflected operators: `2 - t` is sub(2, t).
template <BinaryOp Op>
Tensor reflected(const Tensor& self, const TensorArg& other) {
  return binary(Op, other.t, self);
}

}  // namespace

void bind_tensor(nb::module_& m) {
  nb::class_<Tensor> cls(m, "Tensor", "An n-dimensional array on a device, with PyTorch-style methods");

  cls.def_prop_ro("shape", [](const Tensor& t) { return to_tuple(t.shape()); })
      .def_prop_ro("dtype", &Tensor::dtype)
      .def_prop_ro("device", [](const Tensor& t) { return PyDevice{t.device()}; })
      .def_prop_ro("ndim", &Tensor::ndim)
      .def_prop_ro("T", [](const Tensor& t) {
        std::vector<int64_t> dims;
        for (int64_t i = t.ndim() - 1; i >= 0; --i) dims.push_back(i);
        return t.permute(dims);
      })
      .def_prop_ro("mT", [](const Tensor& t) { return t.transpose(-2, -1); })
      .def_prop_ro("nbytes", &Tensor::nbytes)
      .def_prop_ro("itemsize", &Tensor::itemsize)
      .def_prop_ro("_version", [](const Tensor& t) { return t.storage()->version(); })
      .def("dim", &Tensor::ndim)
      .def("numel", &Tensor::numel)
      .def("element_size", &Tensor::itemsize)
      .def("size", [](const Tensor& t, std::optional<int64_t> dim) -> nb::object {
        if (!dim) return to_tuple(t.shape());
        return nb::int_(t.size(*dim));
      }, nb::arg("dim").none() = nb::none())
      .def("stride", [](const Tensor& t, std::optional<int64_t> dim) -> nb::object {
        if (!dim) return to_tuple(t.strides());
        return nb::int_(t.stride(*dim));
      }, nb::arg("dim").none() = nb::none())
      .def("storage_offset", &Tensor::offset)
      .def("data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data()); })
      .def("is_contiguous", &Tensor::is_contiguous)
      .def("is_alias_of", &Tensor::is_alias_of, nb::arg("other"),
           "True when both tensors view the same storage")
      .def("is_floating_point", [](const Tensor& t) { return is_floating(t.dtype()); })
      .def("__len__", [](const Tensor& t) {
        if (t.ndim() == 0) throw TypeError("len() of a 0-d tensor");
        return t.shape()[0];
      });

  // Views.
  cls.def("reshape", [](const Tensor& t, nb::args shape) { return t.reshape(shape_from(shape, "reshape")); })
      .def("view", [](const Tensor& t, nb::args shape) { return t.view(shape_from(shape, "view")); })
      .def("flatten", &Tensor::flatten, nb::arg("start_dim") = 0, nb::arg("end_dim") = -1)
      .def("transpose", &Tensor::transpose, nb::arg("dim0"), nb::arg("dim1"))
      .def("permute", [](const Tensor& t, nb::args dims) { return t.permute(shape_from(dims, "permute")); })
      .def("expand", [](const Tensor& t, nb::args shape) { return t.expand(shape_from(shape, "expand")); })
      .def("broadcast_to", [](const Tensor& t, nb::args shape) { return t.expand(shape_from(shape, "broadcast_to")); })
      .def("expand_as", [](const Tensor& t, const Tensor& o) { return t.expand(o.shape()); })
      .def("squeeze", [](const Tensor& t, nb::handle dim) {
        if (dim.is_none()) return t.squeeze();
        Tensor out = t;
        std::vector<int64_t> dims = dims_from(dim, "squeeze");
        std::vector<int64_t> sorted = normalize_dims(dims, t.ndim(), "squeeze");
        for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) out = out.squeeze(*it);
        return out;
      }, nb::arg("dim") = nb::none())
      .def("unsqueeze", &Tensor::unsqueeze, nb::arg("dim"))
      .def("narrow", &Tensor::narrow, nb::arg("dim"), nb::arg("start"), nb::arg("length"))
      .def("select", &Tensor::select, nb::arg("dim"), nb::arg("index"))
      .def("contiguous", &Tensor::contiguous, nogil())
      .def("clone", &Tensor::clone, nogil())
      .def("detach", &Tensor::detach);

  // Conversions.
  cls.def("to", [](const Tensor& t, std::optional<DeviceArg> device, std::optional<DType> dtype) {
        return t.to(dtype.value_or(t.dtype())).to(device_or(device, t.device()));
      }, nb::arg("device").none() = nb::none(), nb::arg("dtype").none() = nb::none(), nogil())
      .def("to", [](const Tensor& t, DType dtype) { return t.to(dtype); }, nogil(), nb::arg("dtype"))
      .def("cpu", [](const Tensor& t) { return t.to(Device::CPU); }, nogil())
      .def("float", [](const Tensor& t) { return t.to(DType::Float32); }, nogil())
      .def("double", [](const Tensor& t) { return t.to(DType::Float64); }, nogil())
      .def("half", [](const Tensor& t) { return t.to(DType::Float16); }, nogil())
      .def("bfloat16", [](const Tensor& t) { return t.to(DType::BFloat16); }, nogil())
      .def("int", [](const Tensor& t) { return t.to(DType::Int32); }, nogil())
      .def("long", [](const Tensor& t) { return t.to(DType::Int64); }, nogil())
      .def("bool", [](const Tensor& t) { return t.to(DType::Bool); }, nogil());

  // Operators. Python scalars arrive as weakly typed 0-d tensors (TensorArg). Other operands give
  // NotImplemented (nb::is_operator), so Python answers as for any type: t == "a" is False, t + "a"
  // a TypeError.
  auto bin = [](BinaryOp op) {
    return [op](const Tensor& a, const TensorArg& b) { return binary(op, a, b.t); };
  };
  auto inplace = [](BinaryOp op) {
    return [op](Tensor& a, const TensorArg& b) -> Tensor& { return binary_(op, a, b.t); };
  };
  cls.def("__add__", bin(BinaryOp::Add), nogil(), nb::is_operator()).def("__radd__", &reflected<BinaryOp::Add>, nogil(), nb::is_operator())
      .def("__sub__", bin(BinaryOp::Sub), nogil(), nb::is_operator()).def("__rsub__", &reflected<BinaryOp::Sub>, nogil(), nb::is_operator())
      .def("__mul__", bin(BinaryOp::Mul), nogil(), nb::is_operator()).def("__rmul__", &reflected<BinaryOp::Mul>, nogil(), nb::is_operator())
      .def("__truediv__", bin(BinaryOp::Div), nogil(), nb::is_operator()).def("__rtruediv__", &reflected<BinaryOp::Div>, nogil(), nb::is_operator())
      .def("__pow__", bin(BinaryOp::Pow), nogil(), nb::is_operator()).def("__rpow__", &reflected<BinaryOp::Pow>, nogil(), nb::is_operator())
      .def("__eq__", bin(BinaryOp::Eq), nogil(), nb::is_operator()).def("__ne__", bin(BinaryOp::Ne), nogil(), nb::is_operator())
      .def("__lt__", bin(BinaryOp::Lt), nogil(), nb::is_operator()).def("__le__", bin(BinaryOp::Le), nogil(), nb::is_operator())
      .def("__gt__", bin(BinaryOp::Gt), nogil(), nb::is_operator()).def("__ge__", bin(BinaryOp::Ge), nogil(), nb::is_operator())
      .def("__and__", bin(BinaryOp::LogicalAnd), nogil(), nb::is_operator()).def("__or__", bin(BinaryOp::LogicalOr), nogil(), nb::is_operator())
      .def("__iadd__", inplace(BinaryOp::Add), nogil(), nb::rv_policy::none, nb::is_operator())
      .def("__isub__", inplace(BinaryOp::Sub), nogil(), nb::rv_policy::none, nb::is_operator())
      .def("__imul__", inplace(BinaryOp::Mul), nogil(), nb::rv_policy::none, nb::is_operator())
      .def("__itruediv__", inplace(BinaryOp::Div), nogil(), nb::rv_policy::none, nb::is_operator())
      .def("__matmul__", [](const Tensor& a, const Tensor& b) { return matmul(a, b); }, nogil(), nb::is_operator())
      .def("__rmatmul__", [](const Tensor& a, const Tensor& b) { return matmul(b, a); }, nogil(), nb::is_operator())
      .def("__neg__", [](const Tensor& a) { return unary(UnaryOp::Neg, a); }, nogil())
      .def("__abs__", [](const Tensor& a) { return unary(UnaryOp::Abs, a); }, nogil())
      .def("__invert__", [](const Tensor& a) { return unary(UnaryOp::LogicalNot, a); }, nogil())
      .def("__hash__", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.impl()); });

  // In-place methods return self.
  cls.def("add_", inplace(BinaryOp::Add), nogil(), nb::rv_policy::none)
      .def("sub_", inplace(BinaryOp::Sub), nogil(), nb::rv_policy::none)
      .def("mul_", inplace(BinaryOp::Mul), nogil(), nb::rv_policy::none)
      .def("div_", inplace(BinaryOp::Div), nogil(), nb::rv_policy::none)
      .def("fill_", [](Tensor& t, double v) -> Tensor& { return fill_(t, v); }, nogil(),
           nb::rv_policy::none)
      .def("zero_", [](Tensor& t) -> Tensor& { return fill_(t, 0.0); }, nogil(),
           nb::rv_policy::none)
      .def("copy_", [](Tensor& t, const TensorArg& src) -> Tensor& { return copy_(t, src.t); }, nogil(),
           nb::rv_policy::none);

  bind_indexing(cls);
  bind_interop(m, cls);
  bind_autograd(m, cls);
}

}  // namespace orchard::python
