#include "autocast.h"

#include <unordered_map>

#include "autograd.h"
#include "storage.h"

namespace orchard::autocast {

namespace {

// How an op's floating-point inputs are cast (float64 ones never are, as in PyTorch):
//   Lower    to the region's low precision: the products, whose throughput and memory it doubles
//   Float32  to float32: ops whose range or accumulated error low precision would ruin
//   Promote  all to the widest of them: ops that must take one dtype
enum class Policy : uint8_t { None, Lower, Float32, Promote };

struct Row {
  std::string_view op;
  Policy cpu, gpu;
};

// PyTorch's lists for its CPU and for its GPUs (MPS and CUDA, which agree on these ops), for the ops
// Orchard has. On the CPU, softmax, layer norm and reductions keep the low precision as PyTorch's do
// (their kernels accumulate in float32); on GPUs (Metal, CUDA) they run in float32.
constexpr Row kPolicies[] = {
    {"matmul", Policy::Lower, Policy::Lower},
    {"addmm", Policy::Lower, Policy::Lower},
    {"linear", Policy::Lower, Policy::Lower},
    {"scaled_dot_product_attention", Policy::Lower, Policy::Lower},
    {"flash_attention", Policy::Lower, Policy::Lower},
    {"cross_entropy", Policy::Float32, Policy::Float32},
    {"nll_loss", Policy::Float32, Policy::Float32},
    {"mse_loss", Policy::Float32, Policy::Float32},
    {"exp", Policy::None, Policy::Float32},
    {"log", Policy::None, Policy::Float32},
    {"rsqrt", Policy::None, Policy::Float32},
    {"pow", Policy::None, Policy::Float32},
    {"softmax", Policy::None, Policy::Float32},
    {"log_softmax", Policy::None, Policy::Float32},
    {"layer_norm", Policy::None, Policy::Float32},
    {"sum", Policy::None, Policy::Float32},
    {"logsumexp", Policy::None, Policy::Float32},
    {"cumsum", Policy::None, Policy::Float32},
    {"cat", Policy::Promote, Policy::None},
    {"stack", Policy::Promote, Policy::None},
    {"scatter_add", Policy::None, Policy::Promote},
    {"index_add", Policy::None, Policy::Promote},
};

Policy policy(std::string_view op, Device device) {
  for (const Row& r : kPolicies)
    if (r.op == op) return device == Device::CPU ? r.cpu : r.gpu;
  return Policy::None;
}

thread_local DeviceState t_state[kNumDevices] = {
    {false, DType::BFloat16, true}, {false, DType::Float16, true}, {false, DType::Float16, true}};
thread_local int t_paused = 0;

// Parameters' casts, kept for the region so that a weight used by several ops is cast once per step.
struct CachedCast {
  Tensor source;  // held, so that its address is not reused for another tensor while cached
  uint64_t version;
  Tensor cast;
};
thread_local std::unordered_map<const TensorImpl*, CachedCast> t_cache;

bool eligible(const Tensor& t) { return t.defined() && is_floating(t.dtype()) && t.dtype() != DType::Float64; }

Tensor cast_lower(const Tensor& t, const DeviceState& s) {
  if (!eligible(t) || t.dtype() == s.dtype) return t;
  // As PyTorch: float32 leaves that require grad (parameters). Only while recording, so that a cast
  // made under no_grad (no history) is never handed to an op whose gradient needs one.
  const bool cacheable = s.cache_enabled && t.dtype() == DType::Float32 && autograd::requires_grad(t) &&
                         autograd::is_leaf(t) && autograd::grad_enabled();
  if (!cacheable) return t.to(s.dtype);
  const uint64_t version = t.storage()->version();
  auto it = t_cache.find(t.impl());
  if (it != t_cache.end() && it->second.version == version && it->second.cast.dtype() == s.dtype)
    return it->second.cast;
  Tensor cast = t.to(s.dtype);
  t_cache[t.impl()] = {t, version, cast};
  return cast;
}

DType widest(const Tensor* begin, const Tensor* end, DType low) {
  for (const Tensor* t = begin; t != end; ++t)
    if (eligible(*t) && t->dtype() == DType::Float32) return DType::Float32;
  return low;
}

}  // namespace

DeviceState state(Device device) { return t_state[int(device)]; }
void set_state(Device device, const DeviceState& s) { t_state[int(device)] = s; }
DType default_dtype(Device device) { return device == Device::CPU ? DType::BFloat16 : DType::Float16; }
void clear_cache() { t_cache.clear(); }

Cast::Cast(std::string_view op, std::initializer_list<Tensor> inputs) : Cast(op, inputs.begin(), inputs.end()) {}
Cast::Cast(std::string_view op, const std::vector<Tensor>& inputs)
    : Cast(op, inputs.data(), inputs.data() + inputs.size()) {}

Cast::Cast(std::string_view op, const Tensor* begin, const Tensor* end) {
  if (t_paused) return;
  // The op's device: its first tensor's, passing over Python scalars (which live on the CPU).
  const Tensor* first = nullptr;
  for (const Tensor* t = begin; t != end; ++t)
    if (t->defined() && (!first || (first->is_wrapped_number() && !t->is_wrapped_number()))) first = t;
  if (!first) return;
  const DeviceState& s = t_state[int(first->device())];
  const Policy p = s.enabled ? policy(op, first->device()) : Policy::None;
  if (p == Policy::None) return;
  const DType target = p == Policy::Float32 ? DType::Float32 : p == Policy::Promote ? widest(begin, end, s.dtype) : s.dtype;
  inputs_.reserve(size_t(end - begin));
  for (const Tensor* it = begin; it != end; ++it) {
    const Tensor& t = *it;
    // Tensors of another device keep their dtype (the op's own device check reports them), and Python
    // scalars keep promoting weakly.
    const bool castable = eligible(t) && t.device() == first->device() && !t.is_wrapped_number();
    inputs_.push_back(!castable ? t : p == Policy::Lower ? cast_lower(t, s) : t.to(target));
  }
  active_ = true;
  ++t_paused;
}

Cast::~Cast() {
  if (active_) --t_paused;
}

Pause::Pause() { ++t_paused; }
Pause::~Pause() { --t_paused; }

}  // namespace orchard::autocast
