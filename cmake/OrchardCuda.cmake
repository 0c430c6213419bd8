# The CUDA build of the Metal kernels (issue 20): tools/cuda_codegen.py turns each metal/<family>.metal
# into a CUDA C++ translation unit with an entry point per kernel, embedded with the CUDA
# <metal_stdlib> (src/cuda/include) into orchard_cuda_kernels, which compiles a family to PTX with
# NVRTC, loaded at run time (src/cuda/kernel_compiler.h): building needs no CUDA. The test build on
# Linux compiles every family for sm_80 and sm_90 (ctest nvrtc_compile_all) so that the CUDA path
# cannot rot; NVRTC comes from the nvidia-cuda-nvrtc-cu12 wheel of requirements-test.txt.
set(_orchard_cuda_default OFF)
if(ORCHARD_BUILD_TESTS AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  set(_orchard_cuda_default ON)
endif()
option(ORCHARD_CUDA_KERNELS "Build the NVRTC compiler of the kernels for NVIDIA GPUs (Linux)" ${_orchard_cuda_default})
if(NOT ORCHARD_CUDA_KERNELS)
  return()
endif()

find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(_generated ${CMAKE_CURRENT_BINARY_DIR}/cuda_generated)
file(MAKE_DIRECTORY ${_generated})
file(GLOB _cuda_kernels CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.metal ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.h)
file(GLOB _cuda_shim CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/include/*)
# The C++ preprocessor tells the codegen each kernel's host name (built by macros in the kernels).
add_custom_command(OUTPUT ${_generated}/cuda_kernel_sources.cpp
  COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/tools/cuda_codegen.py ${_generated}/cuda_kernel_sources.cpp
          ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_CXX_COMPILER}
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tools/cuda_codegen.py ${CMAKE_CURRENT_SOURCE_DIR}/tools/metal_codegen.py
          ${_cuda_kernels} ${_cuda_shim} ${CMAKE_CURRENT_SOURCE_DIR}/src/core/op_table.h ${CMAKE_CURRENT_SOURCE_DIR}/src/core/philox.h
          ${CMAKE_CURRENT_SOURCE_DIR}/tools/msl_check/include/metal_stdlib ${CMAKE_CURRENT_SOURCE_DIR}/src/metal/emulator/msl_keywords.h
  COMMENT "Generating the CUDA sources of the Metal kernels")

add_library(orchard_cuda_kernels STATIC src/cuda/kernel_compiler.cpp ${_generated}/cuda_kernel_sources.cpp)
target_include_directories(orchard_cuda_kernels PUBLIC src/cuda)
target_link_libraries(orchard_cuda_kernels PUBLIC orchard_core PRIVATE ${CMAKE_DL_LIBS})
orchard_set_warnings(orchard_cuda_kernels)

add_executable(orchard_nvrtc_compile_all tools/nvrtc_compile_all.cpp)
target_link_libraries(orchard_nvrtc_compile_all PRIVATE orchard_cuda_kernels Threads::Threads)
orchard_set_warnings(orchard_nvrtc_compile_all)
