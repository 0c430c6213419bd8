// The view methods of Tensor (view, reshape, transpose, permute, expand, squeeze, slice, select...)
// and its copies (clone, to), apart from tensor.cpp because they record autograd: tensor.cpp, the
// core's lowest layer, depends on nothing above it.
#include <algorithm>

#include "derivatives.h"
#include "errors.h"
#include "ops.h"

namespace orchard {

namespace {
// Resolves a single -1 in a requested shape against numel.
Shape infer_shape(Shape shape, int64_t numel, const Shape& from) {
  int64_t infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ORCHARD_CHECK(infer_at < 0, ValueError, "reshape: only one dimension can be -1, got ",
                    shape_str(shape));
      infer_at = int64_t(i);
    } else {
      ORCHARD_CHECK(shape[i] >= 0, ValueError, "reshape: invalid dimension ", shape[i], " in ",
                    shape_str(shape));
    }
  }
  int64_t known = 1, span = 1;  // span: the product with zeros counted as 1, which bounds known
  for (size_t i = 0; i < shape.size(); ++i) {
    if (int64_t(i) == infer_at) continue;
    ORCHARD_CHECK(!__builtin_mul_overflow(span, std::max<int64_t>(shape[i], 1), &span), ValueError, "reshape: shape ",
                  shape_str(shape), " has more elements than fit in 64 bits");
    known *= shape[i];
  }
  if (infer_at >= 0) {
    ORCHARD_CHECK(known != 0 && numel % known == 0, ValueError, "cannot reshape tensor of shape ",
                  shape_str(from), " (", numel, " elements) into ", shape_str(shape));
    shape[infer_at] = numel / known;
  }
  ORCHARD_CHECK(checked_numel(shape) == numel, ValueError, "cannot reshape tensor of shape ",
                shape_str(from), " (", numel, " elements) into ", shape_str(shape), " (",
                checked_numel(shape), " elements)");
  return shape;
}

// Strides that view `from` (with strides `st`) as `to` without copying, if any exist.
bool view_strides(const Shape& from, const Strides& st, const Shape& to, Strides& out) {
  out.assign(to.size(), 0);
  size_t i = 0, j = 0;
  while (i < from.size() || j < to.size()) {
    // Skip size-1 dims on both sides: they constrain nothing.
    if (i < from.size() && from[i] == 1) { ++i; continue; }
    if (j < to.size() && to[j] == 1) { out[j] = 1; ++j; continue; }
    if (i == from.size() || j == to.size()) return false;
    // Take a chunk of `from` dims that are mutually contiguous and match a chunk of `to` dims.
    int64_t fsize = from[i], tsize = to[j];
    size_t i0 = i, j0 = j;
    while (fsize != tsize) {
      if (fsize < tsize) {
        ++i;
        if (i == from.size()) return false;
        if (from[i] == 1) continue;
        // from[i-1 (last non-1)] must be laid out right before from[i]
        size_t prev = i - 1;
        while (from[prev] == 1) --prev;
        if (st[prev] != st[i] * from[i]) return false;
        fsize *= from[i];
      } else {
        ++j;
        if (j == to.size()) return false;
        tsize *= to[j];
      }
    }
    // Chunk [i0..i] in from maps to [j0..j] in to; innermost stride is st[i].
    int64_t stride = st[i];
    for (size_t k = j + 1; k-- > j0;) {
      out[k] = stride;
      stride *= to[k];
    }
    (void)i0;
    ++i;
    ++j;
  }
  return true;
}
}  // namespace

using autograd::Recorder;

Tensor Tensor::view(Shape shape) const {
  Recorder rec("ViewBackward", {*this});
  shape = infer_shape(std::move(shape), numel(), this->shape());
  Strides st;
  if (numel() == 0) st = contiguous_strides(shape);
  else
    ORCHARD_CHECK(view_strides(this->shape(), strides(), shape, st), ValueError, "view: tensor of shape ",
                  shape_str(this->shape()), " with strides ", shape_str(strides()),
                  " cannot be viewed as ", shape_str(shape), " without a copy; use reshape()");
  return rec.finish(as_strided(shape, st, offset()), [&] { return derivatives::reshape(this->shape()); });
}

Tensor Tensor::reshape(Shape shape) const {
  Recorder rec("ReshapeBackward", {*this});
  shape = infer_shape(std::move(shape), numel(), this->shape());
  Strides st;
  auto back = [&] { return derivatives::reshape(this->shape()); };
  if (numel() == 0) return rec.finish(as_strided(shape, contiguous_strides(shape), offset()), back);
  if (view_strides(this->shape(), strides(), shape, st)) return rec.finish(as_strided(shape, st, offset()), back);
  return rec.finish(contiguous().view(shape), back);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (ndim() == 0) {
    normalize_dim(start_dim, 0, "flatten");  // 0 or -1
    normalize_dim(end_dim, 0, "flatten");
    return reshape({1});
  }
  int64_t s = normalize_dim(start_dim, ndim(), "flatten"), e = normalize_dim(end_dim, ndim(), "flatten");
  ORCHARD_CHECK(s <= e, ValueError, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim);
  Shape out(shape().begin(), shape().begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  out.push_back(n);
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  Recorder rec("TransposeBackward", {*this});
  if (ndim() == 0) {
    normalize_dim(dim0, 0, "transpose");
    normalize_dim(dim1, 0, "transpose");
    return rec.finish(as_strided(shape(), strides(), offset()), [] { return derivatives::identity(); });
  }
  int64_t a = normalize_dim(dim0, ndim(), "transpose"), b = normalize_dim(dim1, ndim(), "transpose");
  Shape sh = shape();
  Strides st = strides();
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return rec.finish(as_strided(sh, st, offset()), [a, b] { return derivatives::transpose(a, b); });
}

Tensor Tensor::permute(std::vector<int64_t> dims) const {
  Recorder rec("PermuteBackward", {*this});
  ORCHARD_CHECK(int64_t(dims.size()) == ndim(), ValueError, "permute: got ", dims.size(),
                " dims for a tensor with ", ndim(), " dimensions");
  std::vector<bool> seen(ndim(), false);
  Shape sh(ndim());
  Strides st(ndim());
  for (int64_t i = 0; i < ndim(); ++i) {
    int64_t d = normalize_dim(dims[i], ndim(), "permute");
    ORCHARD_CHECK(!seen[d], ValueError, "permute: dimension ", dims[i], " repeats in ", shape_str(dims));
    seen[d] = true;
    sh[i] = shape()[d];
    st[i] = strides()[d];
    dims[i] = d;
  }
  return rec.finish(as_strided(sh, st, offset()), [&dims] { return derivatives::permute(dims); });
}

Tensor Tensor::expand(Shape target) const {
  Recorder rec("ExpandBackward", {*this});
  ORCHARD_CHECK(target.size() >= shape().size(), ValueError, "expand: cannot expand shape ",
                shape_str(shape()), " to fewer dimensions ", shape_str(target));
  size_t lead = target.size() - shape().size();
  Strides st(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      ORCHARD_CHECK(target[i] >= 0, ValueError, "expand: invalid size ", target[i], " for new dimension ", i);
      continue;
    }
    int64_t have = shape()[i - lead];
    if (target[i] == -1) target[i] = have;
    ORCHARD_CHECK(target[i] >= 0, ValueError, "expand: invalid size ", target[i], " for dimension ", i);
    ORCHARD_CHECK(have == target[i] || have == 1, ValueError, "expand: shape ", shape_str(shape()),
                  " cannot be expanded to ", shape_str(target), " (dimension ", i, ": ", have,
                  " must equal ", target[i], " or be 1)");
    st[i] = have == target[i] ? strides()[i - lead] : 0;
  }
  checked_numel(target);  // ValueError when the expanded element count overflows
  // Node::apply sums the gradient back to this tensor's shape.
  return rec.finish(as_strided(target, st, offset()), [] { return derivatives::identity(); });
}

Tensor Tensor::squeeze() const {
  Recorder rec("SqueezeBackward", {*this});
  Shape sh;
  Strides st;
  for (int64_t i = 0; i < ndim(); ++i)
    if (shape()[i] != 1) { sh.push_back(shape()[i]); st.push_back(strides()[i]); }
  return rec.finish(as_strided(sh, st, offset()), [&] { return derivatives::reshape(shape()); });
}

Tensor Tensor::squeeze(int64_t dim) const {
  Recorder rec("SqueezeBackward", {*this});
  if (ndim() == 0) { normalize_dim(dim, 0, "squeeze"); return rec.finish(as_strided({}, {}, offset()), [] { return derivatives::identity(); }); }
  int64_t d = normalize_dim(dim, ndim(), "squeeze");
  if (shape()[d] != 1) return rec.finish(as_strided(shape(), strides(), offset()), [] { return derivatives::identity(); });
  Shape sh = shape();
  Strides st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return rec.finish(as_strided(sh, st, offset()), [&] { return derivatives::reshape(shape()); });
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  Recorder rec("UnsqueezeBackward", {*this});
  int64_t d = normalize_dim(dim, ndim() + 1, "unsqueeze");
  Shape sh = shape();
  Strides st = strides();
  int64_t stride = d < ndim() ? strides()[d] * shape()[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return rec.finish(as_strided(sh, st, offset()), [&] { return derivatives::reshape(shape()); });
}

Tensor Tensor::slice(int64_t dim, int64_t start, int64_t stop, int64_t step) const {
  Recorder rec("SliceBackward", {*this});
  ORCHARD_CHECK(ndim() > 0, IndexError, "slice: cannot slice a 0-d tensor");
  int64_t d = normalize_dim(dim, ndim(), "slice");
  ORCHARD_CHECK(step > 0, ValueError, "slice: step must be positive, got ", step);
  int64_t n = shape()[d];
  auto clampi = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  start = clampi(start);
  stop = std::max(clampi(stop), start);
  Shape sh = shape();
  Strides st = strides();
  sh[d] = stop > start ? (stop - start - 1) / step + 1 : 0;  // (stop - start + step - 1 may overflow)
  // A step that keeps at most one element leaves the stride alone: stride * step may overflow, or
  // overflow later in consumers that scale it to bytes (the buffer protocol). With two elements or
  // more, step < n and stride * step stays within the storage's extent.
  st[d] = sh[d] <= 1 ? strides()[d] : strides()[d] * step;
  return rec.finish_view(as_strided(sh, st, offset() + start * strides()[d]),
                         [=](const Tensor& z) { return z.slice(d, start, stop, step); });
}

Tensor Tensor::select(int64_t dim, int64_t index) const {
  Recorder rec("SelectBackward", {*this});
  ORCHARD_CHECK(ndim() > 0, IndexError, "select: cannot index a 0-d tensor");
  int64_t d = normalize_dim(dim, ndim(), "select");
  int64_t n = shape()[d];
  ORCHARD_CHECK(index >= -n && index < n, IndexError, "index ", index,
                " is out of bounds for dimension ", d, " with size ", n);
  if (index < 0) index += n;
  Shape sh = shape();
  Strides st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return rec.finish_view(as_strided(sh, st, offset() + index * strides()[d]),
                         [=](const Tensor& z) { return z.select(d, index); });
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  int64_t d = existing_dim(*this, dim, "narrow");
  int64_t n = shape()[d];
  if (start < 0) start += n;
  ORCHARD_CHECK(start >= 0 && length >= 0 && length <= n - start, IndexError, "narrow: start ", start,
                " and length ", length, " do not fit in dimension ", d, " of size ", n);
  return slice(d, start, start + length, 1);
}

Tensor Tensor::clone() const {
  Recorder rec("CloneBackward", {*this});
  Tensor out = empty(shape(), dtype(), device());
  copy_(out, *this);
  return rec.finish(out, [] { return derivatives::identity(); });
}

Tensor Tensor::to(DType dtype) const { return dtype == this->dtype() ? *this : cast(*this, dtype); }

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Recorder rec("ToDeviceBackward", {*this});  // Node::apply moves the gradient back
  Tensor out = empty(shape(), dtype(), device);
  copy_(out, *this);
  return rec.finish(out, [] { return derivatives::identity(); });
}

}  // namespace orchard
