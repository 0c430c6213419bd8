// Elementwise kernels. Each op is a scalar functor; map1/map2/map3 run it over rows, with the
// contiguous and broadcast-scalar cases written as plain counted loops so GCC/Clang vectorise them.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu_runtime.h"
#include "loop_driver.h"
#include "vec_math.h"

namespace orchard::cpu {

namespace {

template <typename To, typename From>
inline To convert(From x) {
  if constexpr (std::is_same_v<To, From>) return x;
  else if constexpr (std::is_same_v<To, bool>) return static_cast<compute_t<From>>(x) != 0;
  else return To(static_cast<compute_t<To>>(static_cast<compute_t<From>>(x)));
}

template <typename Out, typename A, typename F>
void map1(const ElementwiseLoop& loop, F f) {
  for_each_row<2>(loop, [&](const Row<2>& r) {
    Out* o = reinterpret_cast<Out*>(r.ptr[0]);
    const A* a = reinterpret_cast<const A*>(r.ptr[1]);
    const int64_t so = r.stride[0], sa = r.stride[1], n = r.n;
    if (so == 1 && sa == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    } else if (so == 1 && sa == 0) {
      const Out v = f(a[0]);
      for (int64_t i = 0; i < n; ++i) o[i] = v;
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
    }
  });
}

template <typename Out, typename T, typename F>
void map2(const ElementwiseLoop& loop, F f) {
  for_each_row<3>(loop, [&](const Row<3>& r) {
    Out* o = reinterpret_cast<Out*>(r.ptr[0]);
    const T* a = reinterpret_cast<const T*>(r.ptr[1]);
    const T* b = reinterpret_cast<const T*>(r.ptr[2]);
    const int64_t so = r.stride[0], sa = r.stride[1], sb = r.stride[2], n = r.n;
    if (so == 1 && sa == 1 && sb == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (so == 1 && sa == 1 && sb == 0) {
      const T bv = b[0];
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
    } else if (so == 1 && sa == 0 && sb == 1) {
      const T av = a[0];
      for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa], b[i * sb]);
    }
  });
}

// ---- unary -----------------------------------------------------------------------------------

// GELU: exact x Phi(x), or the tanh form 0.5 x (1 + tanh(k (x + c x^3))).
constexpr double kGeluK = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kGeluC = 0.044715;
constexpr double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;

// gelu(-inf) is its limit -0, where both formulas give -inf * 0 = NaN.
template <typename C>
inline bool is_minus_inf(C x) {
  return x == -std::numeric_limits<C>::infinity();
}

template <typename C>
inline C gelu_exact(C x) {
  return is_minus_inf(x) ? C(-0.0) : C(0.5) * x * (C(1) + std::erf(x * C(kInvSqrt2)));
}

// 0.5 (1 + tanh(u)) as sigmoid(2u): one exp and one division, cheaper than tanh's two branches,
// and without 1 + tanh(u)'s cancellation for negative u.
template <typename C>
inline C gelu_tanh_gate(C x) {
  return vsigmoid(C(2 * kGeluK) * (x + C(kGeluC) * x * x * x));
}

template <typename C>
inline C gelu_tanh(C x) {
  return is_minus_inf(x) ? C(-0.0) : x * gelu_tanh_gate(x);
}

// d/dx gelu: Phi(x) + x phi(x).
template <typename C>
inline C gelu_exact_grad(C x) {
  return C(0.5) * (C(1) + std::erf(x * C(kInvSqrt2))) + x * C(kInvSqrt2Pi) * vexp(C(-0.5) * x * x);
}

// d/dx of the tanh form: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2) with t = tanh(u), which is
// s + 2 x s (1 - s) k (1 + 3 c x^2) for the gate s = 0.5 (1 + t).
template <typename C>
inline C gelu_tanh_grad(C x) {
  const C s = gelu_tanh_gate(x);
  return s + C(2 * kGeluK) * x * s * (C(1) - s) * (C(1) + C(3 * kGeluC) * x * x);
}

// One functor per row of ORCHARD_UNARY_OPS (op_table.h), named after its enumerator; C is the
// compute type (float for the 16-bit floats).
struct Neg { template <typename C> C operator()(C x) const { return C(-wrapping_t<C>(x)); } };
// 0 - x: |-0| is +0.
struct Abs {
  template <typename C> C operator()(C x) const { return x <= C(0) ? C(wrapping_t<C>(0) - wrapping_t<C>(x)) : x; }
};
struct Relu { template <typename C> C operator()(C x) const { return x > C(0) ? x : (x != x ? x : C(0)); } };
struct LogicalNot { bool operator()(bool x) const { return !x; } };
struct Exp { template <typename C> C operator()(C x) const { return vexp(x); } };
struct Log { template <typename C> C operator()(C x) const { return std::log(x); } };
struct Sqrt { template <typename C> C operator()(C x) const { return std::sqrt(x); } };
struct Rsqrt { template <typename C> C operator()(C x) const { return C(1) / std::sqrt(x); } };
struct Tanh { template <typename C> C operator()(C x) const { return vtanh(x); } };
struct Sigmoid { template <typename C> C operator()(C x) const { return vsigmoid(x); } };
struct GeluExact { template <typename C> C operator()(C x) const { return gelu_exact(x); } };
struct GeluTanh { template <typename C> C operator()(C x) const { return gelu_tanh(x); } };
struct Erf { template <typename C> C operator()(C x) const { return std::erf(x); } };
struct Sin { template <typename C> C operator()(C x) const { return std::sin(x); } };
struct Cos { template <typename C> C operator()(C x) const { return std::cos(x); } };

// Runs the functor of each table row for the dtypes its inputs column admits.
template <typename T>
void unary_typed(UnaryOp op, const ElementwiseLoop& loop) {
  using C = compute_t<T>;
  switch (op) {
#define ORCHARD_CPU_UNARY(E, name, Node, inputs, ...)                                 \
    case UnaryOp::E:                                                               \
      if constexpr (accepts(OpInputs::inputs, dtype_of<T>::value))                 \
        return map1<T, T>(loop, [](T x) { return T(E()(C(x))); });                 \
      break;
    ORCHARD_UNARY_OPS(ORCHARD_CPU_UNARY)
#undef ORCHARD_CPU_UNARY
  }
  throw RuntimeError("internal error: unary op not implemented for this dtype");
}

// ---- binary ----------------------------------------------------------------------------------

template <typename C>
inline C ipow(C base, C exp) {
  if (exp < 0) return base == 1 ? 1 : (base == -1 ? ((exp & 1) ? -1 : 1) : 0);
  wrapping_t<C> result = 1, b = wrapping_t<C>(base);
  for (; exp; exp >>= 1, b *= b)
    if (exp & 1) result *= b;
  return C(result);
}

// One functor per row of ORCHARD_BINARY_OPS. Integer +, -, * wrap around, computed in the unsigned type.
struct Add { template <typename C> C operator()(C a, C b) const { return C(wrapping_t<C>(a) + wrapping_t<C>(b)); } };
struct Sub { template <typename C> C operator()(C a, C b) const { return C(wrapping_t<C>(a) - wrapping_t<C>(b)); } };
struct Mul { template <typename C> C operator()(C a, C b) const { return C(wrapping_t<C>(a) * wrapping_t<C>(b)); } };
struct Div { template <typename C> C operator()(C a, C b) const { return a / b; } };
struct SafeDiv { template <typename C> C operator()(C a, C b) const { return b == C(0) ? C(0) : a / b; } };
struct Pow {
  template <typename C> C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>) return b == C(2) ? a * a : std::pow(a, b);
    else return ipow(a, b);
  }
};
// NaN propagates; of two equal values the first wins (maximum(-0.0, 0.0) is -0.0, as in PyTorch and
// metal/common.h's nan_max).
struct Maximum { template <typename C> C operator()(C a, C b) const { return (a >= b || a != a) ? a : b; } };
struct Minimum { template <typename C> C operator()(C a, C b) const { return (a <= b || a != a) ? a : b; } };
struct GeluBackwardExact { template <typename C> C operator()(C g, C x) const { return g * gelu_exact_grad(x); } };
struct GeluBackwardTanh { template <typename C> C operator()(C g, C x) const { return g * gelu_tanh_grad(x); } };
struct Eq { template <typename C> bool operator()(C a, C b) const { return a == b; } };
struct Ne { template <typename C> bool operator()(C a, C b) const { return a != b; } };
struct Lt { template <typename C> bool operator()(C a, C b) const { return a < b; } };
struct Le { template <typename C> bool operator()(C a, C b) const { return a <= b; } };
struct Gt { template <typename C> bool operator()(C a, C b) const { return a > b; } };
struct Ge { template <typename C> bool operator()(C a, C b) const { return a >= b; } };
struct LogicalAnd { bool operator()(bool a, bool b) const { return a && b; } };
struct LogicalOr { bool operator()(bool a, bool b) const { return a || b; } };

template <typename T>
void binary_typed(BinaryOp op, const ElementwiseLoop& loop) {
  using C = compute_t<T>;
  switch (op) {
#define ORCHARD_CPU_BINARY(E, name, Node, inputs, output, ...)                                      \
    case BinaryOp::E:                                                                              \
      if constexpr (accepts(OpInputs::inputs, dtype_of<T>::value)) {                               \
        using Out = std::conditional_t<OpOutput::output == OpOutput::Bool, bool, T>;               \
        return map2<Out, T>(loop, [](T a, T b) { return Out(E()(C(a), C(b))); });                  \
      }                                                                                            \
      break;
    ORCHARD_BINARY_OPS(ORCHARD_CPU_BINARY)
#undef ORCHARD_CPU_BINARY
  }
  throw RuntimeError("internal error: binary op not implemented for this dtype");
}

}  // namespace

void CpuRuntime::unary(UnaryOp op, const ElementwiseLoop& loop) {
  ORCHARD_DISPATCH(loop.operands[0].dtype, unary_typed<T>(op, loop));
}

void CpuRuntime::binary(BinaryOp op, const ElementwiseLoop& loop) {
  ORCHARD_DISPATCH(loop.operands[1].dtype, binary_typed<T>(op, loop));
}

void CpuRuntime::where(const ElementwiseLoop& loop) {
  ORCHARD_DISPATCH(loop.operands[0].dtype, {
    for_each_row<4>(loop, [](const Row<4>& r) {
      T* o = reinterpret_cast<T*>(r.ptr[0]);
      const bool* c = reinterpret_cast<const bool*>(r.ptr[1]);
      const T* a = reinterpret_cast<const T*>(r.ptr[2]);
      const T* b = reinterpret_cast<const T*>(r.ptr[3]);
      for (int64_t i = 0; i < r.n; ++i)
        o[i * r.stride[0]] = c[i * r.stride[1]] ? a[i * r.stride[2]] : b[i * r.stride[3]];
    });
  });
}

void CpuRuntime::fill(const ElementwiseLoop& loop, Scalar value) {
  ORCHARD_DISPATCH(loop.operands[0].dtype, {
    // bool from the double (0.1 is true); integers from the exact int64 (truncated toward zero).
    const T v = std::is_floating_point_v<compute_t<T>> || std::is_same_v<T, bool> ? convert<T>(value.f)
                                                                                 : convert<T>(value.i);
    for_each_row<1>(loop, [v](const Row<1>& r) {
      T* o = reinterpret_cast<T*>(r.ptr[0]);
      if (r.stride[0] == 1) for (int64_t i = 0; i < r.n; ++i) o[i] = v;
      else for (int64_t i = 0; i < r.n; ++i) o[i * r.stride[0]] = v;
    });
  });
}

void CpuRuntime::copy(const ElementwiseLoop& loop) {
  const DType to = loop.operands[0].dtype, from = loop.operands[1].dtype;
  if (to == from) {  // a plain move of bits: one kernel per element width
    auto move = [&](auto tag) {
      using Bits = decltype(tag);
      map1<Bits, Bits>(loop, [](Bits x) { return x; });
    };
    switch (itemsize(to)) {
      case 1: return move(uint8_t{});
      case 2: return move(uint16_t{});
      case 4: return move(uint32_t{});
      default: return move(uint64_t{});
    }
  }
  ORCHARD_DISPATCH(to, {
    using Out = T;
    ORCHARD_DISPATCH(from, map1<Out, T>(loop, [](T x) { return convert<Out>(x); }));
  });
}

}  // namespace orchard::cpu
