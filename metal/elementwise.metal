// Elementwise kernels: copy with conversion, fill, unary and binary ops, where. Each comes in two
// forms: `_c` for contiguous operands (a flat index) and `_s` for strided ones (broadcast inputs have
// stride 0), addressed through a StridedLoop. One thread per element; the plans keep launches under
// 2^32 elements.
#include "../src/core/op_table.h"
#include "common.h"
#include "params.h"

// The element offsets of index i in the first N operands of a strided loop. A launch covers fewer
// than 2^31 elements (src/metal/launch_split.h), so i and every size of its loop fit 32 bits: the
// index splits into coordinates by 32-bit divisions (a 64-bit one is a long instruction sequence on
// GPUs), once for all the operands.
template <int N> struct Offsets {
  int64_t of[N];
};
template <int N> Offsets<N> strided_offsets(uint i, constant StridedLoop& p) {
  Offsets<N> r;
  for (int k = 0; k < N; ++k) r.of[k] = 0;
  for (int d = int(p.ndim) - 1; d >= 0; --d) {
    const uint size = uint(p.shape[d]), q = i / size;
    const int64_t coordinate = int64_t(i - q * size);
    for (int k = 0; k < N; ++k) r.of[k] += coordinate * p.strides[k][d];
    i = q;
  }
  return r;
}

// ---- copy and fill ---------------------------------------------------------------------------

template <typename Out, typename In>
[[kernel]] void copy_c(device Out* out [[buffer(0)]], device const In* in [[buffer(1)]],
                       constant int64_t& n [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i < n) out[i] = convert<Out>(in[i]);
}

template <typename Out, typename In>
[[kernel]] void copy_s(device Out* out [[buffer(0)]], device const In* in [[buffer(1)]],
                       constant StridedLoop& p [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i >= p.numel) return;
  const Offsets<2> o = strided_offsets<2>(i, p);
  out[o.of[0]] = convert<Out>(in[o.of[1]]);
}

#define ORCHARD_COPY(out_name, Out, in_name, In)                                   \
  ORCHARD_KERNEL("copy_" #out_name "_" #in_name "_c", copy_c, Out, In)             \
  ORCHARD_KERNEL("copy_" #out_name "_" #in_name "_s", copy_s, Out, In)
#define ORCHARD_COPY_TO(out_name, Out)                                                            \
  ORCHARD_COPY(out_name, Out, bool, bool) ORCHARD_COPY(out_name, Out, int32, int32_t)            \
  ORCHARD_COPY(out_name, Out, int64, int64_t) ORCHARD_COPY(out_name, Out, float16, half)         \
  ORCHARD_COPY(out_name, Out, bfloat16, bfloat) ORCHARD_COPY(out_name, Out, float32, float)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_COPY_TO)

// Floats and bool take the float value (0.1 is true), integers the exact int64.
template <typename T> T fill_value(constant FillValue& v) { return T(v.f); }
template <> bool fill_value<bool>(constant FillValue& v) { return v.f != 0; }
template <> int32_t fill_value<int32_t>(constant FillValue& v) { return int32_t(v.i); }
template <> int64_t fill_value<int64_t>(constant FillValue& v) { return v.i; }

template <typename T>
[[kernel]] void fill_c(device T* out [[buffer(0)]], constant FillValue& value [[buffer(1)]],
                       constant int64_t& n [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i < n) out[i] = fill_value<T>(value);
}

template <typename T>
[[kernel]] void fill_s(device T* out [[buffer(0)]], constant FillValue& value [[buffer(1)]],
                       constant StridedLoop& p [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i < p.numel) out[strided_offsets<1>(i, p).of[0]] = fill_value<T>(value);
}

#define ORCHARD_FILL(name, T)                                \
  ORCHARD_KERNEL("fill_" #name "_c", fill_c, T)              \
  ORCHARD_KERNEL("fill_" #name "_s", fill_s, T)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_FILL)

// ---- unary -----------------------------------------------------------------------------------

// erf to ~1e-7: its Taylor series near 0, Abramowitz & Stegun 7.1.26 beyond (MSL has no erf).
inline float erf_f32(float x) {
  const float a = fabs(x);
  if (a < 0.5f) {
    const float x2 = x * x;
    return 1.1283791671f * x * (1.0f + x2 * (-1.0f / 3 + x2 * (1.0f / 10 + x2 * (-1.0f / 42 + x2 * (1.0f / 216 + x2 * (-1.0f / 1320))))));
  }
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  return copysign(1.0f - poly * exp(-a * a), x);
}

struct Neg { template <typename C> C operator()(C x) const { return C(-typename Wrapping<C>::type(x)); } };
struct Abs {
  template <typename C> C operator()(C x) const {  // 0 - x: |-0| is +0
    typedef typename Wrapping<C>::type W;
    return x <= C(0) ? C(W(0) - W(x)) : x;
  }
};
struct Relu { template <typename C> C operator()(C x) const { return x > C(0) ? x : (x != x ? x : C(0)); } };
struct LogicalNot { bool operator()(bool x) const { return !x; } };
// abs and relu leave a bool as it is. Each host name needs an instantiation of its own (one
// explicit instantiation carries one [[host_name]], and Metal's compiler rejects a second of the
// same specialization), so each op has its own type.
struct Exp { float operator()(float x) const { return exp(x); } };
struct Log { float operator()(float x) const { return log(x); } };
struct Sqrt { float operator()(float x) const { return sqrt(x); } };
struct Rsqrt { float operator()(float x) const { return 1.0f / sqrt(x); } };
struct Tanh { float operator()(float x) const { return tanh(x); } };
struct Sigmoid { float operator()(float x) const { return 1.0f / (1.0f + exp(-x)); } };
struct Sin { float operator()(float x) const { return sin(x); } };
struct Cos { float operator()(float x) const { return cos(x); } };
struct Erf { float operator()(float x) const { return erf_f32(x); } };
// gelu(-inf) is its limit -0, where the formulas give -inf * 0 = NaN.
struct GeluExact {
  float operator()(float x) const {
    return x == -INFINITY ? -0.0f : 0.5f * x * (1.0f + erf_f32(x * 0.7071067811865476f));
  }
};
struct GeluTanh {
  float operator()(float x) const {
    return x == -INFINITY ? -0.0f : 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
};

template <typename T, typename Op>
[[kernel]] void unary_c(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                        constant int64_t& n [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i < n) out[i] = T(Op()(typename Compute<T>::type(in[i])));
}

template <typename T, typename Op>
[[kernel]] void unary_s(device T* out [[buffer(0)]], device const T* in [[buffer(1)]],
                        constant StridedLoop& p [[buffer(2)]], uint i [[thread_position_in_grid]]) {
  if (i >= p.numel) return;
  const Offsets<2> o = strided_offsets<2>(i, p);
  out[o.of[0]] = T(Op()(typename Compute<T>::type(in[o.of[1]])));
}

// The kernels of one table row (src/core/op_table.h) for each dtype its inputs column admits: M(E,
// op, dtype name, type) for every dtype of the column.
#define ORCHARD_DTYPES_Bool(M, E, op) M(E, op, bool, bool)
#define ORCHARD_DTYPES_Float(M, E, op) M(E, op, float16, half) M(E, op, bfloat16, bfloat) M(E, op, float32, float)
#define ORCHARD_DTYPES_Number(M, E, op) M(E, op, int32, int32_t) M(E, op, int64, int64_t) ORCHARD_DTYPES_Float(M, E, op)
#define ORCHARD_DTYPES_Any(M, E, op) ORCHARD_DTYPES_Bool(M, E, op) ORCHARD_DTYPES_Number(M, E, op)

#define ORCHARD_UNARY(Op, op, name, T)                        \
  ORCHARD_KERNEL("unary_" #op "_" #name "_c", unary_c, T, Op) \
  ORCHARD_KERNEL("unary_" #op "_" #name "_s", unary_s, T, Op)
#define ORCHARD_UNARY_ROW(E, op, Node, inputs, ...) ORCHARD_DTYPES_##inputs(ORCHARD_UNARY, E, op)
ORCHARD_UNARY_OPS(ORCHARD_UNARY_ROW)

// ---- binary ----------------------------------------------------------------------------------

// Integer powers by squaring, wrapping around (common.h); a negative exponent gives 1/base^-e
// truncated toward zero.
template <typename C> C integer_pow(C base, C e) {
  if (e < 0) return base == 1 ? 1 : (base == -1 ? ((e & 1) ? -1 : 1) : 0);
  typedef typename Wrapping<C>::type W;
  W result = 1, b = W(base);
  for (; e; e >>= 1, b *= b)
    if (e & 1) result *= b;
  return C(result);
}
// C's pow: a negative base with an integral exponent keeps its sign (MSL's pow leaves that undefined).
inline float float_pow(float a, float b) {
  if (b == 2.0f) return a * a;
  if (a < 0.0f && isfinite(b) && b == trunc(b)) {
    const float m = pow(-a, b);
    const bool odd = b - 2.0f * floor(0.5f * b) != 0.0f;
    return odd ? -m : m;
  }
  return pow(a, b);
}

struct Add {
  template <typename C> C operator()(C a, C b) const { typedef typename Wrapping<C>::type W; return C(W(a) + W(b)); }
};
struct Sub {
  template <typename C> C operator()(C a, C b) const { typedef typename Wrapping<C>::type W; return C(W(a) - W(b)); }
};
struct Mul {
  template <typename C> C operator()(C a, C b) const { typedef typename Wrapping<C>::type W; return C(W(a) * W(b)); }
};
struct Div { template <typename C> C operator()(C a, C b) const { return a / b; } };
struct SafeDiv { template <typename C> C operator()(C a, C b) const { return b == C(0) ? C(0) : a / b; } };
struct Maximum { template <typename C> C operator()(C a, C b) const { return nan_max(a, b); } };
struct Minimum { template <typename C> C operator()(C a, C b) const { return nan_min(a, b); } };
struct Pow {
  template <typename C> C operator()(C a, C b) const { return integer_pow(a, b); }
  float operator()(float a, float b) const { return float_pow(a, b); }
};
// Gelu's backward, fused: (grad, x) -> grad * gelu'(x). Exact: Phi(x) + x phi(x); tanh form
// differentiated term by term through the forward's t = tanh(k (x + c x^3)).
struct GeluBackwardExact {
  float operator()(float g, float x) const {
    return g * (0.5f * (1.0f + erf_f32(x * 0.7071067811865476f)) + x * 0.3989422804014327f * exp(-0.5f * x * x));
  }
};
struct GeluBackwardTanh {
  float operator()(float g, float x) const {
    const float k = 0.7978845608028654f, c = 0.044715f, x2 = x * x;
    const float t = tanh(k * (x + c * x2 * x));
    return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x2));
  }
};
struct Eq { template <typename C> bool operator()(C a, C b) const { return a == b; } };
struct Ne { template <typename C> bool operator()(C a, C b) const { return a != b; } };
struct Lt { template <typename C> bool operator()(C a, C b) const { return a < b; } };
struct Le { template <typename C> bool operator()(C a, C b) const { return a <= b; } };
struct Gt { template <typename C> bool operator()(C a, C b) const { return a > b; } };
struct Ge { template <typename C> bool operator()(C a, C b) const { return a >= b; } };
struct LogicalAnd { template <typename C> bool operator()(C a, C b) const { return a && b; } };
struct LogicalOr { template <typename C> bool operator()(C a, C b) const { return a || b; } };

// Out is T for arithmetic, bool for comparisons and logical ops.
template <typename Out, typename T, typename Op>
[[kernel]] void binary_c(device Out* out [[buffer(0)]], device const T* a [[buffer(1)]], device const T* b [[buffer(2)]],
                         constant int64_t& n [[buffer(3)]], uint i [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  if (i < n) out[i] = Out(Op()(C(a[i]), C(b[i])));
}

template <typename Out, typename T, typename Op>
[[kernel]] void binary_s(device Out* out [[buffer(0)]], device const T* a [[buffer(1)]], device const T* b [[buffer(2)]],
                         constant StridedLoop& p [[buffer(3)]], uint i [[thread_position_in_grid]]) {
  typedef typename Compute<T>::type C;
  if (i >= p.numel) return;
  const Offsets<3> o = strided_offsets<3>(i, p);
  out[o.of[0]] = Out(Op()(C(a[o.of[1]]), C(b[o.of[2]])));
}

#define ORCHARD_BINARY(Op, op, name, Out, T)                          \
  ORCHARD_KERNEL("binary_" #op "_" #name "_c", binary_c, Out, T, Op)  \
  ORCHARD_KERNEL("binary_" #op "_" #name "_s", binary_s, Out, T, Op)
#define ORCHARD_BINARY_Same(Op, op, name, T) ORCHARD_BINARY(Op, op, name, T, T)
#define ORCHARD_BINARY_Bool(Op, op, name, T) ORCHARD_BINARY(Op, op, name, bool, T)
#define ORCHARD_BINARY_ROW(E, op, Node, inputs, output, ...) ORCHARD_DTYPES_##inputs(ORCHARD_BINARY_##output, E, op)
ORCHARD_BINARY_OPS(ORCHARD_BINARY_ROW)

// ---- where -----------------------------------------------------------------------------------

template <typename T>
[[kernel]] void where_s(device T* out [[buffer(0)]], device const bool* cond [[buffer(1)]], device const T* a [[buffer(2)]],
                        device const T* b [[buffer(3)]], constant StridedLoop& p [[buffer(4)]],
                        uint i [[thread_position_in_grid]]) {
  if (i >= p.numel) return;
  const Offsets<4> o = strided_offsets<4>(i, p);
  out[o.of[0]] = cond[o.of[1]] ? a[o.of[2]] : b[o.of[3]];
}

#define ORCHARD_WHERE(name, T) ORCHARD_KERNEL("where_" #name "_s", where_s, T)
ORCHARD_FOR_EACH_DTYPE(ORCHARD_WHERE)
