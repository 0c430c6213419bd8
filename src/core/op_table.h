// The elementwise ops, one row each: an op's names and the dtypes its kernels take are written here
// and nowhere else. Plain preprocessor, so that the Metal kernels (metal/elementwise.metal) include
// it too and instantiate exactly these rows. Columns:
//   Enum    the UnaryOp/BinaryOp enumerator, and the name of the op's functor in the CPU kernels
//           (src/cpu/elementwise.cpp) and the MSL ones (metal/elementwise.metal)
//   name    the op's name in errors, in Python and in its Metal kernels (unary_<name>_<dtype>_c)
//   Node    its autograd node, <Node>Backward (as PyTorch names them)
//   inputs  the input dtypes its kernels take; the front-end converts or refuses others:
//           Any, Number (bool is refused), Float (integers and bool compute in float32), Bool
//   output  (binary ops) Same: the dtype computed in; Bool: comparisons and logical ops
//   doc     what it computes, elementwise: the Python docstring
// Reductions have a row each too (ORCHARD_REDUCE_OPS: Enum, name, Node); their dtype rules are
// src/core/ops_reduce.cpp's.
// Adding a unary op: a row here, a functor in each kernel file, its derivative, its tests.
#pragma once

#define ORCHARD_UNARY_OPS(X)                                                                \
  X(Neg, neg, Neg, Number, "-input")                                                        \
  X(Abs, abs, Abs, Any, "|input|")                                                          \
  X(Exp, exp, Exp, Float, "e ** input")                                                     \
  X(Log, log, Log, Float, "the natural logarithm")                                          \
  X(Sqrt, sqrt, Sqrt, Float, "the square root")                                             \
  X(Rsqrt, rsqrt, Rsqrt, Float, "1 / sqrt(input)")                                          \
  X(Tanh, tanh, Tanh, Float, "the hyperbolic tangent")                                      \
  X(Sigmoid, sigmoid, Sigmoid, Float, "1 / (1 + e ** -input)")                              \
  X(Relu, relu, Relu, Any, "max(input, 0), NaN kept")                                       \
  X(GeluExact, gelu, Gelu, Float, "gelu, exact")                                            \
  X(GeluTanh, gelu_tanh, Gelu, Float, "gelu, tanh form")                                    \
  X(Sin, sin, Sin, Float, "the sine")                                                       \
  X(Cos, cos, Cos, Float, "the cosine")                                                     \
  X(LogicalNot, logical_not, LogicalNot, Bool, "not input, as bool")                        \
  X(Erf, erf, Erf, Float, "the error function")

// GeluBackward*: (grad, x) -> grad * gelu'(x), the fused backward of gelu.
#define ORCHARD_BINARY_OPS(X)                                                               \
  X(Add, add, Add, Any, Same, "input + other")                                              \
  X(Sub, sub, Sub, Number, Same, "input - other")                                           \
  X(Mul, mul, Mul, Any, Same, "input * other")                                              \
  X(Div, div, Div, Float, Same, "input / other (true division)")                            \
  X(Pow, pow, Pow, Number, Same, "input ** other")                                          \
  X(Maximum, maximum, Maximum, Any, Same, "the larger, NaN propagating")                    \
  X(Minimum, minimum, Minimum, Any, Same, "the smaller, NaN propagating")                   \
  X(SafeDiv, safe_div, SafeDiv, Float, Same, "input / other, 0 where other == 0")           \
  X(GeluBackwardExact, gelu_backward, GeluBackward, Float, Same, "grad * gelu'(x)")         \
  X(GeluBackwardTanh, gelu_tanh_backward, GeluBackward, Float, Same, "grad * gelu_tanh'(x)")\
  X(Eq, eq, Eq, Any, Bool, "input == other")                                                \
  X(Ne, ne, Ne, Any, Bool, "input != other")                                                \
  X(Lt, lt, Lt, Any, Bool, "input < other")                                                 \
  X(Le, le, Le, Any, Bool, "input <= other")                                                \
  X(Gt, gt, Gt, Any, Bool, "input > other")                                                 \
  X(Ge, ge, Ge, Any, Bool, "input >= other")                                                \
  X(LogicalAnd, logical_and, LogicalAnd, Bool, Bool, "input and other")                     \
  X(LogicalOr, logical_or, LogicalOr, Bool, Bool, "input or other")

#define ORCHARD_REDUCE_OPS(X)                                                               \
  X(Sum, sum, Sum)                                                                          \
  X(Mean, mean, Mean)                                                                       \
  X(Max, amax, Amax)                                                                        \
  X(Min, amin, Amin)                                                                        \
  X(ArgMax, argmax, Argmax)                                                                 \
  X(ArgMin, argmin, Argmin)                                                                 \
  X(Var, var, Var)                                                                          \
  X(LogSumExp, logsumexp, Logsumexp)
