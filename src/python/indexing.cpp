// t[key] and t[key] = value: ints, slices (positive steps), None, Ellipsis, one integer index
// tensor or list per key (gathered with index_select), and bool masks.
#include "bindings.h"
#include "ops_common.h"

namespace orchard::python {

namespace {

bool is_index_tensor(nb::handle h) {
  return nb::isinstance<Tensor>(h) || nb::isinstance<nb::list>(h);
}

Tensor as_index_tensor(nb::handle h) {
  if (nb::isinstance<Tensor>(h)) return nb::cast<Tensor>(h);
  Tensor idx = nb::cast<Tensor>(nb::module_::import_("orchard").attr("tensor")(h));
  return idx.numel() == 0 ? idx.to(DType::Int64) : idx;
}

// Positions of the true elements of a flattened bool mask, as int64 on the CPU.
Tensor mask_positions(const Tensor& mask) {
  Tensor m = mask.to(Device::CPU).contiguous();
  const bool* p = m.data_as<bool>();
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < m.numel(); ++i) if (p[i]) pos.push_back(i);
  Tensor out = empty({int64_t(pos.size())}, DType::Int64);
  std::copy(pos.begin(), pos.end(), out.data_as<int64_t>());
  return out.to(mask.device());
}

Tensor apply_key(const Tensor& self, nb::handle key_in) {
  nb::tuple key = nb::isinstance<nb::tuple>(key_in) ? nb::borrow<nb::tuple>(key_in) : nb::make_tuple(key_in);
  int64_t consuming = 0, ellipses = 0, advanced = 0, bools = 0;
  for (nb::handle k : key) {
    if (PyBool_Check(k.ptr())) { ++bools; continue; }  // True/False add a dim, as None does
    if (k.is_none()) continue;
    if (k.ptr() == Py_Ellipsis) { ++ellipses; continue; }
    if (is_index_tensor(k)) ++advanced;
    if (nb::isinstance<Tensor>(k) && nb::cast<Tensor>(k).dtype() == DType::Bool) consuming += nb::cast<Tensor>(k).ndim();
    else ++consuming;
  }
  if (ellipses > 1) throw IndexError("an index can only have a single ellipsis ('...')");
  // Several True/False in one key broadcast together into a single dim in NumPy and PyTorch.
  if (bools > 1)
    throw IndexError(detail::concat("only one True/False per indexing expression is supported, got ", bools));
  // NumPy and PyTorch broadcast several index tensors together (t[[0, 1], [0, 1]] is a diagonal),
  // and a True/False next to one is an index of that kind too (t[False, [1, 2]] is an error there);
  // rather than answer differently, refuse.
  if (advanced > 1 || (advanced == 1 && bools > 0))
    throw IndexError(detail::concat("only one index tensor, list or bool mask per indexing expression is supported, got ",
                                    advanced + (advanced ? bools : 0),
                                    " (True/False count as one next to another); index one dim at a time, or use "
                                    "gather()/index_select()"));
  if (consuming > self.ndim())
    throw IndexError(detail::concat("too many indices for tensor of dimension ", self.ndim(), ": got ", consuming));

  Tensor t = self;
  int64_t d = 0;
  for (nb::handle k : key) {
    PyObject* o = k.ptr();
    if (k.is_none()) {
      t = t.unsqueeze(d++);
    } else if (PyBool_Check(o)) {  // t[True] adds a dim of size 1, t[False] one of size 0
      t = t.unsqueeze(d);
      if (o == Py_False) t = t.slice(d, 0, 0);
      ++d;
    } else if (o == Py_Ellipsis) {
      d += self.ndim() - consuming;
    } else if (PySlice_Check(o)) {
      Py_ssize_t start, stop, step;
      if (PySlice_Unpack(o, &start, &stop, &step) < 0) throw nb::python_error();
      if (step <= 0) throw ValueError("slice step must be positive (negative steps are not supported)");
      t = t.slice(d++, start, stop, step);
    } else if (PyLong_Check(o) || (PyIndex_Check(o) && !nb::isinstance<Tensor>(k))) {
      t = t.select(d, nb::cast<int64_t>(k));
    } else if (is_index_tensor(k)) {
      // Lists become tensors on the host; an index (like PyTorch's) may live on another device.
      Tensor idx = as_index_tensor(k).to(t.device());
      if (idx.dtype() == DType::Bool) {
        int64_t n = idx.ndim();
        for (int64_t i = 0; i < n; ++i)
          if (idx.shape()[i] != t.shape()[d + i])
            throw IndexError(detail::concat("boolean mask of shape ", shape_str(idx.shape()),
                                            " does not match the indexed dims of shape ", shape_str(t.shape()),
                                            " at dimension ", d + i));
        Tensor flat = n == 0 ? t.unsqueeze(d) : t.flatten(d, d + n - 1);
        t = index_select(flat, d, mask_positions(idx.reshape({-1})));
        ++d;
      } else {
        // Python-style keys count negative indices from the end; index_select itself refuses them.
        Tensor wrapped =
            detail::checked_index(idx.reshape({-1}), t.size(d), "indexing", d, detail::IndexBounds::WrapNegative);
        Tensor gathered = index_select(t, d, wrapped);
        Shape shape(gathered.shape().begin(), gathered.shape().begin() + d);
        shape.insert(shape.end(), idx.shape().begin(), idx.shape().end());
        shape.insert(shape.end(), gathered.shape().begin() + d + 1, gathered.shape().end());
        t = gathered.reshape(shape);
        d += idx.ndim();
      }
    } else {
      throw TypeError(detail::concat("invalid index of type ", nb::inst_name(k).c_str(),
                                     "; expected int, slice, None, Ellipsis, or an integer or bool tensor"));
    }
  }
  return t;
}

bool has_advanced(nb::handle key) {
  if (is_index_tensor(key)) return true;
  if (!nb::isinstance<nb::tuple>(key)) return false;
  for (nb::handle k : key) if (is_index_tensor(k)) return true;
  return false;
}

}  // namespace

void bind_indexing(nb::class_<Tensor>& cls) {
  // .none(): t[None] is a valid key (nanobind refuses None arguments unless told).
  cls.def("__getitem__", [](const Tensor& t, nb::handle key) { return apply_key(t, key); }, nb::arg("key").none());
  cls.def("__setitem__", [](Tensor& t, nb::handle key, const TensorArg& value) {
    if (!has_advanced(key)) {
      Tensor view = apply_key(t, key);
      // As in NumPy and PyTorch, leading size-1 dims of the value beyond the target's are dropped.
      Tensor v = value.t;
      while (v.ndim() > view.ndim() && v.shape()[0] == 1) v = v.squeeze(0);
      nb::gil_scoped_release release;
      copy_(view, v);
      return;
    }
    // A single bool mask over the whole tensor: t[mask] = value.
    if (nb::isinstance<Tensor>(key) && nb::cast<Tensor>(key).dtype() == DType::Bool &&
        nb::cast<Tensor>(key).shape() == t.shape() && value.t.numel() == 1) {
      Tensor mask = nb::cast<Tensor>(key);
      // A 0-d value of another device is a scalar, as in PyTorch: cast, then move it to t's device.
      Tensor v = value.t.reshape({}).to(t.dtype()).to(t.device());
      nb::gil_scoped_release release;
      copy_(t, where(mask, v, t));
      return;
    }
    throw IndexError("assignment with integer index tensors is not supported; "
                     "use basic indexing, a full-shape bool mask with a scalar, or scatter_add");
  }, nb::arg("key").none(), nb::arg("value"));
}

}  // namespace orchard::python
