#include "tensor.h"

#include <algorithm>
#include <numeric>

#include "errors.h"
#include "runtime.h"

namespace orchard {

TensorImpl::TensorImpl(Ptr<Storage> storage_, Shape shape_, Strides strides_, int64_t offset_, DType dtype_)
    : storage(std::move(storage_)), shape(std::move(shape_)), strides(std::move(strides_)),
      offset(offset_), dtype(dtype_) {}

TensorImpl::~TensorImpl() = default;

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  ORCHARD_CHECK(runtime_for(device).supports(dtype), DTypeError, device_name(device), " tensors cannot be ",
                dtype_name(dtype), " (the device has no ", dtype_name(dtype), " arithmetic); use float32");
  int64_t n = checked_numel(shape);
  size_t nbytes;
  ORCHARD_CHECK(!__builtin_mul_overflow(size_t(n), orchard::itemsize(dtype), &nbytes), ValueError, "shape ",
                shape_str(shape), " of ", dtype_name(dtype), " needs more bytes than fit in 64 bits");
  return view_of(Storage::allocate(device, nbytes), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::view_of(Ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype) {
  return Tensor(make_ptr<TensorImpl>(std::move(storage), std::move(shape), std::move(strides), offset, dtype));
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape()) n *= d;
  return n;
}

int64_t existing_dim(const Tensor& t, int64_t dim, const char* op) {
  ORCHARD_CHECK(t.ndim() > 0, IndexError, op, ": dimension ", dim, " is out of range for a 0-d tensor (it has no dimensions)");
  return normalize_dim(dim, t.ndim(), op);
}

int64_t Tensor::size(int64_t dim) const { return shape()[existing_dim(*this, dim, "size")]; }
int64_t Tensor::stride(int64_t dim) const { return strides()[existing_dim(*this, dim, "stride")]; }

void* Tensor::data() const {
  return static_cast<char*>(storage()->data()) + offset() * int64_t(itemsize());
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // as in PyTorch: no elements, nothing out of place
  int64_t expected = 1;
  for (int64_t i = ndim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

Tensor Tensor::as_strided(Shape shape, Strides strides, int64_t offset) const {
  return view_of(storage(), std::move(shape), std::move(strides), offset, dtype());
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::detach() const { return view_of(storage(), shape(), strides(), offset(), dtype()); }

}  // namespace orchard
