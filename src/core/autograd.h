// Reverse-mode autograd: an eager tape in the PyTorch style. Every differentiable op makes its
// output the result of a Node that knows the op's inputs (as edges) and a backward closure. Every
// op in Orchard has a single differentiable output, so a Node maps one gradient to one per input.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "autocast.h"
#include "tensor.h"

namespace orchard::autograd {

// ---- grad mode (per thread, like PyTorch) ------------------------------------------------------
bool grad_enabled();
void set_grad_enabled(bool enabled);

class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : prev_(grad_enabled()) { set_grad_enabled(enabled); }
  ~GradModeGuard() { set_grad_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

// ---- saved tensors ----------------------------------------------------------------------------
// A tensor kept for backward, with the storage version it had when saved. Reading it after an
// in-place change raises instead of silently using the new values. Saved as a plain alias (no
// autograd history), so saving an op's own output makes no reference cycle.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit so closures can capture tensors as saved
  const Tensor& get() const;
  bool defined() const { return tensor_.defined(); }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

// ---- gradient hooks (Tensor.register_hook) ------------------------------------------------------
// Called with the gradient computed for a tensor before it flows on (or into a leaf's .grad);
// returns a replacement of the same shape, or an undefined tensor to keep the gradient.
using GradHook = std::function<Tensor(const Tensor& grad)>;

// One tensor's hooks, run in registration order. Ids let a handle remove its own hook; the engine
// runs a copy of the list, so a hook may add or remove hooks while it runs.
class GradHooks {
 public:
  uint64_t add(GradHook hook);
  void remove(uint64_t id);
  void clear();
  Tensor run(Tensor grad) const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<uint64_t, GradHook>> hooks_;
  uint64_t next_id_ = 0;
};

// ---- graph ------------------------------------------------------------------------------------
class Node;
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad)>;
// The part of a tensor shaped like a view's input that the view picks (a slice, a select).
using ViewFn = std::function<Tensor(const Tensor&)>;
// Called with a leaf once backward has accumulated into its .grad (register_post_accumulate_grad_hook).
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;

// A leaf's post-accumulate-grad hooks, run in registration order, keyed for removal.
struct PostAccumulateGradHooks {
  std::vector<std::pair<uint64_t, PostAccumulateGradHook>> list;
  uint64_t next_key = 0;
};

// Removes the hook it was returned for (again: nothing). It holds the hooks weakly, so it keeps no
// tensor alive (a hook holding its own handle makes no cycle).
class PostAccumulateGradHookHandle {
 public:
  PostAccumulateGradHookHandle(std::weak_ptr<PostAccumulateGradHooks> hooks, uint64_t key)
      : hooks_(std::move(hooks)), key_(key) {}
  void remove() const;

 private:
  std::weak_ptr<PostAccumulateGradHooks> hooks_;
  uint64_t key_;
};

struct Edge {
  std::shared_ptr<Node> node;  // null when that input needs no gradient
};

// What a gradient must match to flow into an input: its shape, dtype and device.
struct InputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node {
 public:
  // view_of: set for a view that picks part of its single input (see add_into).
  Node(const char* name, std::vector<Edge> next, std::vector<InputMeta> inputs, BackwardFn fn,
       ViewFn view_of = nullptr);
  virtual ~Node();  // iterative: freeing a deep graph never recurses

  const char* name() const { return name_; }
  const std::vector<Edge>& next() const { return next_; }
  uint64_t sequence() const { return sequence_; }

  // Gradients for each input (undefined where an input needs none), each brought to its input's
  // shape (summing broadcast dims), dtype and device: formulas need not do that themselves.
  virtual std::vector<Tensor> apply(const Tensor& grad);
  // A view's node: adds grad in place into the view's part of `into`, the gradient gathered so
  // far for its input, instead of apply() padding grad with zeros to the input's shape for the
  // engine to add (the parts of a split then fill one tensor). False, and nothing done, unless
  // `into` is a contiguous gradient of the input's shape and dtype that no one else holds.
  bool add_into(const Tensor& grad, Tensor& into);
  // Drops saved tensors once backward ran without retain_graph.
  virtual void release();
  // The hooks on the gradient of the tensor this node produces (AccumulateGrad: of its leaf);
  // null when there are none and `create` is false.
  virtual std::shared_ptr<GradHooks> hooks(bool create);

 protected:
  const char* name_;
  std::vector<Edge> next_;
  std::vector<InputMeta> inputs_;
  BackwardFn fn_;
  ViewFn view_of_;
  uint64_t sequence_;
  bool released_ = false;
  std::shared_ptr<GradHooks> hooks_;
};

// Adds incoming gradients into a leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf);
  std::vector<Tensor> apply(const Tensor& grad) override;
  void release() override {}
  std::shared_ptr<GradHooks> hooks(bool create) override;
  const Tensor& leaf() const { return leaf_; }

 private:
  void run_post_accumulate_grad_hooks();

  Tensor leaf_;
};

}  // namespace orchard::autograd

namespace orchard {

// Per-tensor autograd state, created on first use.
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;            // null for leaves
  std::weak_ptr<autograd::AccumulateGrad> accumulator;  // leaves: their cached AccumulateGrad
  std::shared_ptr<autograd::GradHooks> hooks;          // leaves: hooks on their gradient
  std::shared_ptr<autograd::PostAccumulateGradHooks> post_accumulate_grad_hooks;  // leaves; null when none
};

namespace autograd {

bool requires_grad(const Tensor& t);
void set_requires_grad(const Tensor& t, bool value);  // leaves only; ValueError otherwise
const Tensor& grad(const Tensor& t);                 // undefined when none
void set_grad(const Tensor& t, const Tensor& g);
std::shared_ptr<Node> grad_fn(const Tensor& t);
bool is_leaf(const Tensor& t);
// The hooks on t's gradient (a leaf's own, or its grad_fn's); RuntimeError unless t requires grad.
std::shared_ptr<GradHooks> grad_hooks(const Tensor& t);
// Runs `hook` after each backward has accumulated into the leaf's .grad (PyTorch's
// register_post_accumulate_grad_hook): leaves that require grad only (RuntimeError otherwise).
PostAccumulateGradHookHandle add_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook);

// Records ops: construct before the op's body (it decides whether recording is needed and turns
// grad mode off so the body records nothing), then pass the output to finish(). An in-place op
// names its target as `inplace_self` so misuse is caught before any data changes.
class Recorder {
 public:
  Recorder(const char* name, std::vector<Tensor> inputs, const Tensor* inplace_self = nullptr);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  bool active() const { return active_; }
  bool needs(size_t input) const { return active_ && requires_grad(inputs_[input]); }
  // Makes `out` the result of a node whose backward `make()` builds (called only when recording;
  // non-float outputs are never recorded); returns out. For in-place ops `out` is the modified
  // tensor: its history restarts there.
  Tensor finish(Tensor out, const std::function<BackwardFn()>& make);
  // finish() for a view picking part of its single input: the gradient is written into that
  // part of zeros, or added in place into the input's gradient (Node::add_into).
  Tensor finish_view(Tensor out, ViewFn view_of);

 private:
  Tensor record(Tensor out, BackwardFn fn, ViewFn view_of);

  const char* name_;
  std::vector<Tensor> inputs_;
  bool active_;
  bool prev_mode_;
  // Autocast casts an op's inputs (autocast::Cast, before this), never the ops it runs inside.
  autocast::Pause autocast_paused_;
};

// The gradient of a broadcast operand: `grad` summed over the dims that broadcasting expanded.
Tensor sum_to(const Tensor& grad, const Shape& shape);

// Backpropagates from `roots` (with gradients `grads`; undefined = ones for a scalar root) into the
// .grad of every leaf that requires grad.
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);
// Gradients of `outputs` with respect to `inputs`, leaving every .grad untouched.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph, bool allow_unused);

}  // namespace autograd
}  // namespace orchard
