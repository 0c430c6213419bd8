// The CPU runtime: forwards each primitive family to its kernel file and registers itself for
// Device::CPU when the library loads.
#include "allocator.h"
#include "kernels.h"

namespace orchard::cpu {

namespace {

class CpuRuntime final : public Runtime {
 public:
  Device device() const override { return Device::CPU; }
  void* allocate(size_t nbytes) override { return cpu::allocate(nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { cpu::deallocate(ptr, nbytes); }
  void release_cached_memory() override { cpu::release_cached_memory(); }

  void copy(const ElementwiseLoop& loop) override { cpu::copy(loop); }
  void fill(const ElementwiseLoop& loop, Scalar value) override { cpu::fill(loop, value); }
  void unary(UnaryOp op, const ElementwiseLoop& loop) override { cpu::unary(op, loop); }
  void binary(BinaryOp op, const ElementwiseLoop& loop) override { cpu::binary(op, loop); }
  void where(const ElementwiseLoop& loop) override { cpu::where(loop); }
  void random(const Tensor& out, bool normal, uint64_t seed, uint64_t offset) override {
    cpu::random(out, normal, seed, offset);
  }
  void dropout(const Tensor& in, const Tensor& out, double p, uint64_t seed, uint64_t offset) override {
    cpu::dropout(in, out, p, seed, offset);
  }
  void reduce(ReduceOp op, const Tensor& in, const Tensor& out, int64_t outer, int64_t reduced,
              int64_t inner, int64_t correction) override {
    cpu::reduce(op, in, out, outer, reduced, inner, correction);
  }
  void softmax(const Tensor& in, const Tensor& out, bool log) override { cpu::softmax(in, out, log); }
  void matmul(const Tensor& a, const Tensor& b, const Tensor& out) override { cpu::matmul(a, b, out); }
  void matmul_accumulate(const Tensor& a, const Tensor& b, const Tensor& out) override {
    cpu::matmul(a, b, out, true);
  }
  void matmul_pair(const Tensor& a1, const Tensor& b1, const Tensor& out1, const Tensor& a2, const Tensor& b2,
                   const Tensor& out2) override {
    cpu::matmul_pair(a1, b1, out1, a2, b2, out2);
  }
  void index_select(const Tensor& src, const Tensor& index, const Tensor& out, int64_t outer,
                    int64_t inner) override {
    cpu::index_select(src, index, out, outer, inner);
  }
  void gather(const Tensor& src, const Tensor& index, const Tensor& out, int64_t dim) override {
    cpu::gather(src, index, out, dim);
  }
  void scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t dim) override {
    cpu::scatter_add(out, index, src, dim);
  }
  void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y,
                          const Tensor& mean, const Tensor& rstd) override {
    cpu::layer_norm_forward(x, weight, bias, eps, y, mean, rstd);
  }
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                           const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias) override {
    cpu::layer_norm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias);
  }
  void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& losses,
                             const Tensor& lse) override {
    cpu::cross_entropy_forward(logits, targets, ignore_index, losses, lse);
  }
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              const Tensor& grad_losses, int64_t ignore_index, const Tensor& dlogits) override {
    cpu::cross_entropy_backward(logits, targets, lse, grad_losses, ignore_index, dlogits);
  }
  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const AdamWParams& p) override {
    cpu::adamw_step(param, grad, exp_avg, exp_avg_sq, p);
  }
  void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                         const Tensor& out, const Tensor& lse) override {
    cpu::attention_forward(q, k, v, p, out, lse);
  }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dout, const AttentionParams& p, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv) override {
    cpu::attention_backward(q, k, v, out, lse, dout, p, dq, dk, dv);
  }
};

// Static registration: the library must be linked whole (CMake's WHOLE_ARCHIVE) for this to run.
const bool registered = [] {
  static CpuRuntime runtime;
  register_runtime(Device::CPU, &runtime);
  return true;
}();

}  // namespace

}  // namespace orchard::cpu
