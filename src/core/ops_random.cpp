// Random integers, permutations, categorical samples and in-place random fills, all from the one
// Philox stream (ops_factory.cpp), so manual_seed makes them repeatable and the CPU and Metal draw
// the same numbers.
#include <cmath>
#include <limits>

#include "autograd.h"
#include "ops_common.h"

namespace orchard {

using namespace detail;

namespace {

Tensor wrapped(double v, const Tensor& like) { return scalar_tensor(v, like.dtype(), like.device(), true); }

// int64 low + (u % range) for 64-bit Philox numbers u; range 0 is the whole int64 range.
Tensor random_int64(const Shape& shape, int64_t low, uint64_t range, Device device) {
  Tensor out = empty(shape, DType::Int64, device);
  auto [seed, offset] = next_random_offset(uint64_t(out.numel()) * 2);
  if (out.numel() > 0) runtime_for(device).random_integers({out, low, range, seed, offset});
  return out;
}

// The host value of a one-element tensor.
template <typename T> T host_item(const Tensor& t) {
  return *t.to(Device::CPU).to(dtype_of<T>::value).template data_as<T>();
}

void check_float_target(const Tensor& x, const char* op) { check_floating(x.dtype(), op, "the tensor's dtype"); }

}  // namespace

Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype, Device device) {
  ORCHARD_CHECK(low < high, RuntimeError, "randint: expects low < high, got low=", low, " >= high=", high);
  if (dtype == DType::Bool || dtype == DType::Int32) {
    const int64_t lo = dtype == DType::Bool ? 0 : std::numeric_limits<int32_t>::min();
    const int64_t hi = dtype == DType::Bool ? 1 : std::numeric_limits<int32_t>::max();
    ORCHARD_CHECK(low >= lo && high - 1 <= hi, RuntimeError, "randint: the range [", low, ", ", high,
                  ") does not fit in ", dtype_name(dtype), " (expected values in [", lo, ", ", hi, "])");
  }
  checked_numel(shape);
  Tensor out = random_int64(shape, low, uint64_t(high) - uint64_t(low), device);
  return dtype == DType::Int64 ? out : cast(out, dtype);
}

Tensor randperm(int64_t n, DType dtype, Device device) {
  ORCHARD_CHECK(n >= 0, RuntimeError, "randperm: n must be non-negative, got ", n);
  // The order of n random 64-bit keys: uniform over permutations (ties, of probability about
  // n^2 / 2^65, keep index order and still give a permutation).
  Tensor perm = argsort(random_int64({n}, 0, 0, device), 0);
  return dtype == DType::Int64 ? perm : cast(perm, dtype);
}

Tensor multinomial(const Tensor& weights, int64_t num_samples, bool replacement) {
  ORCHARD_CHECK(weights.ndim() == 1 || weights.ndim() == 2, RuntimeError, "multinomial: weights must be 1-D or "
                "2-D (one distribution per row), got shape ", shape_str(weights.shape()));
  ORCHARD_CHECK(is_floating(weights.dtype()), RuntimeError, "multinomial: weights must be floating point, got ",
                dtype_name(weights.dtype()));
  ORCHARD_CHECK(num_samples > 0, RuntimeError, "multinomial: num_samples must be positive, got ", num_samples);
  const int64_t categories = weights.size(-1);
  ORCHARD_CHECK(replacement || num_samples <= categories, RuntimeError, "multinomial: cannot draw ", num_samples,
                " samples without replacement from ", categories, " categories");
  autograd::GradModeGuard no_grad(false);
  const DType ct = weights.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor w = weights.to(ct);
  const Tensor zero = wrapped(0, w);
  // w - w is NaN exactly for inf and NaN.
  Tensor bad = binary(BinaryOp::LogicalOr, binary(BinaryOp::Lt, w, zero), binary(BinaryOp::Ne, sub(w, w), zero));
  ORCHARD_CHECK(w.numel() == 0 || host_item<int64_t>(sum(bad)) == 0, RuntimeError,
                "multinomial: weights must be finite and non-negative (found inf, NaN or a negative weight)");
  ORCHARD_CHECK(categories > 0 && host_item<double>(amin(sum(w, {-1}))) > 0, RuntimeError,
                "multinomial: every row of weights needs a positive sum");
  // Exponential races: category j of a row wins at time E_j / w_j (E_j ~ Exp(1)); the first to
  // finish is a draw in proportion to the weights, and the order of finishing is a draw without
  // replacement. Zero weights never finish.
  // One draw is a race's winner either way: argmin, cheaper than sorting the row.
  const bool winners_only = replacement || num_samples == 1;
  Tensor rows = weights.ndim() == 1 ? w.unsqueeze(0) : w;  // [R, C]
  Shape race_shape{rows.size(0), winners_only ? num_samples : 1, categories};
  Tensor times = empty(race_shape, ct, w.device());
  exponential_(times, 1);
  Tensor rate = rows.unsqueeze(1);
  Tensor finish = where(binary(BinaryOp::Gt, rate, zero), div(times, rate), wrapped(INFINITY, w));
  Tensor samples = winners_only ? argmin(finish, -1) : topk(finish.squeeze(1), num_samples, -1, false).second;
  return weights.ndim() == 1 ? samples.squeeze(0) : samples;
}

Tensor& normal_(Tensor& x, double mean, double std) {
  check_float_target(x, "normal_");
  ORCHARD_CHECK(std >= 0, RuntimeError, "normal_: std must be non-negative, got ", std);
  Tensor values = randn(x.shape(), x.dtype(), x.device());
  if (mean != 0 || std != 1) values = add(mul(values, wrapped(std, values)), wrapped(mean, values));
  return copy_(x, values);  // any strides; an in-place write as every other
}

Tensor& uniform_(Tensor& x, double from, double to) {
  check_float_target(x, "uniform_");
  ORCHARD_CHECK(from <= to, RuntimeError, "uniform_: expects from <= to, got from=", from, " > to=", to);
  Tensor values = rand(x.shape(), x.dtype(), x.device());
  if (from != 0 || to != 1) values = add(mul(values, wrapped(to - from, values)), wrapped(from, values));
  return copy_(x, values);  // any strides; an in-place write as every other
}

Tensor& random_(Tensor& x, int64_t from, std::optional<int64_t> to) {
  // Without `to`: up to the dtype's largest value, or for floats 2^digits, every integer up to which
  // the dtype holds exactly (PyTorch's bounds).
  uint64_t range;
  if (to) {
    ORCHARD_CHECK(from < *to, RuntimeError, "random_: expects from < to, got from=", from, " >= to=", *to);
    range = uint64_t(*to) - uint64_t(from);
  } else {
    const int digits = x.dtype() == DType::Bool ? 1 : x.dtype() == DType::Int32 ? 31 : x.dtype() == DType::Int64 ? 63
                       : x.dtype() == DType::Float16 ? 11 : x.dtype() == DType::BFloat16 ? 8
                       : x.dtype() == DType::Float32 ? 24 : 53;
    const uint64_t end = (uint64_t(1) << digits) + (is_floating(x.dtype()) ? 1 : 0);
    ORCHARD_CHECK(from >= 0 && uint64_t(from) < end, RuntimeError, "random_: from=", from,
                  " is outside the range [0, ", end, ") of ", dtype_name(x.dtype()));
    range = end - uint64_t(from);
  }
  return copy_(x, random_int64(x.shape(), from, range, x.device()));
}

Tensor& exponential_(Tensor& x, double lambda) {
  check_float_target(x, "exponential_");
  ORCHARD_CHECK(lambda > 0, RuntimeError, "exponential_: lambda must be positive, got ", lambda);
  // -log(1 - u) / lambda; 1 - u lies in (0, 1], so the result is finite.
  Tensor u = rand(x.shape(), x.dtype(), x.device());
  Tensor values = div(unary(UnaryOp::Neg, unary(UnaryOp::Log, sub(wrapped(1, u), u))), wrapped(lambda, u));
  return copy_(x, values);  // any strides; an in-place write as every other
}

}  // namespace orchard
