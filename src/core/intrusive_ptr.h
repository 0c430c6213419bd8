// Intrusive reference counting: the count lives in the object, so a raw pointer can be turned
// back into an owning one and a handle costs one pointer.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

namespace orchard {

class RefCounted {
 public:
  RefCounted() = default;
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;
  virtual ~RefCounted() = default;

  void retain() const { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() const {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  int64_t use_count() const { return refs_.load(std::memory_order_relaxed); }

 private:
  mutable std::atomic<int64_t> refs_{0};
};

template <typename T>
class Ptr {
 public:
  Ptr() = default;
  Ptr(T* p) : p_(p) { if (p_) p_->retain(); }  // NOLINT: implicit by design, like a raw pointer
  Ptr(const Ptr& o) : p_(o.p_) { if (p_) p_->retain(); }
  Ptr(Ptr&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <typename U>
  Ptr(const Ptr<U>& o) : Ptr(o.get()) {}
  ~Ptr() { if (p_) p_->release(); }
  Ptr& operator=(Ptr o) noexcept { std::swap(p_, o.p_); return *this; }

  T* get() const { return p_; }
  T* operator->() const { return p_; }
  T& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }
  bool operator==(const Ptr& o) const { return p_ == o.p_; }
  bool operator!=(const Ptr& o) const { return p_ != o.p_; }

 private:
  T* p_ = nullptr;
};

template <typename T, typename... Args>
Ptr<T> make_ptr(Args&&... args) { return Ptr<T>(new T(std::forward<Args>(args)...)); }

}  // namespace orchard
