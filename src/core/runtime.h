// The one interface every device runtime implements: a virtual per primitive family. Op
// front-ends in src/core validate, broadcast and allocate, then call these with operands that
// are already checked, so runtimes never see user errors. A new device (CUDA) implements this
// class and registers itself; nothing in src/core changes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "device.h"
#include "dtype.h"
#include "op_table.h"
#include "shape.h"
#include "tensor.h"

namespace orchard {

// One operand of an elementwise loop: strides (in elements) already broadcast to the loop shape.
struct Operand {
  Storage* storage;
  int64_t offset;  // in elements
  DType dtype;
  Strides strides;
  char* data() const { return static_cast<char*>(storage->data()) + offset * int64_t(itemsize(dtype)); }
};

// An elementwise loop over `shape`; operands[0] is the output. Dims are coalesced where possible.
struct ElementwiseLoop {
  Shape shape;
  std::vector<Operand> operands;
  int64_t numel() const;
};

// The elementwise ops and what their rows in op_table.h say of them.
enum class OpInputs : uint8_t { Any, Number, Float, Bool };
enum class OpOutput : uint8_t { Same, Bool };

#define ORCHARD_OP_ENUMERATOR(E, ...) E,
enum class UnaryOp : uint8_t { ORCHARD_UNARY_OPS(ORCHARD_OP_ENUMERATOR) };
enum class BinaryOp : uint8_t { ORCHARD_BINARY_OPS(ORCHARD_OP_ENUMERATOR) };
enum class ReduceOp : uint8_t { ORCHARD_REDUCE_OPS(ORCHARD_OP_ENUMERATOR) };
#undef ORCHARD_OP_ENUMERATOR

#define ORCHARD_OP_NAME(E, name, ...) case Op::E: return #name;
#define ORCHARD_OP_NODE(E, name, Node, ...) case Op::E: return #Node "Backward";
#define ORCHARD_OP_INPUTS(E, name, Node, inputs, ...) case Op::E: return OpInputs::inputs;
#define ORCHARD_OP_OUTPUT(E, name, Node, inputs, output, ...) case Op::E: return OpOutput::output;
#define ORCHARD_OP_COLUMN(Op_, Result, function, TABLE, COLUMN) \
  constexpr Result function(Op_ op) {                          \
    using Op = Op_;                                             \
    using R = Result;                                           \
    switch (op) { TABLE(COLUMN) }                               \
    return R();                                                 \
  }
ORCHARD_OP_COLUMN(UnaryOp, const char*, op_name, ORCHARD_UNARY_OPS, ORCHARD_OP_NAME)
ORCHARD_OP_COLUMN(BinaryOp, const char*, op_name, ORCHARD_BINARY_OPS, ORCHARD_OP_NAME)
ORCHARD_OP_COLUMN(UnaryOp, const char*, node_name, ORCHARD_UNARY_OPS, ORCHARD_OP_NODE)
ORCHARD_OP_COLUMN(BinaryOp, const char*, node_name, ORCHARD_BINARY_OPS, ORCHARD_OP_NODE)
ORCHARD_OP_COLUMN(ReduceOp, const char*, op_name, ORCHARD_REDUCE_OPS, ORCHARD_OP_NAME)
ORCHARD_OP_COLUMN(ReduceOp, const char*, node_name, ORCHARD_REDUCE_OPS, ORCHARD_OP_NODE)
ORCHARD_OP_COLUMN(UnaryOp, OpInputs, op_inputs, ORCHARD_UNARY_OPS, ORCHARD_OP_INPUTS)
ORCHARD_OP_COLUMN(BinaryOp, OpInputs, op_inputs, ORCHARD_BINARY_OPS, ORCHARD_OP_INPUTS)
ORCHARD_OP_COLUMN(BinaryOp, OpOutput, op_output, ORCHARD_BINARY_OPS, ORCHARD_OP_OUTPUT)
#undef ORCHARD_OP_COLUMN
#undef ORCHARD_OP_OUTPUT
#undef ORCHARD_OP_INPUTS
#undef ORCHARD_OP_NODE
#undef ORCHARD_OP_NAME

// Whether an op's kernels take inputs of dtype t.
constexpr bool accepts(OpInputs inputs, DType t) {
  switch (inputs) {
    case OpInputs::Any: return true;
    case OpInputs::Number: return t != DType::Bool;
    case OpInputs::Float: return is_floating(t);
    case OpInputs::Bool: return t == DType::Bool;
  }
  return false;
}
template <typename Op> constexpr bool op_accepts(Op op, DType t) { return accepts(op_inputs(op), t); }


// The largest attention head dimension the kernels of every runtime take.
inline constexpr int64_t kMaxHeadDim = 256;

// FlashAttention over q [B, Hq, Lq, D], k/v [B, Hkv, Lk, D] (Hq a multiple of Hkv: grouped-query),
// all contiguous and of one float dtype; out [B, Hq, Lq, D] in that dtype, lse [B, Hq, Lq] float32.
struct AttentionParams {
  float scale;
  float dropout_p;  // in [0, 1); the keep-mask comes from philox keyed by (seed, offset, b, h, row, col)
  bool causal;      // top-left aligned, as PyTorch's is_causal
  uint64_t seed, offset;
  // Optional additive float32 mask broadcast to [B, Hq, Lq, Lk] (strides in elements, 0 where it
  // repeats); -inf entries mask a score out.
  const Tensor* mask = nullptr;
  int64_t mask_strides[4] = {0, 0, 0, 0};
};

struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  float bias_correction1, bias_correction2;  // 1 - beta^step
};

struct Scalar {
  double f = 0;
  int64_t i = 0;
  static Scalar of(double v) { return {v, int64_t(v)}; }
};

// The arguments of each Runtime primitive, one struct per primitive, so that its parameter list is
// written here alone: the runtimes' declarations and definitions name only the struct. Tensors are
// operands the front-end has already checked; outputs are written in place.

// Uniform [0, 1) or standard normal from the Philox stream keyed by (seed, offset + index).
struct RandomArgs {
  const Tensor &out;
  bool normal;
  uint64_t seed, offset;
};
// Integers low + (u % range) into contiguous int64 `out`, u the 64-bit number whose low and high
// words are numbers offset + 2i and offset + 2i + 1 of the Philox stream keyed by seed (range >= 1;
// range 0 stands for 2^64, the whole int64 range).
struct RandomIntegersArgs {
  const Tensor &out;
  int64_t low;
  uint64_t range;
  uint64_t seed, offset;
};
// Dropout of contiguous `in` into contiguous `out` (one float dtype), p in [0, 1): element i is
// in[i] / (1 - p) where number offset + i of the Philox stream keyed by seed is at least
// dropout_threshold(p) (philox.h), else in[i] * 0. The backward is the same call on the gradient.
struct DropoutArgs {
  const Tensor &in, &out;
  double p;
  uint64_t seed, offset;
};
// Reduction of a contiguous input viewed as [outer, reduced, inner] into contiguous [outer, inner].
// `correction` is used by Var only.
struct ReduceArgs {
  ReduceOp op;
  const Tensor &in, &out;
  int64_t outer, reduced, inner, correction;
};
// Stable sort of each row of a contiguous [rows, n] input into contiguous values [rows, n] (the
// input's dtype) and int64 indices (positions in the row). NaN orders above every number, ties keep
// their order (PyTorch's stable=True), in ascending or descending order. Only the first k (<= n)
// of each row are asked for (topk): a runtime may leave the rest of the row in any order.
struct SortArgs {
  const Tensor &in, &values, &indices;
  int64_t rows, n, k;
  bool descending;
};
// Inclusive cumulative sum of contiguous `in` viewed as [outer, n, inner] along n, into contiguous
// `out` of the same dtype, accumulated in order in the compute type (float for 16-bit floats).
struct CumsumArgs {
  const Tensor &in, &out;
  int64_t outer, n, inner;
};
// Softmax (or log-softmax) over the last dim of a contiguous [rows, cols] input into contiguous out.
struct SoftmaxArgs {
  const Tensor &in, &out;
  bool log;
};
// out[b] (+)= a[b] @ b[b] for contiguous-or-transposed matrices: a is [batch, M, K], b is
// [batch, K, N], out is contiguous [batch, M, N]. Inputs have unit stride in one of their last two
// dims; a batch stride of 0 broadcasts.
struct MatmulArgs {
  const Tensor &a, &b, &out;
};
// out = src.index_select(dim, index) for contiguous src/out viewed as [outer, n, inner].
struct IndexSelectArgs {
  const Tensor &src, &index, &out;
  int64_t outer, inner;
};
// out = src gathered along dim (PyTorch gather), or its adjoint out.scatter_add_(dim, index, src).
// All operands contiguous; index has the shape of the gathered values (out for gather, src for
// scatter_add).
struct GatherArgs {
  const Tensor &src, &index, &out;
  int64_t dim;
};
// out[o, index[i], j] += src[o, i, j] (PyTorch's index_add_) for out contiguous [outer, n, inner],
// src contiguous [outer, m, inner] and a contiguous int64 index [m] within [0, n), adding in the
// order of i (16-bit floats round after every add), so that results are deterministic.
struct IndexAddArgs {
  const Tensor &src, &index, &out;
  int64_t outer, inner;
};
// FlashAttention forward: saves only the row log-sum-exp.
struct AttentionForwardArgs {
  const Tensor &q, &k, &v;
  const AttentionParams& p;
  const Tensor &out, &lse;
};
// FlashAttention's fused backward: recomputes P from q, k and lse; D = rowsum(dout * out). dq, dk,
// dv have the shapes and dtypes of q, k, v.
struct AttentionBackwardArgs {
  const Tensor &q, &k, &v, &out, &lse, &dout;
  const AttentionParams& p;
  const Tensor &dq, &dk, &dv;
};
// Layer norm over the trailing dims weight covers, x viewed as [rows, n = weight.numel()]:
// y = (x - mean) * rstd * weight + bias; mean and rstd float32 [rows].
struct LayerNormForwardArgs {
  const Tensor &x, &weight, &bias;
  float eps;
  const Tensor &y, &mean, &rstd;
};
struct LayerNormBackwardArgs {
  const Tensor &dy, &x, &weight, &mean, &rstd, &dx, &dweight, &dbias;
};
// Cross-entropy of logits [rows, classes] against int64 targets [rows] (already range-checked):
// per-row loss and log-sum-exp (float32); rows whose target is ignore_index get loss 0.
struct CrossEntropyForwardArgs {
  const Tensor &logits, &targets;
  int64_t ignore_index;
  const Tensor &losses, &lse;
};
// dlogits = grad_losses[row] * (softmax(logits) - onehot(target)), zero for ignored rows.
struct CrossEntropyBackwardArgs {
  const Tensor &logits, &targets, &lse, &grad_losses;
  int64_t ignore_index;
  const Tensor &dlogits;
};
// One AdamW step in place on a float parameter and its float32 moments (PyTorch's update rule).
struct AdamWStepArgs {
  const Tensor &param, &grad, &exp_avg, &exp_avg_sq;
  const AdamWParams& p;
};
// Loss-scaling's unscale and inf check in one pass over a contiguous float gradient, in place:
// grad *= inv_scale (1-element float32, read on the device, in the compute type), and the
// 1-element float32 found_inf is set to 1 when any element of grad was inf or NaN before the
// multiplication (it is left alone otherwise, so one flag collects several gradients).
struct AmpUnscaleArgs {
  const Tensor &grad, &found_inf, &inv_scale;
};

// The primitives that take one argument struct, as X(name, Args): the runtimes declare their
// overrides (and the Metal runtime its plans) from this list.
#define ORCHARD_RUNTIME_PRIMITIVES(X)                                                              \
  X(random, RandomArgs) X(random_integers, RandomIntegersArgs) X(dropout, DropoutArgs)             \
  X(reduce, ReduceArgs) X(softmax, SoftmaxArgs) X(matmul, MatmulArgs)                              \
  X(index_select, IndexSelectArgs) X(gather, GatherArgs) X(scatter_add, GatherArgs)                \
  X(index_add, IndexAddArgs)                                                                       \
  X(attention_forward, AttentionForwardArgs) X(attention_backward, AttentionBackwardArgs)          \
  X(layer_norm_forward, LayerNormForwardArgs) X(layer_norm_backward, LayerNormBackwardArgs)        \
  X(cross_entropy_forward, CrossEntropyForwardArgs) X(cross_entropy_backward, CrossEntropyBackwardArgs) \
  X(adamw_step, AdamWStepArgs) X(amp_unscale, AmpUnscaleArgs) X(sort, SortArgs) X(cumsum, CumsumArgs)

class DeviceStream;

// A marker in a device's queue (torch.cuda.Event): recorded after the work queued so far on a stream,
// it can be polled, waited for, and timed against another.
class DeviceEvent {
 public:
  virtual ~DeviceEvent() = default;
  virtual void record(DeviceStream* stream) = 0;  // nullptr: the calling thread's current stream
  // Whether the work before the last record has finished (true when never recorded).
  virtual bool query() = 0;
  // Waits for the work before the last record (returns at once when never recorded).
  virtual void synchronize() = 0;
  // Milliseconds from this event's record to `end`'s, once `end` has finished (waiting for it); both
  // must have been recorded and made with timing.
  virtual float elapsed_ms(DeviceEvent& end) = 0;
};

// One queue of a device's work (torch.cuda.Stream): its kernels run in order, and apart from other
// streams' unless an event orders them. Streams belong to their device's runtime and live as long as
// the process, so the memory cached for one (DeviceStreams) can never outlive it.
class DeviceStream {
 public:
  virtual ~DeviceStream() = default;
  virtual bool query() = 0;        // whether the work queued so far has finished
  virtual void synchronize() = 0;  // waits for it
  virtual void wait(DeviceEvent& event) = 0;  // work queued later waits for the event's (none if unrecorded)
  virtual uint64_t handle() const = 0;        // the driver's handle (cudaStream_t); 0 for the default stream
};

// A device's streams. Kernels go to the calling thread's current stream (the default one unless
// set). Side streams come from a pool reused round-robin, as PyTorch's do. Memory freed on a stream
// is reused only by allocations on that stream, so a block never changes hands between streams
// whose work is unordered; Runtime::record_stream orders a block's other users before its reuse.
class DeviceStreams {
 public:
  virtual ~DeviceStreams() = default;
  virtual DeviceStream& default_stream() = 0;
  virtual DeviceStream& pool_stream(int priority) = 0;  // lower numbers run first, clamped to the device's range
  // A stream made elsewhere (PyTorch's), by its driver handle; 0 is the default stream. It must
  // outlive the work and memory Orchard queues on it (as torch.cuda.ExternalStream's).
  virtual DeviceStream& external(uint64_t handle) = 0;
  virtual DeviceStream& current() = 0;
  virtual void set_current(DeviceStream& stream) = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual Device device() const = 0;
  // Whether tensors of this dtype can live on the device (Metal has no float64).
  virtual bool supports(DType) const { return true; }

  // Memory. allocate throws OutOfMemoryError when the request cannot be served.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual void release_cached_memory() {}

  // Elementwise: out = cast(in), out = value, out = op(in), out = op(a, b), out = c ? a : b.
  // For unary/binary, inputs share the output's dtype except comparisons (bool output).
  virtual void copy(const ElementwiseLoop& loop) = 0;
  virtual void fill(const ElementwiseLoop& loop, Scalar value) = 0;
  virtual void unary(UnaryOp op, const ElementwiseLoop& loop) = 0;
  virtual void binary(BinaryOp op, const ElementwiseLoop& loop) = 0;
  virtual void where(const ElementwiseLoop& loop) = 0;

  // One per primitive of ORCHARD_RUNTIME_PRIMITIVES; each struct above says what it computes.
  // Training kernels are fused so each is one pass over memory (inputs contiguous, statistics float32).
#define ORCHARD_PURE_PRIMITIVE(name, Args) virtual void name(const Args& a) = 0;
  ORCHARD_RUNTIME_PRIMITIVES(ORCHARD_PURE_PRIMITIVE)
#undef ORCHARD_PURE_PRIMITIVE
  // out += a @ b. The default computes the product apart and adds it; a runtime that accumulates in
  // place (BLAS's beta = 1) saves that pass and the temporary.
  virtual void matmul_accumulate(const MatmulArgs& a);
  // Two independent products of the same cost (the gradients of one product); a runtime may run
  // them side by side.
  virtual void matmul_pair(const MatmulArgs& first, const MatmulArgs& second);

  // Waits until queued work is done (a no-op for synchronous runtimes).
  virtual void synchronize() {}
  // An event of the device's queue, with timing and (`blocking`) waits that yield the CPU; raises
  // RuntimeError on a device without events (every one but CUDA).
  virtual std::unique_ptr<DeviceEvent> make_event(bool timing, bool blocking);
  // The device's streams; raises RuntimeError on a device without them (every one but CUDA).
  virtual DeviceStreams& streams();
  // The allocation at `ptr` is used by work queued on `stream`, other than the stream it was
  // allocated on (Tensor.record_stream): once freed, it is reused only after that work.
  virtual void record_stream(void* ptr, DeviceStream& stream);

  // The bytes of a contiguous tensor of this device to or from host memory, after the work queued
  // before: the only way host code touches device memory, which need not be CPU-visible. The
  // defaults synchronize and copy in place (the CPU's memory, Metal's shared storage).
  virtual void read(const Tensor& src, void* host);
  virtual void write(const Tensor& dst, const void* host);
};

// Registered runtimes; a device whose runtime is not linked in raises a RuntimeError saying so.
Runtime& runtime_for(Device device);
bool has_runtime(Device device);
void register_runtime(Device device, Runtime* runtime);
// Whether the device's runtime exists already, without making one (has_runtime makes it).
bool runtime_started(Device device);
// Registers a device whose runtime is made on first use (by runtime_for or has_runtime), so that
// loading Orchard does not start a GPU driver; `make` returns nullptr when the device is absent.
void register_runtime_factory(Device device, Runtime* (*make)());
// Whether float32 products may round their inputs to TF32 on tensor cores (PyTorch's
// backends.cuda.matmul.allow_tf32, or set_float32_matmul_precision "high"/"medium"). Only the CUDA
// device's cuBLAS products read it; every other float32 product multiplies in float32.
void set_float32_matmul_tf32(bool allowed);
bool float32_matmul_tf32();
// Set when a device is served by an emulator rather than the real hardware.
void set_runtime_emulated(Device device, bool emulated);
bool runtime_is_emulated(Device device);

}  // namespace orchard
