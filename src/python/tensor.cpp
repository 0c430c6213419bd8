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
  return nogil([&] { return binary(Op, other.t, self); });
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
      .def("contiguous", [](const Tensor& t) { return nogil([&] { return t.contiguous(); }); })
      .def("clone", [](const Tensor& t) { return nogil([&] { return t.clone(); }); })
      .def("detach", &Tensor::detach);

  // Conversions.
  cls.def("to", [](const Tensor& t, std::optional<DeviceArg> device, std::optional<DType> dtype) {
        Device dev = device_or(device, t.device());
        return nogil([&] { return t.to(dtype.value_or(t.dtype())).to(dev); });
      }, nb::arg("device").none() = nb::none(), nb::arg("dtype").none() = nb::none())
      .def("to", [](const Tensor& t, DType dtype) { return nogil([&] { return t.to(dtype); }); }, nb::arg("dtype"))
      .def("cpu", [](const Tensor& t) { return nogil([&] { return t.to(Device::CPU); }); })
      .def("float", [](const Tensor& t) { return nogil([&] { return t.to(DType::Float32); }); })
      .def("double", [](const Tensor& t) { return nogil([&] { return t.to(DType::Float64); }); })
      .def("half", [](const Tensor& t) { return nogil([&] { return t.to(DType::Float16); }); })
      .def("bfloat16", [](const Tensor& t) { return nogil([&] { return t.to(DType::BFloat16); }); })
      .def("int", [](const Tensor& t) { return nogil([&] { return t.to(DType::Int32); }); })
      .def("long", [](const Tensor& t) { return nogil([&] { return t.to(DType::Int64); }); })
      .def("bool", [](const Tensor& t) { return nogil([&] { return t.to(DType::Bool); }); });

  // Operators. Python scalars arrive as weakly typed 0-d tensors (TensorArg).
  auto bin = [](BinaryOp op) {
    return [op](const Tensor& a, const TensorArg& b) { return nogil([&] { return binary(op, a, b.t); }); };
  };
  auto inplace = [](BinaryOp op) {
    return [op](Tensor& a, const TensorArg& b) -> Tensor& {
      return nogil([&]() -> Tensor& { return binary_(op, a, b.t); });
    };
  };
  cls.def("__add__", bin(BinaryOp::Add)).def("__radd__", &reflected<BinaryOp::Add>)
      .def("__sub__", bin(BinaryOp::Sub)).def("__rsub__", &reflected<BinaryOp::Sub>)
      .def("__mul__", bin(BinaryOp::Mul)).def("__rmul__", &reflected<BinaryOp::Mul>)
      .def("__truediv__", bin(BinaryOp::Div)).def("__rtruediv__", &reflected<BinaryOp::Div>)
      .def("__pow__", bin(BinaryOp::Pow)).def("__rpow__", &reflected<BinaryOp::Pow>)
      .def("__eq__", bin(BinaryOp::Eq)).def("__ne__", bin(BinaryOp::Ne))
      .def("__lt__", bin(BinaryOp::Lt)).def("__le__", bin(BinaryOp::Le))
      .def("__gt__", bin(BinaryOp::Gt)).def("__ge__", bin(BinaryOp::Ge))
      .def("__and__", bin(BinaryOp::LogicalAnd)).def("__or__", bin(BinaryOp::LogicalOr))
      .def("__iadd__", inplace(BinaryOp::Add), nb::rv_policy::none)
      .def("__isub__", inplace(BinaryOp::Sub), nb::rv_policy::none)
      .def("__imul__", inplace(BinaryOp::Mul), nb::rv_policy::none)
      .def("__itruediv__", inplace(BinaryOp::Div), nb::rv_policy::none)
      .def("__matmul__", [](const Tensor& a, const Tensor& b) { return nogil([&] { return matmul(a, b); }); })
      .def("__rmatmul__", [](const Tensor& a, const Tensor& b) { return nogil([&] { return matmul(b, a); }); })
      .def("__neg__", [](const Tensor& a) { return nogil([&] { return unary(UnaryOp::Neg, a); }); })
      .def("__abs__", [](const Tensor& a) { return nogil([&] { return unary(UnaryOp::Abs, a); }); })
      .def("__invert__", [](const Tensor& a) { return nogil([&] { return unary(UnaryOp::LogicalNot, a); }); })
      .def("__hash__", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.impl()); });

  // In-place methods return self.
  cls.def("add_", inplace(BinaryOp::Add), nb::rv_policy::none)
      .def("sub_", inplace(BinaryOp::Sub), nb::rv_policy::none)
      .def("mul_", inplace(BinaryOp::Mul), nb::rv_policy::none)
      .def("div_", inplace(BinaryOp::Div), nb::rv_policy::none)
      .def("fill_", [](Tensor& t, double v) -> Tensor& { return nogil([&]() -> Tensor& { return fill_(t, v); }); },
           nb::rv_policy::none)
      .def("zero_", [](Tensor& t) -> Tensor& { return nogil([&]() -> Tensor& { return fill_(t, 0.0); }); },
           nb::rv_policy::none)
      .def("copy_", [](Tensor& t, const TensorArg& src) -> Tensor& {
        return nogil([&]() -> Tensor& { return copy_(t, src.t); });
      },
           nb::rv_policy::none);

  bind_indexing(cls);
  bind_interop(m, cls);
  bind_autograd(m, cls);
}

}  // namespace orchard::python
