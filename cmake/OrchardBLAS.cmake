# BLAS for matmul, as the interface target `orchard_blas`:
# - macOS: Accelerate (ships with the OS, tuned for Apple Silicon);
# - elsewhere: OpenBLAS from the scipy-openblas32 wheel on PyPI when the Python used for the
#   build has it (so `pip install .` needs nothing from apt; symbols carry a `scipy_` prefix),
#   else a system CBLAS found by find_package(BLAS) plus cblas.h.
add_library(orchard_blas INTERFACE)
if(APPLE)
  target_link_libraries(orchard_blas INTERFACE "-framework Accelerate")
  target_compile_definitions(orchard_blas INTERFACE ORCHARD_BLAS_ACCELERATE ACCELERATE_NEW_LAPACK)
  return()
endif()

find_package(Python COMPONENTS Interpreter)
if(Python_Interpreter_FOUND)
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import scipy_openblas32 as s, os; print(s.get_include_dir()); print(os.path.join(s.get_lib_dir(), s.get_library(True)))"
    OUTPUT_VARIABLE _orchard_sob RESULT_VARIABLE _orchard_sob_rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
if(Python_Interpreter_FOUND AND _orchard_sob_rc EQUAL 0)
  string(REPLACE "\n" ";" _orchard_sob "${_orchard_sob}")
  list(GET _orchard_sob 0 ORCHARD_BLAS_INCLUDE_DIR)
  list(GET _orchard_sob 1 ORCHARD_BLAS_LIBRARY)
  set(ORCHARD_BLAS_PREFIX scipy_)
  message(STATUS "Orchard BLAS: scipy-openblas32 (${ORCHARD_BLAS_LIBRARY})")
else()
  find_package(BLAS REQUIRED)
  find_path(ORCHARD_BLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas REQUIRED)
  set(ORCHARD_BLAS_LIBRARY ${BLAS_LIBRARIES})
  set(ORCHARD_BLAS_PREFIX "")
  message(STATUS "Orchard BLAS: system (${ORCHARD_BLAS_LIBRARY})")
endif()
get_filename_component(ORCHARD_BLAS_LIBRARY_DIR "${ORCHARD_BLAS_LIBRARY}" DIRECTORY)
target_include_directories(orchard_blas INTERFACE $<BUILD_INTERFACE:${ORCHARD_BLAS_INCLUDE_DIR}>)
target_compile_definitions(orchard_blas INTERFACE $<BUILD_INTERFACE:ORCHARD_BLAS_PREFIX=${ORCHARD_BLAS_PREFIX}>)
target_link_libraries(orchard_blas INTERFACE ${ORCHARD_BLAS_LIBRARY})
