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
// Reductions have a row each too (ORCHARD_REDUCE_OPS: Enum, name, Node); their dtype rules are
// src/core/ops_reduce.cpp's.
// Adding a unary op: a row here, a functor in each kernel file, its derivative, its tests.
#pragma once

#define ORCHARD_UNARY_OPS(X)                     \
  X(Neg, neg, Neg, Number)                       \
  X(Abs, abs, Abs, Any)                          \
  X(Exp, exp, Exp, Float)                        \
  X(Log, log, Log, Float)                        \
  X(Sqrt, sqrt, Sqrt, Float)                     \
  X(Rsqrt, rsqrt, Rsqrt, Float)                  \
  X(Tanh, tanh, Tanh, Float)                     \
  X(Sigmoid, sigmoid, Sigmoid, Float)            \
  X(Relu, relu, Relu, Any)                       \
  X(GeluExact, gelu, Gelu, Float)                \
  X(GeluTanh, gelu_tanh, Gelu, Float)            \
  X(Sin, sin, Sin, Float)                        \
  X(Cos, cos, Cos, Float)                        \
  X(LogicalNot, logical_not, LogicalNot, Bool)   \
  X(Erf, erf, Erf, Float)

// GeluBackward*: (grad, x) -> grad * gelu'(x), the fused backward of gelu.
#define ORCHARD_BINARY_OPS(X)                                          \
  X(Add, add, Add, Any, Same)                                          \
  X(Sub, sub, Sub, Number, Same)                                       \
  X(Mul, mul, Mul, Any, Same)                                          \
  X(Div, div, Div, Float, Same)                                        \
  X(Pow, pow, Pow, Number, Same)                                       \
  X(Maximum, maximum, Maximum, Any, Same)                              \
  X(Minimum, minimum, Minimum, Any, Same)                              \
  X(SafeDiv, safe_div, SafeDiv, Float, Same)                           \
  X(GeluBackwardExact, gelu_backward, GeluBackward, Float, Same)       \
  X(GeluBackwardTanh, gelu_tanh_backward, GeluBackward, Float, Same)   \
  X(Eq, eq, Eq, Any, Bool)                                             \
  X(Ne, ne, Ne, Any, Bool)                                             \
  X(Lt, lt, Lt, Any, Bool)                                             \
  X(Le, le, Le, Any, Bool)                                             \
  X(Gt, gt, Gt, Any, Bool)                                             \
  X(Ge, ge, Ge, Any, Bool)                                             \
  X(LogicalAnd, logical_and, LogicalAnd, Bool, Bool)                   \
  X(LogicalOr, logical_or, LogicalOr, Bool, Bool)

#define ORCHARD_REDUCE_OPS(X)                 \
  X(Sum, sum, Sum)                            \
  X(Mean, mean, Mean)                         \
  X(Max, amax, Amax)                          \
  X(Min, amin, Amin)                          \
  X(ArgMax, argmax, Argmax)                   \
  X(ArgMin, argmin, Argmin)                   \
  X(Var, var, Var)                            \
  X(LogSumExp, logsumexp, Logsumexp)
