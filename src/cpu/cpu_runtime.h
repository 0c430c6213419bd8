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
#define ORCHARD_CPU_PRIMITIVE(name, Args) void name(const Args& a) override;
  ORCHARD_RUNTIME_PRIMITIVES(ORCHARD_CPU_PRIMITIVE)
#undef ORCHARD_CPU_PRIMITIVE
  void matmul_accumulate(const MatmulArgs& a) override;
  void matmul_pair(const MatmulArgs& first, const MatmulArgs& second) override;
};

}  // namespace orchard::cpu
