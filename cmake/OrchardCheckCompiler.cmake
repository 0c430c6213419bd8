# The clang that checks the Metal code as Apple's tools would (the strict MSL check of the kernels and
# the metal-cpp check of the host glue). Only the test build needs it. It comes from the `ziglang` wheel
# in requirements-test.txt (clang with its own headers for every target, macOS included), so a fresh
# machine needs neither apt nor Xcode. -DORCHARD_CHECK_CXX="path;args" names another clang driver.
# Sets ORCHARD_CHECK_CXX to the command (a list) that runs it. Never skipped: without one, configuring
# stops and says how to get it.
if(DEFINED ORCHARD_CHECK_CXX)
  return()
endif()
find_package(Python 3.9 REQUIRED COMPONENTS Interpreter)
set(_zig_clang "${Python_EXECUTABLE}" -m ziglang c++)
execute_process(COMMAND ${_zig_clang} --version RESULT_VARIABLE _rc OUTPUT_VARIABLE _version ERROR_QUIET)
if(NOT _rc EQUAL 0 OR NOT _version MATCHES "clang version")
  message(FATAL_ERROR
    "The Metal checks of the test build need clang, which the `ziglang` wheel provides: run "
    "`${Python_EXECUTABLE} -m pip install -r requirements-test.txt` (or pass -DORCHARD_CHECK_CXX=<clang++>), "
    "or configure with -DORCHARD_BUILD_TESTS=OFF.")
endif()
string(REGEX MATCH "clang version [0-9.]+" _version "${_version}")
message(STATUS "Metal checks use ${_version} from the ziglang wheel")
set(ORCHARD_CHECK_CXX ${_zig_clang} CACHE STRING "clang driver command for the Metal checks")
