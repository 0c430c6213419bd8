#include "shape.h"

#include <algorithm>
#include <sstream>

#include "errors.h"

namespace orchard {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t checked_numel(const Shape& s) {
  // The product of the sides with zeros counted as 1 must fit too: it bounds every stride of the
  // shape (a shape [0, 2^62, 2^62] has no elements, but its contiguous strides would overflow).
  int64_t n = 1, span = 1;
  for (int64_t d : s) {
    ORCHARD_CHECK(d >= 0, ValueError, "negative dimension ", d, " in shape ", shape_str(s),
                  "; dimensions must be >= 0");
    ORCHARD_CHECK(!__builtin_mul_overflow(span, std::max<int64_t>(d, 1), &span), ValueError, "shape ",
                  shape_str(s), std::find(s.begin(), s.end(), 0) == s.end()
                                    ? " has more elements than fit in 64 bits"
                                    : " has sides whose product does not fit in 64 bits (its strides would overflow)");
    n *= d;  // |n| <= span, so this cannot overflow
  }
  return n;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ORCHARD_CHECK(da == db || da == 1 || db == 1, ValueError, "shapes ", shape_str(a), " and ",
                  shape_str(b), " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db,
                  "); each dimension must match or be 1");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  ORCHARD_CHECK(dim >= lo && dim <= hi, IndexError, op, ": dimension ", dim,
                " is out of range for a tensor with ", ndim, " dimensions (expected ", lo, " to ",
                hi, ")");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(normalize_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  ORCHARD_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), ValueError, op,
                ": a dimension appears more than once in the dims to reduce");
  return out;
}

}  // namespace orchard
