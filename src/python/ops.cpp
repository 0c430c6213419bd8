// Module functions (orchard.add, orchard.sum, ...) and the matching Tensor methods, defined once.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include "bindings.h"

namespace orchard::python {

namespace {

// Defines `name` both as orchard.<name>(input, ...) and as Tensor.<name>(...); `extra` annotates
// the arguments after the tensor.
template <typename F, typename... Extra>
void both(nb::module_& m, nb::class_<Tensor>& cls, const char* name, F f, const Extra&... extra) {
  m.def(name, f, nb::arg("input"), extra...);
  cls.def(name, f, extra...);
}

template <UnaryOp Op>
Tensor unary_fn(const Tensor& x) { return nogil([&] { return unary(Op, x); }); }

template <BinaryOp Op>
Tensor binary_fn(const Tensor& a, const TensorArg& b) { return nogil([&] { return binary(Op, a, b.t); }); }

// max/min: no dim -> the extreme value; an int dim -> (values, indices) as in PyTorch; a tuple of
// dims -> values (as amax).
nb::object extreme(const Tensor& x, nb::handle dim, bool keepdim, bool is_max) {
  if (dim.is_none() || !(PyLong_Check(dim.ptr()) || PyIndex_Check(dim.ptr()))) {
    std::vector<int64_t> dims = dims_from(dim, is_max ? "max" : "min");
    return nb::cast(nogil([&] { return reduce(is_max ? ReduceOp::Max : ReduceOp::Min, x, dims, keepdim); }));
  }
  int64_t d = nb::cast<int64_t>(dim);
  auto [values, indices] = nogil([&] { return is_max ? max(x, d, keepdim) : min(x, d, keepdim); });
  return nb::module_::import_("orchard").attr("_ValuesIndices")(values, indices);
}

// The tensors of a list or tuple. A Tensor is refused: it iterates, but cat(t) is a mistake.
std::vector<Tensor> tensor_list(nb::handle seq, const char* op) {
  if (!nb::isinstance<nb::list>(seq) && !nb::isinstance<nb::tuple>(seq))
    throw TypeError(detail::concat(op, ": expected a list or tuple of tensors, got ", nb::inst_name(seq).c_str()));
  std::vector<Tensor> out;
  for (nb::handle h : seq) {
    if (!nb::isinstance<Tensor>(h))
      throw TypeError(detail::concat(op, ": expected a list or tuple of tensors, got an element of type ",
                                     nb::inst_name(h).c_str()));
    out.push_back(nb::cast<Tensor>(h));
  }
  return out;
}

std::optional<Tensor> opt(const std::optional<TensorArg>& a) {
  return a ? std::optional<Tensor>(a->t) : std::nullopt;
}

}  // namespace

void bind_ops(nb::module_& m) {
  auto cls = nb::borrow<nb::class_<Tensor>>(m.attr("Tensor"));
  using nb::arg;

  // Factories.
  m.def("empty", [](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    return empty(shape_from(shape, "empty"), dtype, device_or(device, Device::CPU));
  }, arg("shape"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("zeros", [](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(shape, "zeros");
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return zeros(s, dtype, d); });
  }, arg("shape"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("ones", [](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(shape, "ones");
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return ones(s, dtype, d); });
  }, arg("shape"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("full", [](nb::handle shape, double value, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(nb::borrow<nb::args>(nb::make_tuple(shape)), "full");
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return full(s, value, dtype, d); });
  }, arg("shape"), arg("fill_value"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("_arange", [](double start, double end, double step, DType dtype, std::optional<DeviceArg> device) {
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return arange(start, end, step, dtype, d); });
  }, arg("start"), arg("end"), arg("step"), arg("dtype"), arg("device").none() = nb::none());
  m.def("rand", [](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(shape, "rand");
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return rand(s, dtype, d); });
  }, arg("shape"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("randn", [](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(shape, "randn");
    Device d = device_or(device, Device::CPU);
    return nogil([&] { return randn(s, dtype, d); });
  }, arg("shape"), arg("dtype") = DType::Float32, arg("device").none() = nb::none());
  m.def("manual_seed", [](int64_t seed) { manual_seed(uint64_t(seed)); }, arg("seed"));

  // Elementwise.
  both(m, cls, "neg", &unary_fn<UnaryOp::Neg>);
  both(m, cls, "abs", &unary_fn<UnaryOp::Abs>);
  both(m, cls, "exp", &unary_fn<UnaryOp::Exp>);
  both(m, cls, "log", &unary_fn<UnaryOp::Log>);
  both(m, cls, "sqrt", &unary_fn<UnaryOp::Sqrt>);
  both(m, cls, "rsqrt", &unary_fn<UnaryOp::Rsqrt>);
  both(m, cls, "tanh", &unary_fn<UnaryOp::Tanh>);
  both(m, cls, "sigmoid", &unary_fn<UnaryOp::Sigmoid>);
  both(m, cls, "relu", &unary_fn<UnaryOp::Relu>);
  both(m, cls, "sin", &unary_fn<UnaryOp::Sin>);
  both(m, cls, "cos", &unary_fn<UnaryOp::Cos>);
  both(m, cls, "logical_not", &unary_fn<UnaryOp::LogicalNot>);
  both(m, cls, "gelu", [](const Tensor& x, const std::string& approximate) {
    if (approximate != "none" && approximate != "tanh")
      throw ValueError("gelu: approximate must be 'none' or 'tanh', got '" + approximate + "'");
    return nogil([&] { return gelu(x, approximate == "tanh"); });
  }, arg("approximate") = "none");

  both(m, cls, "add", [](const Tensor& a, const TensorArg& b, double alpha) {
    return nogil([&] { return add(a, b.t, alpha); });
  }, arg("other"), nb::kw_only(), arg("alpha") = 1.0);
  both(m, cls, "sub", [](const Tensor& a, const TensorArg& b, double alpha) {
    return nogil([&] { return sub(a, b.t, alpha); });
  }, arg("other"), nb::kw_only(), arg("alpha") = 1.0);
  both(m, cls, "mul", &binary_fn<BinaryOp::Mul>, arg("other"));
  both(m, cls, "div", &binary_fn<BinaryOp::Div>, arg("other"));
  both(m, cls, "pow", &binary_fn<BinaryOp::Pow>, arg("other"));
  both(m, cls, "maximum", &binary_fn<BinaryOp::Maximum>, arg("other"));
  both(m, cls, "minimum", &binary_fn<BinaryOp::Minimum>, arg("other"));
  both(m, cls, "safe_div", &binary_fn<BinaryOp::SafeDiv>, arg("other"));
  both(m, cls, "eq", &binary_fn<BinaryOp::Eq>, arg("other"));
  both(m, cls, "ne", &binary_fn<BinaryOp::Ne>, arg("other"));
  both(m, cls, "lt", &binary_fn<BinaryOp::Lt>, arg("other"));
  both(m, cls, "le", &binary_fn<BinaryOp::Le>, arg("other"));
  both(m, cls, "gt", &binary_fn<BinaryOp::Gt>, arg("other"));
  both(m, cls, "ge", &binary_fn<BinaryOp::Ge>, arg("other"));
  both(m, cls, "logical_and", &binary_fn<BinaryOp::LogicalAnd>, arg("other"));
  both(m, cls, "logical_or", &binary_fn<BinaryOp::LogicalOr>, arg("other"));
  m.def("where", [](const Tensor& cond, const TensorArg& a, const TensorArg& b) {
    return nogil([&] { return where(cond, a.t, b.t); });
  }, arg("condition"), arg("input"), arg("other"));
  cls.def("where", [](const Tensor& self, const Tensor& cond, const TensorArg& other) {
    return nogil([&] { return where(cond, self, other.t); });
  }, arg("condition"), arg("other"));
  both(m, cls, "clamp", [](const Tensor& x, std::optional<TensorArg> min, std::optional<TensorArg> max) {
    return nogil([&] { return clamp(x, opt(min), opt(max)); });
  }, arg("min").none() = nb::none(), arg("max").none() = nb::none());

  // Reductions.
  both(m, cls, "sum", [](const Tensor& x, nb::handle dim, bool keepdim) {
    auto dims = dims_from(dim, "sum");
    return nogil([&] { return sum(x, dims, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "mean", [](const Tensor& x, nb::handle dim, bool keepdim) {
    auto dims = dims_from(dim, "mean");
    return nogil([&] { return mean(x, dims, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "amax", [](const Tensor& x, nb::handle dim, bool keepdim) {
    auto dims = dims_from(dim, "amax");
    return nogil([&] { return amax(x, dims, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "amin", [](const Tensor& x, nb::handle dim, bool keepdim) {
    auto dims = dims_from(dim, "amin");
    return nogil([&] { return amin(x, dims, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "max", [](const Tensor& x, nb::handle dim, bool keepdim) { return extreme(x, dim, keepdim, true); },
       arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "min", [](const Tensor& x, nb::handle dim, bool keepdim) { return extreme(x, dim, keepdim, false); },
       arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "argmax", [](const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
    return nogil([&] { return argmax(x, dim, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "argmin", [](const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
    return nogil([&] { return argmin(x, dim, keepdim); });
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "var", [](const Tensor& x, nb::handle dim, int64_t correction, bool keepdim) {
    auto dims = dims_from(dim, "var");
    return nogil([&] { return var(x, dims, correction, keepdim); });
  }, arg("dim").none() = nb::none(), nb::kw_only(), arg("correction") = 1, arg("keepdim") = false);
  both(m, cls, "logsumexp", [](const Tensor& x, nb::handle dim, bool keepdim) {
    auto dims = dims_from(dim, "logsumexp");
    return nogil([&] { return logsumexp(x, dims, keepdim); });
  }, arg("dim"), arg("keepdim") = false);
  both(m, cls, "softmax", [](const Tensor& x, int64_t dim) { return nogil([&] { return softmax(x, dim); }); },
       arg("dim"));
  both(m, cls, "log_softmax", [](const Tensor& x, int64_t dim) { return nogil([&] { return log_softmax(x, dim); }); },
       arg("dim"));

  // Linear algebra, indexing, joining.
  both(m, cls, "matmul", [](const Tensor& a, const Tensor& b) { return nogil([&] { return matmul(a, b); }); },
       arg("other"));
  both(m, cls, "addmm", [](const Tensor& input, const Tensor& a, const Tensor& b) {
    return nogil([&] { return addmm(input, a, b); });
  }, arg("mat1"), arg("mat2"));
  both(m, cls, "index_select", [](const Tensor& x, int64_t dim, const Tensor& index) {
    return nogil([&] { return index_select(x, dim, index); });
  }, arg("dim"), arg("index"));
  both(m, cls, "gather", [](const Tensor& x, int64_t dim, const Tensor& index) {
    return nogil([&] { return gather(x, dim, index); });
  }, arg("dim"), arg("index"));
  both(m, cls, "scatter_add", [](const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
    return nogil([&] { return scatter_add(x, dim, index, src); });
  }, arg("dim"), arg("index"), arg("src"));
  m.def("embedding", [](const Tensor& indices, const Tensor& weight) {
    return nogil([&] { return embedding(weight, indices); });
  }, arg("input"), arg("weight"));
  m.def("cat", [](nb::handle seq, int64_t dim) {
    std::vector<Tensor> ts = tensor_list(seq, "cat");
    return nogil([&] { return cat(ts, dim); });
  },
        arg("tensors"), arg("dim") = 0);
  m.def("stack", [](nb::handle seq, int64_t dim) {
    std::vector<Tensor> ts = tensor_list(seq, "stack");
    return nogil([&] { return stack(ts, dim); });
  },
        arg("tensors"), arg("dim") = 0);
  both(m, cls, "split", [](const Tensor& x, nb::handle size, int64_t dim) {
    // An int (Python, NumPy or a one-element tensor) is a chunk size; a sequence gives the sections.
    if (PyIndex_Check(size.ptr())) return split(x, nb::cast<int64_t>(size), dim);
    return split(x, dims_from(size, "split"), dim);
  }, arg("split_size_or_sections"), arg("dim") = 0);
  both(m, cls, "tril", [](const Tensor& x, int64_t k) { return nogil([&] { return tril(x, k); }); },
       arg("diagonal") = 0);
  both(m, cls, "triu", [](const Tensor& x, int64_t k) { return nogil([&] { return triu(x, k); }); },
       arg("diagonal") = 0);
}

}  // namespace orchard::python
