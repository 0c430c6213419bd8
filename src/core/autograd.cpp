#include "autograd.h"

#include <algorithm>
#include <atomic>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "ops.h"

namespace orchard {
void AutogradMetaDeleter::operator()(AutogradMeta* m) const { delete m; }
}  // namespace orchard

namespace orchard::autograd {

namespace {
thread_local bool t_grad_enabled = true;
thread_local const char* t_running_node = nullptr;  // for error messages from saved tensors
std::atomic<uint64_t> g_sequence{0};

AutogradMeta& meta(const Tensor& t) {
  if (!t.impl()->autograd) t.impl()->autograd.reset(new AutogradMeta);
  return *t.impl()->autograd;
}
const AutogradMeta* meta_if(const Tensor& t) { return t.defined() ? t.impl()->autograd.get() : nullptr; }

std::shared_ptr<GradHooks> leaf_hooks(const Tensor& leaf, bool create) {
  AutogradMeta& m = meta(leaf);
  if (!m.hooks && create) m.hooks = std::make_shared<GradHooks>();
  return m.hooks;
}

// Whether `t` is (a view of a view of ...) a leaf that requires grad, sharing its memory.
bool is_view_of_grad_leaf(const Tensor& t) {
  const AutogradMeta* m = meta_if(t);
  const Node* n = m ? m->grad_fn.get() : nullptr;
  for (int depth = 0; n && depth < 64; ++depth) {
    if (auto* acc = dynamic_cast<const AccumulateGrad*>(n)) return acc->leaf().is_alias_of(t);
    n = n->next().size() == 1 ? n->next()[0].node.get() : nullptr;
  }
  return false;
}

// The edge a gradient for `t` flows along: its grad_fn, or its leaf accumulator.
Edge edge_of(const Tensor& t) {
  const AutogradMeta* m = meta_if(t);
  if (!m || !m->requires_grad) return {};
  if (m->grad_fn) return {m->grad_fn};
  AutogradMeta& mm = meta(t);
  std::shared_ptr<AccumulateGrad> acc = mm.accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t);
    mm.accumulator = acc;
  }
  return {acc};
}
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool enabled) { t_grad_enabled = enabled; }

// ---- saved tensors ----------------------------------------------------------------------------

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  tensor_ = t.detach();
  version_ = t.storage()->version();
}

const Tensor& SavedTensor::get() const {
  ORCHARD_CHECK(!tensor_.defined() || tensor_.storage()->version() == version_, RuntimeError,
                t_running_node ? t_running_node : "backward", ": a tensor needed for backward was "
                "modified by an in-place operation after it was "
                "saved (its version is ", tensor_.storage()->version(), ", expected ", version_,
                "); clone() it before modifying it, or use an out-of-place op");
  return tensor_;
}

// ---- gradient hooks ---------------------------------------------------------------------------

uint64_t GradHooks::add(GradHook hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  hooks_.emplace_back(next_id_, std::move(hook));
  return next_id_++;
}

void GradHooks::remove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  hooks_.erase(std::remove_if(hooks_.begin(), hooks_.end(), [id](const auto& h) { return h.first == id; }),
               hooks_.end());
}

void GradHooks::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  hooks_.clear();
}

Tensor GradHooks::run(Tensor grad) const {
  std::vector<std::pair<uint64_t, GradHook>> hooks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    hooks = hooks_;
  }
  for (const auto& entry : hooks) {
    Tensor replaced = entry.second(grad);
    if (!replaced.defined()) continue;
    ORCHARD_CHECK(replaced.shape() == grad.shape() && replaced.dtype() == grad.dtype() &&
                      replaced.device() == grad.device(),
                  RuntimeError, "a gradient hook returned a tensor of shape ", shape_str(replaced.shape()), ", ",
                  dtype_name(replaced.dtype()), " on ", device_name(replaced.device()),
                  "; expected the gradient's shape ", shape_str(grad.shape()), ", ", dtype_name(grad.dtype()),
                  " on ", device_name(grad.device()));
    grad = std::move(replaced);
  }
  return grad;
}

// ---- nodes ------------------------------------------------------------------------------------

Node::Node(const char* name, std::vector<Edge> next, std::vector<InputMeta> inputs, BackwardFn fn, ViewFn view_of)
    : name_(name), next_(std::move(next)), inputs_(std::move(inputs)), fn_(std::move(fn)),
      view_of_(std::move(view_of)), sequence_(g_sequence.fetch_add(1)) {}

Node::~Node() {
  // A long chain would otherwise be freed recursively (each node dropping the next), overflowing
  // the stack: take over the edges of every node no one else still owns, and free them in a loop.
  std::vector<std::shared_ptr<Node>> pending;
  for (Edge& e : next_)
    if (e.node) pending.push_back(std::move(e.node));
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n.use_count() == 1)
      for (Edge& e : n->next_)
        if (e.node) pending.push_back(std::move(e.node));
  }
}

std::vector<Tensor> Node::apply(const Tensor& grad) {
  ORCHARD_CHECK(!released_, RuntimeError, "trying to backward through ", name_,
                " a second time: its saved tensors were freed by the first backward; pass "
                "retain_graph=True to the first backward() to keep them");
  struct Running {
    const char* prev = t_running_node;
    explicit Running(const char* name) { t_running_node = name; }
    ~Running() { t_running_node = prev; }
  } running(name_);
  std::vector<Tensor> grads = fn_(grad);
  for (size_t i = 0; i < grads.size() && i < inputs_.size(); ++i) {
    if (!grads[i].defined() || !next_[i].node) continue;
    const InputMeta& m = inputs_[i];
    grads[i] = sum_to(grads[i], m.shape).to(m.dtype).to(m.device);
  }
  return grads;
}

bool Node::add_into(const Tensor& grad, Tensor& into) {
  if (!view_of_ || !into.defined()) return false;  // not a view, or released
  const InputMeta& m = inputs_[0];
  // Another holder of `into` (a node may hand one tensor to several inputs) would see the change.
  const bool own = into.impl()->use_count() == 1 && into.storage()->use_count() == 1 && into.is_contiguous();
  if (!own || into.shape() != m.shape || into.dtype() != m.dtype || grad.dtype() != m.dtype ||
      into.device() != m.device)
    return false;
  Tensor part = view_of_(into);
  binary_(BinaryOp::Add, part, grad);
  return true;
}

void Node::release() {
  fn_ = nullptr;
  view_of_ = nullptr;
  released_ = true;
}

std::shared_ptr<GradHooks> Node::hooks(bool create) {
  if (!hooks_ && create) hooks_ = std::make_shared<GradHooks>();
  return hooks_;
}

AccumulateGrad::AccumulateGrad(Tensor leaf) : Node("AccumulateGrad", {}, {}, nullptr), leaf_(std::move(leaf)) {}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad) {
  AutogradMeta& m = meta(leaf_);
  Tensor g = sum_to(grad, leaf_.shape()).to(leaf_.dtype());
  if (m.grad.defined()) {
    m.grad = add(m.grad, g);
    run_post_accumulate_grad_hooks();
    return {};
  }
  // Keep the gradient without a copy only when nothing else can see its memory: the engine's
  // reference and ours are the only ones (a node may hand one tensor to several inputs).
  bool exclusive = g.is_contiguous() && g.storage()->use_count() == 1 &&
                   g.impl()->use_count() == (g.same(grad) ? 2 : 1);
  m.grad = exclusive ? g : g.clone();
  run_post_accumulate_grad_hooks();
  return {};
}

std::shared_ptr<GradHooks> AccumulateGrad::hooks(bool create) { return leaf_hooks(leaf_, create); }
void AccumulateGrad::run_post_accumulate_grad_hooks() {
  const auto& hooks = meta(leaf_).post_accumulate_grad_hooks;
  if (!hooks) return;
  const auto list = hooks->list;  // a copy: a hook may remove itself or register another
  for (const auto& [key, hook] : list) hook(leaf_);
}

// ---- tensor state -----------------------------------------------------------------------------

bool requires_grad(const Tensor& t) {
  const AutogradMeta* m = meta_if(t);
  return m && m->requires_grad;
}

void set_requires_grad(const Tensor& t, bool value) {
  if (value && !is_leaf(t)) return;  // a non-leaf already requires grad (as in PyTorch)
  ORCHARD_CHECK(is_leaf(t), ValueError,
                "requires_grad can only be changed on leaf tensors; use detach() to get a leaf");
  ORCHARD_CHECK(!value || is_floating(t.dtype()), TypeError,
                "only floating point tensors can require gradients, got ", dtype_name(t.dtype()));
  meta(t).requires_grad = value;
}

const Tensor& grad(const Tensor& t) {
  static const Tensor none;
  const AutogradMeta* m = meta_if(t);
  return m ? m->grad : none;
}

void set_grad(const Tensor& t, const Tensor& g) {
  if (g.defined())
    ORCHARD_CHECK(g.shape() == t.shape() && g.device() == t.device(), ValueError, "assigned grad of shape ",
                  shape_str(g.shape()), " does not match the tensor's shape ", shape_str(t.shape()));
  meta(t).grad = g;
}

std::shared_ptr<Node> grad_fn(const Tensor& t) {
  const AutogradMeta* m = meta_if(t);
  return m ? m->grad_fn : nullptr;
}

bool is_leaf(const Tensor& t) { return !grad_fn(t); }

std::shared_ptr<GradHooks> grad_hooks(const Tensor& t) {
  ORCHARD_CHECK(requires_grad(t), RuntimeError,
                "cannot register a hook on a tensor that does not require grad; call requires_grad_() first");
  if (auto fn = grad_fn(t)) return fn->hooks(true);
  return leaf_hooks(t, true);
}

PostAccumulateGradHookHandle add_post_accumulate_grad_hook(const Tensor& leaf, PostAccumulateGradHook hook) {
  ORCHARD_CHECK(requires_grad(leaf), RuntimeError, "cannot register a hook on a tensor that doesn't require gradient");
  ORCHARD_CHECK(is_leaf(leaf), RuntimeError, "post accumulate grad hooks cannot be registered on non-leaf tensors");
  auto& hooks = meta(leaf).post_accumulate_grad_hooks;
  if (!hooks) hooks = std::make_shared<PostAccumulateGradHooks>();
  const uint64_t key = hooks->next_key++;
  hooks->list.emplace_back(key, std::move(hook));
  return {hooks, key};
}

void PostAccumulateGradHookHandle::remove() const {
  if (auto hooks = hooks_.lock()) {
    auto& list = hooks->list;
    list.erase(std::remove_if(list.begin(), list.end(), [this](const auto& h) { return h.first == key_; }), list.end());
  }
}

// ---- recording --------------------------------------------------------------------------------

Recorder::Recorder(const char* name, std::vector<Tensor> inputs, const Tensor* inplace_self)
    : name_(name), inputs_(std::move(inputs)), active_(false), prev_mode_(grad_enabled()) {
  if (prev_mode_) {
    for (const Tensor& t : inputs_) active_ = active_ || requires_grad(t);
    if (inplace_self && requires_grad(*inplace_self)) {
      ORCHARD_CHECK(!is_leaf(*inplace_self), RuntimeError, name_,
                    ": a leaf tensor that requires grad cannot be modified in place; do it inside "
                    "orchard.no_grad() or on a clone()");
    }
    // Another tensor viewing the same memory (a view, its base, or a tensor saved for backward)
    // would not see the change in its history: refuse rather than return a wrong gradient.
    if (active_ && inplace_self && inplace_self->storage()->use_count() != 1) {
      ORCHARD_CHECK(!is_view_of_grad_leaf(*inplace_self), RuntimeError, name_,
                    ": a view of a leaf tensor that requires grad cannot be modified in place; do it "
                    "inside orchard.no_grad() or on a clone()");
    }
    ORCHARD_CHECK(!active_ || !inplace_self || inplace_self->storage()->use_count() == 1, RuntimeError, name_,
                  ": an in-place op that records gradients needs a tensor that does not share memory "
                  "with another (a view, its base, or a tensor saved for backward); use the "
                  "out-of-place op, or clone() first");
  }
  if (!active_) inputs_.clear();
  set_grad_enabled(false);
}

Recorder::~Recorder() { set_grad_enabled(prev_mode_); }

Tensor Recorder::finish(Tensor out, const std::function<BackwardFn()>& make) {
  if (!active_ || !is_floating(out.dtype())) return out;
  return record(std::move(out), make(), nullptr);
}

Tensor Recorder::finish_view(Tensor out, ViewFn view_of) {
  if (!active_ || !is_floating(out.dtype())) return out;
  BackwardFn fn = [shape = inputs_[0].shape(), view_of](const Tensor& g) {
    Tensor z = zeros(shape, g.dtype(), g.device());
    Tensor part = view_of(z);
    copy_(part, g);
    return std::vector<Tensor>{z};
  };
  return record(std::move(out), std::move(fn), std::move(view_of));
}

Tensor Recorder::record(Tensor out, BackwardFn fn, ViewFn view_of) {
  std::vector<Edge> next;
  std::vector<InputMeta> metas;
  for (const Tensor& t : inputs_) {
    next.push_back(edge_of(t));
    metas.push_back({t.shape(), t.dtype(), t.device()});
  }
  AutogradMeta& m = meta(out);
  m.requires_grad = true;
  m.grad_fn = std::make_shared<Node>(name_, std::move(next), std::move(metas), std::move(fn), std::move(view_of));
  return out;
}



Tensor sum_to(const Tensor& grad_in, const Shape& shape) {
  if (grad_in.shape() == shape) return grad_in;
  // A formula may return a gradient that still broadcasts to the input (a 0-d zero, say).
  const Shape full = broadcast_shapes(grad_in.shape(), shape);
  const Tensor grad = full == grad_in.shape() ? grad_in : grad_in.expand(full);
  if (grad.shape() == shape) return grad;
  size_t lead = grad.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < grad.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && grad.shape()[i] != 1)) dims.push_back(int64_t(i));
  Tensor s = dims.empty() ? grad : sum(grad, dims, true);
  return s.reshape(shape);
}

// ---- the engine -------------------------------------------------------------------------------

namespace {

struct Task {
  Node* node;
  bool operator<(const Task& o) const { return node->sequence() < o.node->sequence(); }
};

// Runs every node reachable from the roots once all its consumers have run (latest-created first,
// as PyTorch does), iteratively so graph depth never touches the C++ stack. `capture`
// (autograd.grad): nodes whose incoming gradient is recorded; then only nodes on a path to one of
// them run, and no AccumulateGrad does, so no .grad changes.
void run(const std::vector<std::pair<Node*, Tensor>>& roots, bool retain_graph,
         std::unordered_map<Node*, Tensor>* capture) {
  autocast::Pause paused;  // backward ops run in the dtypes their forward ops chose
  std::vector<Node*> nodes;  // every node reachable from the roots
  {
    std::unordered_set<Node*> seen;
    std::vector<Node*> stack;
    for (auto& [node, g] : roots)
      if (seen.insert(node).second) stack.push_back(node);
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      nodes.push_back(n);
      for (const Edge& e : n->next())
        if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  // A node's inputs were created before it, so in creation order every node comes after its inputs.
  std::unordered_set<Node*> needed;
  auto is_needed = [&](Node* n) { return !capture || needed.count(n) > 0; };
  auto leads_further = [&](Node* n) {
    for (const Edge& e : n->next())
      if (e.node && needed.count(e.node.get())) return true;
    return false;
  };
  if (capture) {
    std::sort(nodes.begin(), nodes.end(), [](Node* a, Node* b) { return a->sequence() < b->sequence(); });
    for (Node* n : nodes)
      if (capture->count(n) || leads_further(n)) needed.insert(n);
  }

  std::unordered_map<Node*, int64_t> pending;  // consumers not yet run, per node
  for (Node* n : nodes)
    if (is_needed(n))
      for (const Edge& e : n->next())
        if (e.node) ++pending[e.node.get()];

  std::unordered_map<Node*, Tensor> buffer;
  auto accumulate = [&](Node* n, const Tensor& g) {
    Tensor& slot = buffer[n];
    slot = slot.defined() ? add(slot, g) : g;
  };
  std::priority_queue<Task> ready;
  for (auto& [node, g] : roots)
    if (is_needed(node)) accumulate(node, g);
  for (auto& [node, g] : roots)
    if (is_needed(node) && pending[node] == 0) ready.push({node});
  std::unordered_set<Node*> queued;

  while (!ready.empty()) {
    Node* n = ready.top().node;
    ready.pop();
    if (!queued.insert(n).second) continue;
    Tensor g;
    if (auto it = buffer.find(n); it != buffer.end()) {
      g = std::move(it->second);
      buffer.erase(it);
    }
    if (g.defined())
      if (std::shared_ptr<GradHooks> hooks = n->hooks(false)) g = hooks->run(std::move(g));
    if (capture) {
      if (auto it = capture->find(n); it != capture->end()) {
        it->second = g;
        // An input's own gradient: go on only when another input lies beyond it.
        if (dynamic_cast<AccumulateGrad*>(n) || !leads_further(n)) continue;
      }
    }
    // A view's gradient goes straight into the one gathered for its input when it can.
    Node* only = n->next().size() == 1 ? n->next()[0].node.get() : nullptr;
    const bool added = g.defined() && only && is_needed(only) && n->add_into(g, buffer[only]);
    std::vector<Tensor> grads = g.defined() && !added ? n->apply(g) : std::vector<Tensor>(n->next().size());
    g = Tensor();
    if (!retain_graph) n->release();
    for (size_t i = 0; i < n->next().size(); ++i) {
      Node* next = n->next()[i].node.get();
      if (!next || !is_needed(next)) continue;
      if (i < grads.size() && grads[i].defined()) accumulate(next, grads[i]);
      if (--pending[next] == 0) ready.push({next});
    }
  }
}

std::vector<std::pair<Node*, Tensor>> root_tasks(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                                                 std::vector<Edge>& keep_alive) {
  ORCHARD_CHECK(grads.empty() || grads.size() == roots.size(), ValueError, "backward: got ", grads.size(),
                " gradients for ", roots.size(), " outputs");
  std::vector<std::pair<Node*, Tensor>> tasks;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ORCHARD_CHECK(requires_grad(r), RuntimeError,
                  "element ", i, " of the outputs does not require grad and has no grad_fn; "
                  "set requires_grad=True on the inputs (outside orchard.no_grad())");
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      ORCHARD_CHECK(r.numel() == 1, RuntimeError, "grad can be implicitly created only for scalar outputs; "
                    "pass a gradient of shape ", shape_str(r.shape()));
      g = ones(r.shape(), r.dtype(), r.device());
    }
    ORCHARD_CHECK(g.shape() == r.shape(), ValueError, "backward: gradient of shape ", shape_str(g.shape()),
                  " does not match the output's shape ", shape_str(r.shape()));
    Edge e = edge_of(r);
    keep_alive.push_back(e);
    tasks.push_back({e.node.get(), g});
  }
  return tasks;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  GradModeGuard no_grad(false);
  std::vector<Edge> keep_alive;
  run(root_tasks(roots, grads, keep_alive), retain_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph, bool allow_unused) {
  GradModeGuard no_grad(false);
  std::vector<Edge> keep_alive;
  std::unordered_map<Node*, Tensor> capture;
  std::vector<Node*> targets;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ORCHARD_CHECK(requires_grad(inputs[i]), RuntimeError, "grad: input ", i, " does not require grad");
    Edge e = edge_of(inputs[i]);
    keep_alive.push_back(e);
    targets.push_back(e.node.get());
    capture[e.node.get()] = Tensor();
  }
  run(root_tasks(outputs, grad_outputs, keep_alive), retain_graph, &capture);
  std::vector<Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor g = capture[targets[i]];
    ORCHARD_CHECK(g.defined() || allow_unused, RuntimeError, "grad: input ", i,
                  " was not used to compute the outputs; pass allow_unused=True to get None for it");
    if (g.defined() && g.shape() != inputs[i].shape()) g = sum_to(g, inputs[i].shape());
    out.push_back(g.defined() ? g.to(inputs[i].dtype()) : g);
  }
  return out;
}

}  // namespace orchard::autograd
