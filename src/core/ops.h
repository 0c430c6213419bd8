// Op front-ends: validate, promote, broadcast, allocate on the inputs' device, then dispatch to
// that device's Runtime. Names and semantics follow PyTorch.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include "runtime.h"
#include "tensor.h"

namespace orchard {

// ---- factories -------------------------------------------------------------------------------
Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = Device::CPU);
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
Tensor arange(double start, double end, double step, DType dtype, Device device = Device::CPU);
Tensor rand(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
Tensor randn(const Shape& shape, DType dtype = DType::Float32, Device device = Device::CPU);
// A 0-d tensor holding a Python-style scalar; `wrapped` marks it for weak type promotion.
Tensor scalar_tensor(double value, DType dtype, Device device = Device::CPU, bool wrapped = false);
// Integers uniform in [low, high) (high > low; any int64 range), from 64-bit Philox numbers.
Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::Int64, Device device = Device::CPU);
// A uniformly random permutation of 0 .. n - 1.
Tensor randperm(int64_t n, DType dtype = DType::Int64, Device device = Device::CPU);
// num_samples category indices (int64) per row of 1-D or 2-D non-negative weights, drawn in
// proportion to them, with or without replacement (PyTorch's multinomial and its errors).
Tensor multinomial(const Tensor& weights, int64_t num_samples, bool replacement = false);
// In place, from the generator, on any float tensor (strided too): N(mean, std^2), U[from, to),
// exponential with rate lambda. Bump the version as every in-place write.
Tensor& normal_(Tensor& x, double mean = 0, double std = 1);
Tensor& uniform_(Tensor& x, double from = 0, double to = 1);
Tensor& exponential_(Tensor& x, double lambda = 1);
// In place: integers uniform in [from, to), or without `to` from `from` up to the dtype's largest
// value (2^digits for floats, as PyTorch's random_). Values cast to x's dtype.
Tensor& random_(Tensor& x, int64_t from = 0, std::optional<int64_t> to = std::nullopt);
void manual_seed(uint64_t seed);
// Reserves `count` numbers of the global Philox stream; returns (seed, offset).
std::pair<uint64_t, uint64_t> next_random_offset(uint64_t count);

// ---- elementwise -----------------------------------------------------------------------------
Tensor unary(UnaryOp op, const Tensor& x);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor safe_div(const Tensor& a, const Tensor& b);  // a / b, and 0 where b == 0
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor clamp(const Tensor& x, std::optional<Tensor> min, std::optional<Tensor> max);
Tensor gelu(const Tensor& x, bool tanh_approximation);
Tensor cast(const Tensor& x, DType dtype);

// In place: out op= value with `value` broadcast to out's shape; bumps out's version.
Tensor& binary_(BinaryOp op, Tensor& out, const Tensor& value);
Tensor& fill_(Tensor& out, double value);
Tensor& copy_(Tensor& out, const Tensor& src);  // casts and broadcasts src; any device pair

// ---- reductions ------------------------------------------------------------------------------
// `dims` empty reduces over everything. Var uses `correction` (1 = unbiased, as PyTorch).
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
              int64_t correction = 1);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, std::optional<int64_t> dim, bool keepdim = false);
Tensor argmin(const Tensor& x, std::optional<int64_t> dim, bool keepdim = false);
// PyTorch's max/min along a dim: (values, indices); the gradient goes to the chosen elements.
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- sorting and scans (ops_sort.cpp) ---------------------------------------------------------
// PyTorch's sort/argsort/topk with the order of stable=True always: ties keep their order, NaN
// sorts above every number. (values, int64 indices); the gradient goes to the chosen elements.
// topk's k outside [0, size] raises RuntimeError; its results are always sorted.
std::pair<Tensor, Tensor> sort(const Tensor& x, int64_t dim = -1, bool descending = false);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
// Inclusive cumulative sum along dim, in dtype when given (else integers and bool in int64).
Tensor cumsum(const Tensor& x, int64_t dim, std::optional<DType> dtype = std::nullopt);
// A copy of x reversed along each of dims (each at most once).
Tensor flip(const Tensor& x, const std::vector<int64_t>& dims);

// ---- linear algebra --------------------------------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b);  // NumPy semantics, broadcast batch dims
// input + a @ b (a linear layer's bias and product). Fused when a and b are matrices and input, of
// their result dtype, broadcasts to the product: input is copied into the result, and the product
// accumulates onto it. Otherwise the two ops, so any shapes matmul and add accept work.
Tensor addmm(const Tensor& input, const Tensor& a, const Tensor& b);

// ---- indexing and joining --------------------------------------------------------------------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
// A copy of x with the slices of source along dim added at the positions index (0-d or 1-d) names
// (PyTorch's index_add with alpha 1), in the order of index.
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& source);
Tensor embedding(const Tensor& weight, const Tensor& indices);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sections, int64_t dim);
Tensor tril(const Tensor& x, int64_t diagonal = 0);
// input where mask (broadcast) is false, value (a 0-d tensor, cast to input's dtype) where true;
// the result has the broadcast shape. The in-place form writes into input (mask broadcast to it).
Tensor masked_fill(const Tensor& x, const Tensor& mask, const Tensor& value);
Tensor& masked_fill_(Tensor& x, const Tensor& mask, const Tensor& value);
Tensor triu(const Tensor& x, int64_t diagonal = 0);

// ---- attention -------------------------------------------------------------------------------
// FlashAttention over q [B, Hq, Lq, D] and k, v [B, Hkv, Lk, D] (Hq a multiple of Hkv: grouped-
// query attention), float32/bfloat16/float16 with float32 accumulation, D in 1..256; returns
// softmax(scale q k^T + mask) v, dropout applied to the probabilities. Differentiable in q, k and v
// by the fused backward, in O(L) extra memory (the mask gets no gradient). `scale` defaults to
// 1/sqrt(D); `causal` masks col > row (top-left, as PyTorch's is_causal); `mask` (nullable) is
// bool (true = attend) or float (added to the scores), broadcast to [B, Hq, Lq, Lk]. A query row
// with every score masked gives 0 (and zero gradients). Dropout keeps score (b, h, row, col) by
// attention_dropout_keep (philox.h) at stream position offset + ((b * Hq + h) * Lq + row) * Lk + col:
// with `seed` given the stream is (seed, offset); else it takes the next B*Hq*Lq*Lk numbers of the
// global generator, so calls differ and manual_seed makes them repeatable.
Tensor flash_attention(const Tensor& q, const Tensor& k, const Tensor& v, std::optional<double> scale,
                       double dropout_p, bool causal, std::optional<uint64_t> seed, const Tensor* mask,
                       uint64_t offset = 0);
// The bool keep-mask [B, H, Lq, Lk] of flash_attention's dropout for stream (seed, offset).
// O(L^2): for tests and debugging.
Tensor attention_dropout_mask(int64_t B, int64_t H, int64_t Lq, int64_t Lk, double dropout_p, uint64_t seed,
                              uint64_t offset = 0, Device device = Device::CPU);
// PyTorch's torch.nn.functional.scaled_dot_product_attention on [..., H, L, E] inputs (any number of
// batch dims, the same for q, k and v), through flash_attention (so float32/bfloat16/float16, and a
// fully masked row gives 0 where PyTorch's math path gives NaN). enable_gqa allows fewer k/v heads.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* attn_mask,
                                    double dropout_p = 0.0, bool is_causal = false,
                                    std::optional<double> scale = std::nullopt, bool enable_gqa = false);

// ---- fused training ops -----------------------------------------------------------------------
// Layer norm over the trailing dims that weight and bias cover (PyTorch's normalized_shape).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
enum class Reduction : uint8_t { None, Mean, Sum };
// Cross-entropy of logits [N, C] (or [C]) against class indices [N] (or 0-d); targets equal to
// ignore_index contribute nothing, and Mean divides by the number of the others.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean);
// Dropout (PyTorch's F.dropout) of a float tensor: x * keep / (1 - p), element i (row-major) kept
// when number offset + i of the Philox stream keyed by seed is at least dropout_threshold(p)
// (philox.h), (seed, offset) reserving the next numel numbers of the global generator. The backward
// regenerates the mask from (seed, offset). Returns x itself when !training or p == 0, and x * 0
// when p is 1 (in float); p outside [0, 1] raises ValueError.
Tensor dropout(const Tensor& x, double p, bool training = true);
// One AdamW step, in place, on a parameter and its float32 moments.
void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, const AdamWParams& p);
// PyTorch's _amp_foreach_non_finite_check_and_unscale_: multiplies every float gradient by inv_scale
// (a 1-element float32 tensor) in place, and sets found_inf (1-element float32) to 1 when any element
// of any gradient is inf or NaN, else leaves it as it was. One fused pass per gradient, with no host
// read; every tensor on one device. An empty list does nothing (PyTorch checks nothing then either).
void amp_foreach_non_finite_check_and_unscale_(const std::vector<Tensor>& grads, Tensor& found_inf,
                                               const Tensor& inv_scale);

// ---- operators for C++ users -----------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return unary(UnaryOp::Neg, a); }

}  // namespace orchard
