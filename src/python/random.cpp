// Random integers, permutations, categorical samples and in-place random fills, with PyTorch's
// signatures. Orchard has one generator (manual_seed seeds it), so `generator` must be None.
#include "autograd.h"
#include "bindings.h"

namespace orchard::python {

namespace {

void check_no_generator(nb::handle generator, const char* op) {
  if (!generator.is_none())
    throw ValueError(std::string(op) + ": generator must be None: Orchard draws every random number from its "
                     "one generator, seeded by orchard.manual_seed");
}

// A factory's requires_grad=True, refused for dtypes without gradients as PyTorch does.
Tensor with_requires_grad(Tensor t, bool requires_grad, const char* op) {
  if (requires_grad && !is_floating(t.dtype()))
    throw RuntimeError(std::string(op) + ": only floating-point tensors can require gradients, got dtype " +
                       dtype_name(t.dtype()));
  if (requires_grad) autograd::set_requires_grad(t, true);
  return t;
}

// randint(high, size), randint(low, high, size), with any of them given by keyword.
Tensor randint_fn(nb::args args, nb::kwargs kwargs) {
  std::vector<nb::handle> pos;
  for (nb::handle h : args) pos.push_back(h);
  std::optional<int64_t> low, high;
  nb::object size;
  auto take = [&](const char* key) -> nb::object {
    if (!kwargs.contains(key)) return nb::object();
    nb::object v = kwargs[key];
    nb::del(kwargs[key]);
    return v;
  };
  if (!pos.empty() && !PyIndex_Check(pos.back().ptr())) {
    size = nb::borrow(pos.back());
    pos.pop_back();
  }
  if (nb::object s = take("size"); s.is_valid()) {
    if (size.is_valid()) throw TypeError("randint: size given twice");
    size = s;
  }
  if (pos.size() > 2) throw TypeError("randint: expected randint(high, size) or randint(low, high, size)");
  if (pos.size() == 2) low = nb::cast<int64_t>(pos[0]);
  if (!pos.empty()) high = nb::cast<int64_t>(pos.back());
  if (nb::object v = take("low"); v.is_valid()) {
    if (low) throw TypeError("randint: low given twice");
    low = nb::cast<int64_t>(v);
  }
  if (nb::object v = take("high"); v.is_valid()) {
    if (high) throw TypeError("randint: high given twice");
    high = nb::cast<int64_t>(v);
  }
  if (!high || !size.is_valid()) throw TypeError("randint: high and size are required (randint(low=0, high, size))");
  const Shape shape = shape_from(nb::borrow<nb::args>(nb::make_tuple(size)), "randint");
  nb::object dtype = take("dtype"), device = take("device"), requires_grad = take("requires_grad");
  nb::object generator = take("generator");
  if (generator.is_valid()) check_no_generator(generator, "randint");
  if (kwargs.size() > 0)
    throw TypeError("randint: unexpected keyword argument '" + nb::cast<std::string>(nb::str(*kwargs.keys().begin())) + "'");
  const DType dt = dtype.is_valid() && !dtype.is_none() ? nb::cast<DType>(dtype) : DType::Int64;
  const Device dev = device.is_valid() && !device.is_none() ? nb::cast<DeviceArg>(device).get() : Device::CPU;
  const bool grad = requires_grad.is_valid() && nb::cast<bool>(requires_grad);
  Tensor out;
  {
    nb::gil_scoped_release release;
    out = randint(low.value_or(0), *high, shape, dt, dev);
  }
  return with_requires_grad(out, grad, "randint");
}

// Tensor.<name>(params..., *, generator=None), an in-place random fill returning self.
template <typename... Params, typename... Extra>
void def_fill(nb::class_<Tensor>& cls, const char* name, const char* doc, Tensor& (*fill)(Tensor&, Params...),
              const Extra&... extra) {
  cls.def(name, [name, fill](Tensor& t, Params... params, nb::handle generator) -> Tensor& {
    check_no_generator(generator, name);
    nb::gil_scoped_release release;
    return fill(t, params...);
  }, extra..., nb::kw_only(), nb::arg("generator").none() = nb::none(), nb::rv_policy::none, doc);
}

}  // namespace

void bind_random(nb::module_& m) {
  auto cls = nb::borrow<nb::class_<Tensor>>(m.attr("Tensor"));
  using nb::arg;
  m.def("randint", &randint_fn,
        "randint(low=0, high, size, *, dtype=int64, device=None, requires_grad=False): integers uniform in "
        "[low, high), drawn as 64-bit numbers so that any int64 range is uniform.");
  m.def("randperm", [](int64_t n, DType dtype, std::optional<DeviceArg> device, bool requires_grad,
                       nb::handle generator) {
    check_no_generator(generator, "randperm");
    Tensor out;
    {
      nb::gil_scoped_release release;
      out = randperm(n, dtype, device_or(device, Device::CPU));
    }
    return with_requires_grad(out, requires_grad, "randperm");
  }, arg("n"), nb::kw_only(), arg("dtype") = DType::Int64, arg("device").none() = nb::none(),
        arg("requires_grad") = false, arg("generator").none() = nb::none(), "A random permutation of 0 .. n - 1.");
  auto multinomial_fn = [](const Tensor& w, int64_t num_samples, bool replacement, nb::handle generator) {
    check_no_generator(generator, "multinomial");
    nb::gil_scoped_release release;
    return multinomial(w, num_samples, replacement);
  };
  const char* multinomial_doc =
      "num_samples category indices per row of input (1-D or 2-D non-negative weights, unnormalised), drawn in "
      "proportion to the weights, with or without replacement.";
  m.def("multinomial", multinomial_fn, arg("input"), arg("num_samples"), arg("replacement") = false, nb::kw_only(),
        arg("generator").none() = nb::none(), multinomial_doc);
  cls.def("multinomial", multinomial_fn, arg("num_samples"), arg("replacement") = false, nb::kw_only(),
          arg("generator").none() = nb::none(), multinomial_doc);

  // In-place fills return self.
  def_fill(cls, "normal_", "Fills self with samples of N(mean, std^2), in place.", &normal_, arg("mean") = 0.0,
           arg("std") = 1.0);
  def_fill(cls, "uniform_", "Fills self with samples of U[from_, to), in place.", &uniform_, arg("from_") = 0.0,
           arg("to") = 1.0);
  def_fill(cls, "exponential_", "Fills self with samples of the exponential distribution of rate lambd, in place.",
           &exponential_, arg("lambd") = 1.0);
  // random_(to) draws from [0, to); random_(from, to) from [from, to), or from `from` up to the dtype's
  // largest when to is None; random_() from 0 up to it.
  cls.def("random_", [](Tensor& t, int64_t to, nb::handle generator) -> Tensor& {
    check_no_generator(generator, "random_");
    nb::gil_scoped_release release;
    return random_(t, 0, to);
  }, arg("to"), nb::kw_only(), arg("generator").none() = nb::none(), nb::rv_policy::none,
          "Fills self with integers uniform in [0, to), in place.");
  cls.def("random_", [](Tensor& t, int64_t from, std::optional<int64_t> to, nb::handle generator) -> Tensor& {
    check_no_generator(generator, "random_");
    nb::gil_scoped_release release;
    return random_(t, from, to);
  }, arg("from_"), arg("to").none(), nb::kw_only(), arg("generator").none() = nb::none(), nb::rv_policy::none,
          "Fills self with integers uniform in [from_, to) (to None: up to the dtype's largest), in place.");
  cls.def("random_", [](Tensor& t, nb::handle generator) -> Tensor& {
    check_no_generator(generator, "random_");
    nb::gil_scoped_release release;
    return random_(t);
  }, nb::kw_only(), arg("generator").none() = nb::none(), nb::rv_policy::none,
          "Fills self with integers from 0 up to its dtype's largest (2^digits for floats), in place.");
}

}  // namespace orchard::python
