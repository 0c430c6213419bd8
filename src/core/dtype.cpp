#include "dtype.h"

namespace orchard {

size_t itemsize(DType t) {
  switch (t) {
    case DType::Bool: return 1;
    case DType::Float16:
    case DType::BFloat16: return 2;
    case DType::Int32:
    case DType::Float32: return 4;
    case DType::Int64:
    case DType::Float64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool: return "bool";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
  }
  return "?";
}

namespace {
int kind(DType t) { return t == DType::Bool ? 0 : is_integral(t) ? 1 : 2; }
}  // namespace

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if (kind(a) != kind(b)) return kind(a) > kind(b) ? a : b;
  if ((a == DType::Float16 && b == DType::BFloat16) || (a == DType::BFloat16 && b == DType::Float16))
    return DType::Float32;
  return itemsize(a) >= itemsize(b) ? a : b;
}

bool can_cast(DType from, DType to) { return kind(from) <= kind(to); }

DType promote_with_scalar(DType tensor, DType scalar) {
  if (kind(scalar) <= kind(tensor)) return tensor;
  return kind(scalar) == 1 ? DType::Int64 : DType::Float32;
}

}  // namespace orchard
