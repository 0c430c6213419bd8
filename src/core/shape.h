// Shapes and strides (in elements), and the checks on them: one place for broadcasting, axis
// normalisation and size overflow, so every op reports these errors the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace orchard {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3]"

// Product of the dims; throws ValueError when a dim is negative or the product overflows.
int64_t checked_numel(const Shape& s);
Strides contiguous_strides(const Shape& s);

// NumPy broadcasting of two shapes; ValueError naming both when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Maps dim in [-ndim, ndim) to [0, ndim); IndexError otherwise. `op` names the caller in the message.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

// The axes a reduction runs over, normalised, deduplicated-checked and sorted; empty means all.
std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op);

}  // namespace orchard
