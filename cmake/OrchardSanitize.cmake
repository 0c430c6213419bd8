# ORCHARD_SANITIZE=ON: AddressSanitizer (LeakSanitizer included on Linux) and
# UndefinedBehaviorSanitizer for everything this project compiles: the Orchard libraries, the
# GoogleTest suite, the Python module (and nanobind's static library, built with it). UB is fatal
# (-fno-sanitize-recover) so a finding fails the test that hit it instead of scrolling by.
#
# Included before any target is defined, so the directory-wide options reach every target. The
# installed package's targets carry the link flag too: a program linking the instrumented static
# libraries needs the sanitizer runtimes.
#
# The Python module runs in an uninstrumented interpreter: preload the runtime, e.g.
#   LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1 \
#   LSAN_OPTIONS=suppressions=tools/lsan.supp python -m pytest ...
# (`bash .ci/run sanitize` does exactly this; see docs/ARCHITECTURE.md, "Sanitizers").
option(ORCHARD_SANITIZE "Build with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer" OFF)
if(NOT ORCHARD_SANITIZE)
  return()
endif()
if(MSVC)
  message(FATAL_ERROR "ORCHARD_SANITIZE needs GCC or Clang")
endif()

set(ORCHARD_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
add_compile_options(${ORCHARD_SANITIZE_FLAGS})
add_link_options(-fsanitize=address,undefined)
message(STATUS "Orchard: building with ${ORCHARD_SANITIZE_FLAGS}")
