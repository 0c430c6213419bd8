// The exception types Orchard throws and the one helper that builds their messages.
// Each maps to a Python exception in the bindings (ValueError, IndexError, TypeError, MemoryError,
// RuntimeError), so every user mistake surfaces as a readable Python error, never a crash.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace orchard {

struct ValueError : std::runtime_error { using std::runtime_error::runtime_error; };
struct IndexError : std::runtime_error { using std::runtime_error::runtime_error; };
struct TypeError : std::runtime_error { using std::runtime_error::runtime_error; };
struct OutOfMemoryError : std::runtime_error { using std::runtime_error::runtime_error; };
struct RuntimeError : std::runtime_error { using std::runtime_error::runtime_error; };
// A tensor whose dtype the op cannot take (mean of int64, where with a float condition). In C++ a
// TypeError; Python sees orchard.DTypeError, both a ValueError (a wrong value of the dtype
// argument) and a TypeError (what NumPy raises for the same mistake).
struct DTypeError : TypeError { using TypeError::TypeError; };

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// ORCHARD_CHECK(cond, ValueError, "what was wrong", value, "what was expected")
#define ORCHARD_CHECK(cond, Error, ...)                                  \
  do {                                                                   \
    if (!(cond)) throw ::orchard::Error(::orchard::detail::concat(__VA_ARGS__)); \
  } while (0)

}  // namespace orchard
