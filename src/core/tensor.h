// Tensor: a view (shape, strides, offset, dtype) over a ref-counted Storage. Copying a Tensor
// copies the handle; views share the storage. Ops live in ops.h as free functions.
#pragma once

#include <cstdint>
#include <memory>

#include "device.h"
#include "dtype.h"
#include "intrusive_ptr.h"
#include "shape.h"
#include "storage.h"

namespace orchard {

// A tensor's autograd state (autograd.h), deleted in autograd.cpp: this layer needs nothing from it.
struct AutogradMeta;
struct AutogradMetaDeleter {
  void operator()(AutogradMeta* m) const;
};

class TensorImpl : public RefCounted {
 public:
  TensorImpl(Ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype);
  ~TensorImpl() override;

  Ptr<Storage> storage;
  Shape shape;
  Strides strides;  // in elements
  int64_t offset;   // in elements
  DType dtype;
  bool wrapped_number = false;  // a Python scalar: promotes weakly (see promote_with_scalar)
  std::unique_ptr<AutogradMeta, AutogradMetaDeleter> autograd;  // created on first autograd use
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh contiguous tensor; contents uninitialised.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  // A view over existing storage.
  static Tensor view_of(Ptr<Storage> storage, Shape shape, Strides strides, int64_t offset, DType dtype);

  bool defined() const { return bool(impl_); }
  TensorImpl* impl() const { return impl_.get(); }

  const Shape& shape() const { return impl_->shape; }
  const Strides& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  const Ptr<Storage>& storage() const { return impl_->storage; }
  int64_t ndim() const { return int64_t(impl_->shape.size()); }
  int64_t numel() const;
  int64_t size(int64_t dim) const;
  int64_t stride(int64_t dim) const;
  size_t itemsize() const { return orchard::itemsize(dtype()); }
  size_t nbytes() const { return size_t(numel()) * itemsize(); }

  // Address of the first element (CPU-visible memory only).
  void* data() const;
  template <typename T> T* data_as() const { return static_cast<T*>(data()); }

  bool is_contiguous() const;
  bool is_alias_of(const Tensor& other) const { return storage() == other.storage(); }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  // Views (no copy). Each validates its arguments and throws with the shapes in the message.
  Tensor as_strided(Shape shape, Strides strides, int64_t offset) const;
  Tensor reshape(Shape shape) const;  // a view when the strides allow, else a contiguous copy
  Tensor view(Shape shape) const;     // a view or a ValueError
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor permute(std::vector<int64_t> dims) const;
  Tensor expand(Shape shape) const;  // -1 keeps a dim; new leading dims allowed (broadcast_to)
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor slice(int64_t dim, int64_t start, int64_t stop, int64_t step = 1) const;  // Python rules
  Tensor select(int64_t dim, int64_t index) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;

  Tensor contiguous() const;  // this, or a contiguous copy
  Tensor clone() const;       // always a copy, contiguous
  Tensor detach() const;      // shares storage, no autograd history
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  bool is_wrapped_number() const { return impl_->wrapped_number; }

 private:
  Ptr<TensorImpl> impl_;
};

// Normalises dim for a tensor that has dims to index: normalize_dim also accepts 0 and -1 for a 0-d
// tensor (reductions and softmax take them), but a 0-d tensor has no shape()[0] to read.
int64_t existing_dim(const Tensor& t, int64_t dim, const char* op);

}  // namespace orchard
