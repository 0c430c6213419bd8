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

// (values, indices) as orchard._ValuesIndices, the named tuple of PyTorch's return types. Needs the GIL.
nb::object values_indices(const std::pair<Tensor, Tensor>& r) {
  return nb::module_::import_("orchard").attr("_ValuesIndices")(r.first, r.second);
}

// Defines a function returning (values, indices) as orchard.<name>(input, ...) and Tensor.<name>(...);
// f runs without the GIL, the named tuple is built with it.
template <typename... A, typename... Extra>
void both_pair(nb::module_& m, nb::class_<Tensor>& cls, const char* name, const char* doc,
               std::pair<Tensor, Tensor> (*f)(const Tensor&, A...), const Extra&... extra) {
  auto g = [f](const Tensor& x, A... a) {
    std::pair<Tensor, Tensor> r;
    {
      nb::gil_scoped_release release;
      r = f(x, a...);
    }
    return values_indices(r);
  };
  m.def(name, g, nb::arg("input"), extra..., doc);
  cls.def(name, g, extra..., doc);
}

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
  return values_indices(result);
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

  // Elementwise ops, from their rows in src/core/op_table.h; gelu's two rows are one function, and
  // add and sub take alpha (below).
#define ORCHARD_BIND_UNARY(E, name, Node, inputs, doc)                                  \
  if (UnaryOp::E != UnaryOp::GeluExact && UnaryOp::E != UnaryOp::GeluTanh)              \
    both(m, cls, #name, "Elementwise: " doc ".", &unary_fn<UnaryOp::E>);
  ORCHARD_UNARY_OPS(ORCHARD_BIND_UNARY)
#undef ORCHARD_BIND_UNARY
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
#define ORCHARD_BIND_BINARY(E, name, Node, inputs, output, doc)                                          \
  if (BinaryOp::E != BinaryOp::Add && BinaryOp::E != BinaryOp::Sub && BinaryOp::E != BinaryOp::GeluBackwardExact && \
      BinaryOp::E != BinaryOp::GeluBackwardTanh)                                                            \
    both(m, cls, #name, "Elementwise, broadcast: " doc ".", &binary_fn<BinaryOp::E>, arg("other"));
  ORCHARD_BINARY_OPS(ORCHARD_BIND_BINARY)
#undef ORCHARD_BIND_BINARY
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
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min}) {
    const char* name = op_name(op);
    both(m, cls, name, "The reduction over dim (every dim when None).",
         [op, name](const Tensor& x, const DimsArg& dim, bool keepdim) { return reduce(op, x, dim.get(name), keepdim); },
         arg("dim").none() = nb::none(), arg("keepdim") = false);
  }
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

  // Sorting and scans. Ties keep their order always (stable=True's order), so `stable` changes nothing.
  both_pair(m, cls, "sort", "(values, indices) sorted along dim; ties keep their order, NaN sorts last.",
            +[](const Tensor& x, int64_t dim, bool descending, std::optional<bool>) { return sort(x, dim, descending); },
            arg("dim") = -1, arg("descending") = false, arg("stable").none() = false);
  both(m, cls, "argsort", "The indices that sort input along dim (ties keep their order, NaN last).",
       [](const Tensor& x, int64_t dim, bool descending, std::optional<bool>) { return argsort(x, dim, descending); },
       arg("dim") = -1, arg("descending") = false, arg("stable").none() = false);
  both_pair(m, cls, "topk", "The k largest (or smallest) along dim as (values, indices), always sorted.",
            +[](const Tensor& x, int64_t k, int64_t dim, bool largest, bool) { return topk(x, k, dim, largest); },
            arg("k"), arg("dim") = -1, arg("largest") = true, arg("sorted") = true);
  both(m, cls, "cumsum", "Cumulative sum along dim (integers and bool in int64 unless dtype is given).",
       [](const Tensor& x, int64_t dim, std::optional<DType> dtype) { return cumsum(x, dim, dtype); }, arg("dim"),
       nb::kw_only(), arg("dtype").none() = nb::none());
  m.def("flip", [](const Tensor& x, nb::handle dims) {
    std::vector<int64_t> ds = dims_from(dims, "flip");
    nb::gil_scoped_release release;
    return flip(x, ds);
  }, arg("input"), arg("dims"), "A copy of input reversed along each of dims.");
  cls.def("flip", [](const Tensor& x, nb::args dims) {
    // t.flip(0, 1) or t.flip((0, 1)), as PyTorch's method takes both.
    std::vector<int64_t> ds = dims.size() == 1 ? dims_from(dims[0], "flip") : dims_from(dims, "flip");
    nb::gil_scoped_release release;
    return flip(x, ds);
  }, "A copy reversed along each of dims.");
  both(m, cls, "masked_fill", "input with value (a number or 0-d tensor) where mask (bool, broadcast) is true.",
       [](const Tensor& x, const Tensor& mask, const TensorArg& value) { return masked_fill(x, mask, value.t); },
       arg("mask"), arg("value"));
  cls.def("masked_fill_", [](Tensor& x, const Tensor& mask, const TensorArg& value) -> Tensor& {
    return masked_fill_(x, mask, value.t);
  }, arg("mask"), arg("value"), nogil(), nb::rv_policy::none, "Fills self with value where mask is true, in place.");

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
  auto index_add_scaled = [](const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source, double alpha) {
    return index_add(x, dim, index, alpha == 1 ? source : mul(source, scalar_tensor(alpha, source.dtype(), source.device(), true)));
  };
  both(m, cls, "index_add", "A copy of input with alpha * source's slices added at the positions index names along dim.",
       index_add_scaled, arg("dim"), arg("index"), arg("source"), nb::kw_only(), arg("alpha") = 1.0);
  cls.def("index_add_", [index_add_scaled](Tensor& x, int64_t dim, const Tensor& index, const Tensor& source,
                                           double alpha) -> Tensor& {
    return copy_(x, index_add_scaled(x, dim, index, source, alpha));
  }, arg("dim"), arg("index"), arg("source"), nb::kw_only(), arg("alpha") = 1.0, nogil(), nb::rv_policy::none,
          "index_add in place: returns input.");
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
