// A block of device memory shared by tensor views. Either allocated by the device's runtime or
// wrapping external memory (NumPy, DLPack) whose owner is released with the last reference.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "device.h"
#include "intrusive_ptr.h"

namespace orchard {

class Storage : public RefCounted {
 public:
  using Deleter = std::function<void(void*)>;

  static Ptr<Storage> allocate(Device device, size_t nbytes);
  // Wraps memory owned elsewhere; `release` runs when the last reference goes.
  static Ptr<Storage> wrap(Device device, void* data, size_t nbytes, Deleter release);

  ~Storage() override;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t id() const { return id_; }

  // Bumped by every in-place write; autograd compares it with the version a node saved.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  Storage(Device device, void* data, size_t nbytes, Deleter release);

  Device device_;
  void* data_;
  size_t nbytes_;
  Deleter release_;
  uint64_t id_;
  bool logged_alloc_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace orchard
