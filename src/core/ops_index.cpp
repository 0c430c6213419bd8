#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>

#include "autocast.h"
#include "derivatives.h"
#include "ops_common.h"

namespace orchard {

namespace detail {

void check_integer_index(const Tensor& index, const char* op) {
  ORCHARD_CHECK(is_integral(index.dtype()), DTypeError, op, ": indices must be an int32 or int64 tensor, got ",
                dtype_name(index.dtype()));
}

Tensor checked_index(const Tensor& index, int64_t size, const char* op, int64_t dim, IndexBounds bounds) {
  check_integer_index(index, op);
  Tensor idx = index.to(DType::Int64).contiguous();
  if (idx.numel() == 0) return idx;
  // Both bounds in one read: on a GPU each read waits for the queued work.
  const Tensor extremes = stack({amin(idx), amax(idx)}, 0).to(Device::CPU);
  const int64_t lo = extremes.data_as<int64_t>()[0], hi = extremes.data_as<int64_t>()[1];
  const int64_t lowest = bounds == IndexBounds::WrapNegative ? -size : 0;
  if (lo < lowest || hi >= size) {
    const std::string message = concat(op, ": index ", lo < lowest ? lo : hi, " is out of bounds for dimension ", dim,
                                       " with size ", size, " (expected indices in [", lowest, ", ", size, "))");
    if (bounds == IndexBounds::RefuseAsRuntimeError) throw RuntimeError(message);
    throw IndexError(message);
  }
  if (lo >= 0) return idx;
  const Device dev = idx.device();
  return where(binary(BinaryOp::Lt, idx, scalar_tensor(0, DType::Int64, dev, true)),
               add(idx, scalar_tensor(double(size), DType::Int64, dev, true)), idx);
}

}  // namespace detail

using namespace detail;

namespace {

// PyTorch's rule for gather and scatter: index may be no larger than `other` in any dim, except
// `dim` when skip_dim is set.
void check_index_fits(const Tensor& index, const Tensor& other, const char* other_name, int64_t dim,
                      bool skip_dim, const char* op) {
  for (int64_t d = 0; d < index.ndim(); ++d)
    ORCHARD_CHECK((skip_dim && d == dim) || index.size(d) <= other.size(d), ValueError, op, ": index of shape ",
                  shape_str(index.shape()), " is larger than ", other_name, " of shape ", shape_str(other.shape()),
                  " in dimension ", d, "; index.size(d) <= ", other_name, ".size(d) is required",
                  skip_dim ? " for every d != dim" : "");
}

void check_same_ndim(const Tensor& x, const Tensor& other, const char* other_name, const char* op) {
  ORCHARD_CHECK(other.ndim() == x.ndim(), ValueError, op, ": ", other_name, " of shape ", shape_str(other.shape()),
                " must have as many dimensions as the input of shape ", shape_str(x.shape()));
}

}  // namespace

static Tensor index_select_forward(const Tensor& x, int64_t dim, const Tensor& index) {
  ORCHARD_CHECK(index.ndim() <= 1, IndexError, "index_select: index must be 0-d or 1-d, got shape ",
                shape_str(index.shape()));
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, "index_select");
    Tensor r = index_select(x.reshape({1}), 0, index);
    return index.ndim() == 0 ? r.reshape({}) : r;
  }
  const int64_t d = normalize_dim(dim, x.ndim(), "index_select");
  const Device dev = common_device("index_select", {x, index});
  Tensor idx = checked_index(index.reshape({-1}), x.size(d), "index_select", d, IndexBounds::Refuse);
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = empty(shape, x.dtype(), dev);
  if (out.numel() > 0) {
    const int64_t outer = std::accumulate(shape.begin(), shape.begin() + d, int64_t(1), std::multiplies<>());
    const int64_t inner = std::accumulate(shape.begin() + d + 1, shape.end(), int64_t(1), std::multiplies<>());
    runtime_for(dev).index_select({x.contiguous(), idx, out, outer, inner});
  }
  return out;
}

static Tensor gather_forward(const Tensor& x, int64_t dim, const Tensor& index) {
  check_integer_index(index, "gather");
  check_same_ndim(x, index, "index", "gather");
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, "gather");
    return gather(x.reshape({1}), 0, index.reshape({1})).reshape({});
  }
  const int64_t d = normalize_dim(dim, x.ndim(), "gather");
  check_index_fits(index, x, "input", d, true, "gather");
  const Device dev = common_device("gather", {x, index});
  Tensor idx = checked_index(index, x.size(d), "gather", d, IndexBounds::RefuseAsRuntimeError);
  Tensor out = empty(index.shape(), x.dtype(), dev);
  if (out.numel() > 0) runtime_for(dev).gather({x.contiguous(), idx, out, d});
  return out;
}

static Tensor scatter_add_forward(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_integer_index(index, "scatter_add");
  check_same_ndim(x, index, "index", "scatter_add");
  check_same_ndim(x, src, "src", "scatter_add");
  ORCHARD_CHECK(src.dtype() == x.dtype(), DTypeError, "scatter_add: src has dtype ", dtype_name(src.dtype()),
                " but the input has dtype ", dtype_name(x.dtype()), "; they must match");
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, "scatter_add");
    return scatter_add(x.reshape({1}), 0, index.reshape({1}), src.reshape({1})).reshape({});
  }
  const int64_t d = normalize_dim(dim, x.ndim(), "scatter_add");
  check_index_fits(index, x, "input", d, true, "scatter_add");
  check_index_fits(index, src, "src", d, false, "scatter_add");
  const Device dev = common_device("scatter_add", {x, index, src});
  Tensor idx = checked_index(index, x.size(d), "scatter_add", d, IndexBounds::RefuseAsRuntimeError);
  Tensor out = x.clone();
  if (idx.numel() > 0) {
    Tensor used = src;  // only the index-shaped corner of src is read
    for (int64_t i = 0; i < src.ndim(); ++i) used = used.narrow(i, 0, index.size(i));
    runtime_for(dev).scatter_add({used.contiguous(), idx, out, d});
  }
  return out;
}

static Tensor index_add_forward(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source) {
  ORCHARD_CHECK(index.ndim() <= 1, IndexError, "index_add: index must be 0-d or 1-d, got shape ",
                shape_str(index.shape()));
  ORCHARD_CHECK(source.dtype() == x.dtype(), DTypeError, "index_add: source has dtype ", dtype_name(source.dtype()),
                " but the input has dtype ", dtype_name(x.dtype()), "; they must match");
  if (x.ndim() == 0) {
    normalize_dim(dim, 0, "index_add");
    ORCHARD_CHECK(source.ndim() <= 1 && source.numel() == index.numel(), ValueError,
                  "index_add: a 0-d input takes a source of one value per index, got source of shape ",
                  shape_str(source.shape()), " and index of shape ", shape_str(index.shape()));
    return index_add(x.reshape({1}), 0, index.reshape({-1}), source.reshape({-1})).reshape({});
  }
  const int64_t d = normalize_dim(dim, x.ndim(), "index_add");
  Shape expected = x.shape();
  expected[d] = index.numel();
  ORCHARD_CHECK(source.shape() == expected, ValueError, "index_add: source of shape ", shape_str(source.shape()),
                " does not match: expected ", shape_str(expected), " (the input's shape with dim ", d,
                " the index's length)");
  const Device dev = common_device("index_add", {x, index, source});
  Tensor idx = checked_index(index.reshape({-1}), x.size(d), "index_add", d, IndexBounds::RefuseAsRuntimeError);
  Tensor out = x.clone();
  if (idx.numel() > 0 && out.numel() > 0) {
    const Shape& shape = x.shape();
    const int64_t outer = std::accumulate(shape.begin(), shape.begin() + d, int64_t(1), std::multiplies<>());
    const int64_t inner = std::accumulate(shape.begin() + d + 1, shape.end(), int64_t(1), std::multiplies<>());
    runtime_for(dev).index_add({source.contiguous(), idx, out, outer, inner});
  }
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source) {
  if (autocast::Cast c{"index_add", {x, index, source}}) return index_add(c[0], dim, c[1], c[2]);
  autograd::Recorder rec("IndexAddBackward", {x, index, source});
  Tensor out = index_add_forward(x, dim, index, source);
  return rec.finish(out, [&] {
    return derivatives::index_add(normalize_dim(dim, x.ndim(), "index_add"), index, source.shape(),
                                  {rec.needs(0), false, rec.needs(2)});
  });
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  ORCHARD_CHECK(weight.ndim() == 2, ValueError, "embedding: weight must be 2-D [num_embeddings, dim], got shape ",
                shape_str(weight.shape()));
  Shape shape = indices.shape();
  shape.push_back(weight.size(1));
  // Checked here too, so that an error names embedding rather than index_select.
  checked_index(indices, weight.size(0), "embedding", 0, IndexBounds::Refuse);
  return index_select(weight, 0, indices.reshape({-1})).reshape(shape);
}

static Tensor cat_forward(const std::vector<Tensor>& tensors, int64_t dim) {
  ORCHARD_CHECK(!tensors.empty(), ValueError, "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  ORCHARD_CHECK(first.ndim() > 0, ValueError, "cat: zero-dimensional tensors cannot be concatenated; "
                "use stack() or unsqueeze them first");
  const int64_t d = normalize_dim(dim, first.ndim(), "cat");
  Shape shape = first.shape();
  shape[d] = 0;
  DType dtype = first.dtype();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    common_device("cat", {first, t});
    bool same = t.ndim() == first.ndim();
    for (int64_t j = 0; same && j < t.ndim(); ++j) same = j == d || t.size(j) == first.size(j);
    ORCHARD_CHECK(same, ValueError, "cat: tensor ", i, " has shape ", shape_str(t.shape()), " but tensor 0 has shape ",
                  shape_str(first.shape()), "; all sizes must match except in dimension ", d);
    ORCHARD_CHECK(!__builtin_add_overflow(shape[d], t.size(d), &shape[d]), ValueError, "cat: the sizes in dimension ",
                  d, " add up to more than fit in 64 bits");
    dtype = promote_types(dtype, t.dtype());
  }
  Tensor out = empty(shape, dtype, first.device());
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    Tensor part = out.narrow(d, start, t.size(d));
    copy_(part, t);
    start += t.size(d);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  ORCHARD_CHECK(!tensors.empty(), ValueError, "stack: expected a non-empty list of tensors");
  const int64_t d = normalize_dim(dim, tensors[0].ndim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    ORCHARD_CHECK(tensors[i].shape() == tensors[0].shape(), ValueError, "stack: expects tensors of equal shape, got ",
                  shape_str(tensors[0].shape()), " at entry 0 and ", shape_str(tensors[i].shape()), " at entry ", i);
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  ORCHARD_CHECK(x.ndim() > 0, ValueError, "split: expects a tensor with at least 1 dimension");
  const int64_t d = normalize_dim(dim, x.ndim(), "split");
  const int64_t n = x.size(d);
  ORCHARD_CHECK(split_size > 0 || (split_size == 0 && n == 0), ValueError, "split: split_size must be positive (or 0 "
                "for a dimension of size 0), got ", split_size, " for dimension ", d, " of size ", n);
  std::vector<int64_t> sections;
  for (int64_t start = 0; start < n; start += split_size) sections.push_back(std::min(split_size, n - start));
  if (sections.empty()) sections.push_back(0);  // PyTorch returns the empty tensor itself
  return split(x, sections, d);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sections, int64_t dim) {
  ORCHARD_CHECK(x.ndim() > 0, ValueError, "split: expects a tensor with at least 1 dimension");
  const int64_t d = normalize_dim(dim, x.ndim(), "split");
  int64_t total = 0;
  for (int64_t s : sections) {
    ORCHARD_CHECK(s >= 0, ValueError, "split: section sizes must be non-negative, got ", shape_str(sections));
    if (__builtin_add_overflow(total, s, &total)) total = std::numeric_limits<int64_t>::max();  // reported as a mismatch below
  }
  ORCHARD_CHECK(total == x.size(d), ValueError, "split: section sizes ", shape_str(sections), " sum to ", total,
                " but dimension ", d, " of shape ", shape_str(x.shape()), " has size ", x.size(d));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sections) {
    parts.push_back(x.narrow(d, start, s));
    start += s;
  }
  return parts;
}

namespace {
// Keeps the elements with col - row <= diagonal (lower) or >= diagonal (upper); zeros the rest.
Tensor triangle(const Tensor& x, int64_t diagonal, bool upper, const char* op) {
  ORCHARD_CHECK(x.ndim() >= 2, ValueError, op, ": expects a tensor with at least 2 dimensions, got shape ",
                shape_str(x.shape()));
  const Device dev = x.device();
  Tensor rows = arange(0, double(x.size(-2)), 1, DType::Int64, dev).unsqueeze(1);
  Tensor cols = arange(0, double(x.size(-1)), 1, DType::Int64, dev);
  Tensor diag = scalar_tensor(double(diagonal), DType::Int64, dev, true);
  Tensor keep = binary(upper ? BinaryOp::Ge : BinaryOp::Le, sub(cols, rows), diag);
  return where(keep, x, scalar_tensor(0, x.dtype(), dev, true));
}
}  // namespace

Tensor tril(const Tensor& x, int64_t diagonal) { return triangle(x, diagonal, false, "tril"); }
Tensor triu(const Tensor& x, int64_t diagonal) { return triangle(x, diagonal, true, "triu"); }

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  autograd::Recorder rec("IndexSelectBackward", {x});
  Tensor out = index_select_forward(x, dim, index);
  return rec.finish(out, [&] { return derivatives::index_select(x.shape(), normalize_dim(dim, x.ndim(), "index_select"), index); });
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  autograd::Recorder rec("GatherBackward", {x});
  Tensor out = gather_forward(x, dim, index);
  return rec.finish(out, [&] { return derivatives::gather(x.shape(), normalize_dim(dim, x.ndim(), "gather"), index); });
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  if (autocast::Cast c{"scatter_add", {x, index, src}}) return scatter_add(c[0], dim, c[1], c[2]);
  autograd::Recorder rec("ScatterAddBackward", {x, index, src});
  Tensor out = scatter_add_forward(x, dim, index, src);
  return rec.finish(out, [&] { return derivatives::scatter_add(normalize_dim(dim, x.ndim(), "scatter_add"), index, src.shape(), {rec.needs(0), false, rec.needs(2)}); });
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (autocast::Cast c{"cat", tensors}) return cat(c.inputs(), dim);
  autograd::Recorder rec("CatBackward", tensors);
  Tensor out = cat_forward(tensors, dim);
  return rec.finish(out, [&] { return derivatives::cat(tensors, normalize_dim(dim, tensors.front().ndim(), "cat")); });
}

}  // namespace orchard
