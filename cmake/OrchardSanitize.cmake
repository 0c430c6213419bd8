# ORCHARD_SANITIZE builds everything this project compiles (the Orchard libraries, the GoogleTest
# suite and GoogleTest itself when vendored, the Python module, nanobind's static library) with
# sanitizers:
#   ON (or address)  AddressSanitizer (LeakSanitizer included on Linux) and UndefinedBehaviorSanitizer.
#                    UB is fatal (-fno-sanitize-recover) so a finding fails the test that hit it
#                    instead of scrolling by.
#   thread           ThreadSanitizer.
#
# Included before any target is defined, so the directory-wide options reach every target. The
# installed package's targets carry the link flag too (ORCHARD_SANITIZE_LINK_FLAGS): a program linking
# the instrumented static libraries needs the sanitizer runtimes.
#
# The Python module runs in an uninstrumented interpreter: preload the runtime, e.g.
#   LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1 python -m pytest ...
# (`bash .ci/run sanitize tsan` does this for both; see docs/ARCHITECTURE.md, "Sanitizers").
set(ORCHARD_SANITIZE OFF CACHE STRING
    "Sanitizers: OFF, ON or address (AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer), thread")
set_property(CACHE ORCHARD_SANITIZE PROPERTY STRINGS OFF ON address thread)
if(NOT ORCHARD_SANITIZE)
  return()
endif()
if(MSVC)
  message(FATAL_ERROR "ORCHARD_SANITIZE needs GCC or Clang")
endif()

if(ORCHARD_SANITIZE STREQUAL "thread")
  set(ORCHARD_SANITIZE_LINK_FLAGS -fsanitize=thread)
  set(_flags -fsanitize=thread)
elseif(ORCHARD_SANITIZE STREQUAL "address" OR ORCHARD_SANITIZE MATCHES "^(ON|On|on|TRUE|True|true|YES|Yes|yes|1)$")
  set(ORCHARD_SANITIZE_LINK_FLAGS -fsanitize=address,undefined)
  set(_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined)
else()
  message(FATAL_ERROR "ORCHARD_SANITIZE is '${ORCHARD_SANITIZE}': expected OFF, ON, address or thread")
endif()
list(APPEND _flags -fno-omit-frame-pointer)
add_compile_options(${_flags})
add_link_options(${ORCHARD_SANITIZE_LINK_FLAGS})
list(JOIN _flags " " _shown)
message(STATUS "Orchard: building with ${_shown}")
