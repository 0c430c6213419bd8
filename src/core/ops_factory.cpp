#include <atomic>
#include <cmath>
#include <mutex>

#include "loop.h"
#include "ops_common.h"

namespace orchard {

namespace {
std::mutex g_rng_mutex;
uint64_t g_seed = 0x5eed;
uint64_t g_offset = 0;
}  // namespace

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(g_rng_mutex);
  g_seed = seed;
  g_offset = 0;
}

std::pair<uint64_t, uint64_t> next_random_offset(uint64_t count) {
  std::lock_guard<std::mutex> lock(g_rng_mutex);
  uint64_t offset = g_offset;
  g_offset += (count + 3) / 4 * 4;  // Philox yields 4 numbers per counter: keep streams disjoint
  return {g_seed, offset};
}

Tensor empty(const Shape& shape, DType dtype, Device device) { return Tensor::empty(shape, dtype, device); }

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor out = empty(shape, dtype, device);
  fill_(out, value);
  return out;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor scalar_tensor(double value, DType dtype, Device device, bool wrapped) {
  Tensor out = full({}, value, dtype, device);
  out.impl()->wrapped_number = wrapped;
  return out;
}

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  ORCHARD_CHECK(step != 0, ValueError, "arange: step must be nonzero");
  ORCHARD_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), ValueError,
                "arange: start, end and step must be finite");
  ORCHARD_CHECK((end - start) / step >= 0 || start == end, ValueError, "arange: step ", step,
                " goes the wrong way from ", start, " to ", end);
  double count = std::ceil((end - start) / step);
  ORCHARD_CHECK(count < 9.0e15, ValueError, "arange: ", count, " elements is too many");
  int64_t n = std::max<int64_t>(int64_t(count), 0);
  // Built in float64 on the host, then converted: every dtype and device gets the same values.
  Tensor host = empty({n}, DType::Float64, Device::CPU);
  double* p = host.data_as<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + double(i) * step;
  return host.to(dtype).to(device);
}

namespace {
Tensor random_tensor(const Shape& shape, DType dtype, Device device, bool normal) {
  detail::check_floating(dtype, normal ? "randn" : "rand", "dtype");
  Tensor out = empty(shape, dtype, device);
  auto [seed, offset] = next_random_offset(uint64_t(out.numel()) * (normal ? 2 : 1));
  runtime_for(device).random({out, normal, seed, offset});
  return out;
}
}  // namespace

Tensor rand(const Shape& shape, DType dtype, Device device) { return random_tensor(shape, dtype, device, false); }
Tensor randn(const Shape& shape, DType dtype, Device device) { return random_tensor(shape, dtype, device, true); }

}  // namespace orchard
