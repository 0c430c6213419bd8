// What the Metal compiler itself gives MSL where it differs from C++, for the strict check of the
// kernels (tools/msl_check.py force-includes this before every unit; <metal_stdlib> is the library).
//
// - The address spaces are distinct clang address spaces, `thread` the default one: a pointer or
//   reference never converts between them, as in MSL. `constant` memory is read-only. (MSL also
//   copies a struct by value between address spaces, which clang's C++ rejects because the implicit
//   copy members take the default address space; tools/msl_check.py accepts exactly those errors.)
// - MSL has no double: the keyword is an error.
// The check defines __METAL_VERSION__ on the command line, so kernels take their MSL branches.
#pragma once

#define device __attribute__((address_space(1)))
#define constant __attribute__((address_space(2))) const
#define threadgroup __attribute__((address_space(3)))
#define thread

#define double _Pragma("GCC error \"MSL has no double: compute in float\"") double
