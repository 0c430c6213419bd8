// The CPU runtime: one class, declared here; each primitive family is defined in its own file
// (elementwise.cpp, random.cpp, reduce.cpp, matmul.cpp, index.cpp, attention.cpp, training.cpp).
// The contract of every primitive is in src/core/runtime.h.
#pragma once

#include "allocator.h"
#include "runtime.h"

namespace orchard::cpu {

class CpuRuntime final : public Runtime {
 public:
  Device device() const override { return Device::CPU; }
  void* allocate(size_t nbytes) override { return cpu::allocate(nbytes); }
  void deallocate(void* ptr, size_t nbytes) override { cpu::deallocate(ptr, nbytes); }
  void release_cached_memory() override { cpu::release_cached_memory(); }

  void copy(const ElementwiseLoop& loop) override;
  void fill(const ElementwiseLoop& loop, Scalar value) override;
  void unary(UnaryOp op, const ElementwiseLoop& loop) override;
  void binary(BinaryOp op, const ElementwiseLoop& loop) override;
  void where(const ElementwiseLoop& loop) override;
  void random(const RandomArgs& a) override;
  void dropout(const DropoutArgs& a) override;
  void reduce(const ReduceArgs& a) override;
  void softmax(const SoftmaxArgs& a) override;
  void matmul(const MatmulArgs& a) override;
  void matmul_accumulate(const MatmulArgs& a) override;
  void matmul_pair(const MatmulArgs& first, const MatmulArgs& second) override;
  void index_select(const IndexSelectArgs& a) override;
  void gather(const GatherArgs& a) override;
  void scatter_add(const GatherArgs& a) override;
  void attention_forward(const AttentionForwardArgs& a) override;
  void attention_backward(const AttentionBackwardArgs& a) override;
  void layer_norm_forward(const LayerNormForwardArgs& a) override;
  void layer_norm_backward(const LayerNormBackwardArgs& a) override;
  void cross_entropy_forward(const CrossEntropyForwardArgs& a) override;
  void cross_entropy_backward(const CrossEntropyBackwardArgs& a) override;
  void adamw_step(const AdamWStepArgs& a) override;
};

}  // namespace orchard::cpu
