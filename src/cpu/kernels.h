// The CPU kernels, one function per primitive family of Runtime (see src/core/runtime.h for the
// contract of each). CpuRuntime forwards to these; each lives in its own file.
#pragma once

#include "runtime.h"

namespace orchard::cpu {

// elementwise.cpp
void copy(const ElementwiseLoop& loop);
void fill(const ElementwiseLoop& loop, Scalar value);
void unary(UnaryOp op, const ElementwiseLoop& loop);
void binary(BinaryOp op, const ElementwiseLoop& loop);
void where(const ElementwiseLoop& loop);

// random.cpp
void random(const Tensor& out, bool normal, uint64_t seed, uint64_t offset);
void dropout(const Tensor& in, const Tensor& out, double p, uint64_t seed, uint64_t offset);

// reduce.cpp
void reduce(ReduceOp op, const Tensor& in, const Tensor& out, int64_t outer, int64_t reduced,
            int64_t inner, int64_t correction);
void softmax(const Tensor& in, const Tensor& out, bool log);

// matmul.cpp
void matmul(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate = false);  // out (+)= a @ b
void matmul_pair(const Tensor& a1, const Tensor& b1, const Tensor& out1, const Tensor& a2, const Tensor& b2,
                 const Tensor& out2);

// index.cpp
void index_select(const Tensor& src, const Tensor& index, const Tensor& out, int64_t outer, int64_t inner);
void gather(const Tensor& src, const Tensor& index, const Tensor& out, int64_t dim);
void scatter_add(const Tensor& out, const Tensor& index, const Tensor& src, int64_t dim);

// attention.cpp
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p,
                       const Tensor& out, const Tensor& lse);
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, const AttentionParams& p, const Tensor& dq, const Tensor& dk,
                        const Tensor& dv);

// training.cpp
void layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y,
                        const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& rstd, const Tensor& dx, const Tensor& dweight, const Tensor& dbias);
void cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& losses,
                           const Tensor& lse);
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& grad_losses,
                            int64_t ignore_index, const Tensor& dlogits);
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamWParams& p);

}  // namespace orchard::cpu
