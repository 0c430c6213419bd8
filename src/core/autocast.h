// Autocast (mixed precision), as PyTorch's torch.autocast: inside a region enabled for a device,
// the ops on that device's tensors cast their floating-point inputs by the op's policy (the table in
// autocast.cpp, PyTorch's lists for the CPU and for Apple GPUs). The state is per thread.
#pragma once

#include <initializer_list>
#include <string_view>
#include <vector>

#include "device.h"
#include "dtype.h"
#include "tensor.h"

namespace orchard::autocast {

struct DeviceState {
  bool enabled = false;
  DType dtype;  // the low precision: bfloat16 or float16
  bool cache_enabled = true;
};

DeviceState state(Device device);
void set_state(Device device, const DeviceState& s);
DType default_dtype(Device device);  // bfloat16 on the CPU, float16 on GPUs, as PyTorch's CPU, MPS and CUDA
// Drops the casts of parameters kept since the outermost region began (its exit calls this).
void clear_cache();

// The inputs of one op as autocast casts them; while alive, autocast is paused for the ops it runs,
// so that an op's own internals are not cast again. False when no cast applies (autocast off for
// the inputs' device, autocast paused, or an op outside the lists), so a front-end reads
//   if (autocast::Cast c{"matmul", {a, b}}) return matmul(c[0], c[1]);
// Undefined tensors (absent optional inputs) stay undefined.
class Cast {
 public:
  Cast(std::string_view op, std::initializer_list<Tensor> inputs);
  Cast(std::string_view op, const std::vector<Tensor>& inputs);
  ~Cast();
  Cast(const Cast&) = delete;
  Cast& operator=(const Cast&) = delete;

  explicit operator bool() const { return active_; }
  const Tensor& operator[](size_t i) const { return inputs_[i]; }
  const std::vector<Tensor>& inputs() const { return inputs_; }

 private:
  Cast(std::string_view op, const Tensor* begin, const Tensor* end);

  bool active_ = false;
  std::vector<Tensor> inputs_;
};

// Pauses autocast on this thread while alive (the autograd engine runs backward under one).
class Pause {
 public:
  Pause();
  ~Pause();
  Pause(const Pause&) = delete;
  Pause& operator=(const Pause&) = delete;
};

}  // namespace orchard::autocast
