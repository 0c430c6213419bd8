// Module functions (orchard.add, orchard.sum, ...) and the matching Tensor methods, defined once.
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include "bindings.h"

namespace orchard::python {

namespace {

// Defines `name` both as orchard.<name>(input, ...) and as Tensor.<name>(...), with the GIL released
// while it runs; `extra` annotates the arguments after the tensor.
template <typename F, typename... Extra>
void both(nb::module_& m, nb::class_<Tensor>& cls, const char* name, const char* doc, F f, const Extra&... extra) {
  m.def(name, f, nb::arg("input"), extra..., nogil(), doc);
  cls.def(name, f, extra..., nogil(), doc);
}

template <UnaryOp Op>
Tensor unary_fn(const Tensor& x) { return unary(Op, x); }

template <BinaryOp Op>
Tensor binary_fn(const Tensor& a, const TensorArg& b) { return binary(Op, a, b.t); }

// max/min: no dim -> the extreme value; an int dim -> (values, indices) as in PyTorch; a tuple of
// dims -> values (as amax). Holds the GIL: it builds the named tuple.
nb::object extreme(const Tensor& x, nb::handle dim, bool keepdim, bool is_max) {
  if (dim.is_none() || !(PyLong_Check(dim.ptr()) || PyIndex_Check(dim.ptr()))) {
    std::vector<int64_t> dims = dims_from(dim, is_max ? "max" : "min");
    Tensor values;
    {
      nb::gil_scoped_release release;
      values = reduce(is_max ? ReduceOp::Max : ReduceOp::Min, x, dims, keepdim);
    }
    return nb::cast(values);
  }
  int64_t d = nb::cast<int64_t>(dim);
  std::pair<Tensor, Tensor> result;
  {
    nb::gil_scoped_release release;
    result = is_max ? max(x, d, keepdim) : min(x, d, keepdim);
  }
  return nb::module_::import_("orchard").attr("_ValuesIndices")(result.first, result.second);
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

// orchard.<name>(*shape, dtype=float32, device=None) for a factory f(shape, dtype, device).
void factory(nb::module_& m, const char* name, const char* doc, Tensor (*f)(const Shape&, DType, Device)) {
  m.def(name, [name, f](nb::args shape, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(shape, name);  // with the GIL: it reads Python objects
    Device d = device_or(device, Device::CPU);
    nb::gil_scoped_release release;
    return f(s, dtype, d);
  }, nb::arg("shape"), nb::arg("dtype") = DType::Float32, nb::arg("device").none() = nb::none(), doc);
}

std::optional<Tensor> opt(const std::optional<TensorArg>& a) {
  return a ? std::optional<Tensor>(a->t) : std::nullopt;
}

}  // namespace

void bind_ops(nb::module_& m) {
  auto cls = nb::borrow<nb::class_<Tensor>>(m.attr("Tensor"));
  using nb::arg;

  // Factories.
  factory(m, "empty", "An uninitialised tensor of the given shape.", &empty);
  factory(m, "zeros", "A tensor of zeros.", &zeros);
  factory(m, "ones", "A tensor of ones.", &ones);
  factory(m, "rand", "Uniform samples in [0, 1) from Orchard's Philox generator.", &rand);
  factory(m, "randn", "Standard normal samples from Orchard's Philox generator.", &randn);
  m.def("full", [](nb::handle shape, double value, DType dtype, std::optional<DeviceArg> device) {
    Shape s = shape_from(nb::borrow<nb::args>(nb::make_tuple(shape)), "full");
    Device d = device_or(device, Device::CPU);
    nb::gil_scoped_release release;
    return full(s, value, dtype, d);
  }, arg("shape"), arg("fill_value"), arg("dtype") = DType::Float32, arg("device").none() = nb::none(),
        "A tensor filled with fill_value.");
  m.def("_arange", [](double start, double end, double step, DType dtype, std::optional<DeviceArg> device) {
    return arange(start, end, step, dtype, device_or(device, Device::CPU));
  }, arg("start"), arg("end"), arg("step"), arg("dtype"), arg("device").none() = nb::none(), nogil());
  m.def("manual_seed", [](int64_t seed) { manual_seed(uint64_t(seed)); }, arg("seed"),
        "Seeds Orchard's Philox generator (every device draws from it).");

  // Elementwise.
  both(m, cls, "neg", "-input, elementwise.", &unary_fn<UnaryOp::Neg>);
  both(m, cls, "abs", "|input|, elementwise.", &unary_fn<UnaryOp::Abs>);
  both(m, cls, "exp", "e ** input, elementwise.", &unary_fn<UnaryOp::Exp>);
  both(m, cls, "log", "Natural logarithm, elementwise.", &unary_fn<UnaryOp::Log>);
  both(m, cls, "sqrt", "Square root, elementwise.", &unary_fn<UnaryOp::Sqrt>);
  both(m, cls, "rsqrt", "1 / sqrt(input), elementwise.", &unary_fn<UnaryOp::Rsqrt>);
  both(m, cls, "tanh", "Hyperbolic tangent, elementwise.", &unary_fn<UnaryOp::Tanh>);
  both(m, cls, "sigmoid", "1 / (1 + e ** -input), elementwise.", &unary_fn<UnaryOp::Sigmoid>);
  both(m, cls, "relu", "max(input, 0), elementwise (NaN stays NaN).", &unary_fn<UnaryOp::Relu>);
  both(m, cls, "sin", "Sine, elementwise.", &unary_fn<UnaryOp::Sin>);
  both(m, cls, "cos", "Cosine, elementwise.", &unary_fn<UnaryOp::Cos>);
  both(m, cls, "logical_not", "not input, elementwise, as bool.", &unary_fn<UnaryOp::LogicalNot>);
  both(m, cls, "gelu", "GELU, exact (approximate='none') or its tanh form (approximate='tanh').",
       [](const Tensor& x, const std::string& approximate) {
         if (approximate != "none" && approximate != "tanh")
           throw ValueError("gelu: approximate must be 'none' or 'tanh', got '" + approximate + "'");
         return gelu(x, approximate == "tanh");
       }, arg("approximate") = "none");

  both(m, cls, "add", "input + alpha * other, broadcast.", [](const Tensor& a, const TensorArg& b, double alpha) {
    return add(a, b.t, alpha);
  }, arg("other"), nb::kw_only(), arg("alpha") = 1.0);
  both(m, cls, "sub", "input - alpha * other, broadcast.", [](const Tensor& a, const TensorArg& b, double alpha) {
    return sub(a, b.t, alpha);
  }, arg("other"), nb::kw_only(), arg("alpha") = 1.0);
  both(m, cls, "mul", "input * other, broadcast.", &binary_fn<BinaryOp::Mul>, arg("other"));
  both(m, cls, "div", "input / other, broadcast (true division).", &binary_fn<BinaryOp::Div>, arg("other"));
  both(m, cls, "pow", "input ** other, broadcast.", &binary_fn<BinaryOp::Pow>, arg("other"));
  both(m, cls, "maximum", "Elementwise maximum, NaN propagating.", &binary_fn<BinaryOp::Maximum>, arg("other"));
  both(m, cls, "minimum", "Elementwise minimum, NaN propagating.", &binary_fn<BinaryOp::Minimum>, arg("other"));
  both(m, cls, "safe_div", "input / other, 0 where other == 0.", &binary_fn<BinaryOp::SafeDiv>, arg("other"));
  both(m, cls, "eq", "input == other, as bool.", &binary_fn<BinaryOp::Eq>, arg("other"));
  both(m, cls, "ne", "input != other, as bool.", &binary_fn<BinaryOp::Ne>, arg("other"));
  both(m, cls, "lt", "input < other, as bool.", &binary_fn<BinaryOp::Lt>, arg("other"));
  both(m, cls, "le", "input <= other, as bool.", &binary_fn<BinaryOp::Le>, arg("other"));
  both(m, cls, "gt", "input > other, as bool.", &binary_fn<BinaryOp::Gt>, arg("other"));
  both(m, cls, "ge", "input >= other, as bool.", &binary_fn<BinaryOp::Ge>, arg("other"));
  both(m, cls, "logical_and", "input and other, as bool.", &binary_fn<BinaryOp::LogicalAnd>, arg("other"));
  both(m, cls, "logical_or", "input or other, as bool.", &binary_fn<BinaryOp::LogicalOr>, arg("other"));
  m.def("where", [](const Tensor& cond, const TensorArg& a, const TensorArg& b) { return where(cond, a.t, b.t); },
        arg("condition"), arg("input"), arg("other"), nogil(), "input where condition, else other.");
  cls.def("where", [](const Tensor& self, const Tensor& cond, const TensorArg& other) {
    return where(cond, self, other.t);
  }, arg("condition"), arg("other"), nogil(), "self where condition, else other.");
  both(m, cls, "clamp", "input limited to [min, max] (either may be None), NaN propagating.",
       [](const Tensor& x, std::optional<TensorArg> min, std::optional<TensorArg> max) {
         return clamp(x, opt(min), opt(max));
       }, arg("min").none() = nb::none(), arg("max").none() = nb::none());

  // Reductions.
  both(m, cls, "sum", "Sum over dim (every dim when None).", [](const Tensor& x, const DimsArg& dim, bool keepdim) {
    return sum(x, dim.get("sum"), keepdim);
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "mean", "Mean over dim (every dim when None).", [](const Tensor& x, const DimsArg& dim, bool keepdim) {
    return mean(x, dim.get("mean"), keepdim);
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "amax", "Maximum over dim (every dim when None).", [](const Tensor& x, const DimsArg& dim, bool keepdim) {
    return amax(x, dim.get("amax"), keepdim);
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "amin", "Minimum over dim (every dim when None).", [](const Tensor& x, const DimsArg& dim, bool keepdim) {
    return amin(x, dim.get("amin"), keepdim);
  }, arg("dim").none() = nb::none(), arg("keepdim") = false);
  // max/min hold the GIL to build their named tuple, so they are defined apart from both().
  for (bool is_max : {true, false}) {
    const char* name = is_max ? "max" : "min";
    auto f = [is_max](const Tensor& x, nb::handle dim, bool keepdim) { return extreme(x, dim, keepdim, is_max); };
    const char* doc = is_max ? "The maximum; with an int dim, (values, indices) along it."
                             : "The minimum; with an int dim, (values, indices) along it.";
    m.def(name, f, arg("input"), arg("dim").none() = nb::none(), arg("keepdim") = false, doc);
    cls.def(name, f, arg("dim").none() = nb::none(), arg("keepdim") = false, doc);
  }
  both(m, cls, "argmax", "Index of the maximum (first NaN wins) over dim, or of the flattened input.",
       [](const Tensor& x, std::optional<int64_t> dim, bool keepdim) { return argmax(x, dim, keepdim); },
       arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "argmin", "Index of the minimum (first NaN wins) over dim, or of the flattened input.",
       [](const Tensor& x, std::optional<int64_t> dim, bool keepdim) { return argmin(x, dim, keepdim); },
       arg("dim").none() = nb::none(), arg("keepdim") = false);
  both(m, cls, "var", "Variance over dim with Bessel's correction by default.",
       [](const Tensor& x, const DimsArg& dim, int64_t correction, bool keepdim) {
         return var(x, dim.get("var"), correction, keepdim);
       }, arg("dim").none() = nb::none(), nb::kw_only(), arg("correction") = 1, arg("keepdim") = false);
  both(m, cls, "logsumexp", "log(sum(exp(input))) over dim, computed stably.",
       [](const Tensor& x, const DimsArg& dim, bool keepdim) { return logsumexp(x, dim.get("logsumexp"), keepdim); },
       arg("dim"), arg("keepdim") = false);
  both(m, cls, "softmax", "Softmax along dim.", [](const Tensor& x, int64_t dim) { return softmax(x, dim); },
       arg("dim"));
  both(m, cls, "log_softmax", "Log-softmax along dim.", [](const Tensor& x, int64_t dim) { return log_softmax(x, dim); },
       arg("dim"));

  // Linear algebra, indexing, joining.
  both(m, cls, "matmul", "Matrix product with NumPy's broadcasting rules.",
       [](const Tensor& a, const Tensor& b) { return matmul(a, b); }, arg("other"));
  both(m, cls, "addmm", "input + mat1 @ mat2.", [](const Tensor& input, const Tensor& a, const Tensor& b) {
    return addmm(input, a, b);
  }, arg("mat1"), arg("mat2"));
  both(m, cls, "index_select", "The entries of input at index along dim.", &index_select, arg("dim"), arg("index"));
  both(m, cls, "gather", "input[..., index[i], ...] along dim, for every position of index.", &gather, arg("dim"),
       arg("index"));
  both(m, cls, "scatter_add", "A copy of input with src added at index along dim.", &scatter_add, arg("dim"),
       arg("index"), arg("src"));
  m.def("embedding", [](const Tensor& indices, const Tensor& weight) { return embedding(weight, indices); },
        arg("input"), arg("weight"), nogil(), "The rows of weight at the indices in input.");
  m.def("cat", [](nb::handle seq, int64_t dim) {
    std::vector<Tensor> ts = tensor_list(seq, "cat");
    nb::gil_scoped_release release;
    return cat(ts, dim);
  }, arg("tensors"), arg("dim") = 0, "Joins tensors along an existing dim.");
  m.def("stack", [](nb::handle seq, int64_t dim) {
    std::vector<Tensor> ts = tensor_list(seq, "stack");
    nb::gil_scoped_release release;
    return stack(ts, dim);
  }, arg("tensors"), arg("dim") = 0, "Joins tensors along a new dim.");
  const char* split_doc = "Views of input in chunks of one size, or of the sizes given, along dim.";
  auto split_fn = [](const Tensor& x, nb::handle size, int64_t dim) {
    // An int (Python, NumPy or a one-element tensor) is a chunk size; a sequence gives the sections.
    if (PyIndex_Check(size.ptr())) return split(x, nb::cast<int64_t>(size), dim);
    return split(x, dims_from(size, "split"), dim);
  };
  m.def("split", split_fn, arg("input"), arg("split_size_or_sections"), arg("dim") = 0, split_doc);
  cls.def("split", split_fn, arg("split_size_or_sections"), arg("dim") = 0, split_doc);
  both(m, cls, "tril", "The lower triangle of input (below diagonal k), the rest 0.", &tril, arg("diagonal") = 0);
  both(m, cls, "triu", "The upper triangle of input (above diagonal k), the rest 0.", &triu, arg("diagonal") = 0);
}

}  // namespace orchard::python
