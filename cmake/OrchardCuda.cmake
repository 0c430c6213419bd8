# The CUDA build of the Metal kernels (issue 20): tools/cuda_codegen.py turns each metal/<family>.metal
# into a CUDA C++ translation unit with an entry point per kernel, embedded with the CUDA
# <metal_stdlib> (src/cuda/include) into orchard_cuda_kernels, which compiles a family to PTX with
# NVRTC, loaded at run time (src/cuda/kernel_compiler.h): building needs no CUDA (ORCHARD_CUDA_KERNELS,
# in CMakeLists.txt, is on for Linux). The test build compiles every family for sm_80 and sm_90 (ctest
# nvrtc_compile_all) so that the CUDA path cannot rot; NVRTC comes from the nvidia-cuda-nvrtc-cu12
# wheel of requirements-test.txt.
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

# The native kernels (src/cuda/kernels/*.cu, listed in src/cuda/native_modules.cpp), embedded as strings.
set(_native_sources)
file(GLOB _native_kernels CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/kernels/*.cu)
foreach(_kernel ${_native_kernels})
  get_filename_component(_stem ${_kernel} NAME_WE)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_kernel})
  file(READ ${_kernel} _text)
  string(MAKE_C_IDENTIFIER "${_stem}_source" _symbol)
  # A raw string literal, so a source must not contain ")orchard_cu".
  file(CONFIGURE OUTPUT ${_generated}/native_${_stem}.cpp @ONLY CONTENT
       "namespace orchard::cuda {\nextern const char @_symbol@[];\nconst char @_symbol@[] = R\"orchard_cu(@_text@)orchard_cu\";\n}\n")
  list(APPEND _native_sources ${_generated}/native_${_stem}.cpp)
endforeach()

add_library(orchard_cuda_kernels STATIC src/cuda/kernel_compiler.cpp src/cuda/kernel_cache.cpp src/cuda/native_modules.cpp
            ${_generated}/cuda_kernel_sources.cpp ${_native_sources})
target_include_directories(orchard_cuda_kernels PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/src/cuda>)
target_link_libraries(orchard_cuda_kernels PUBLIC orchard_core PRIVATE ${CMAKE_DL_LIBS})
orchard_set_warnings(orchard_cuda_kernels)

add_executable(orchard_nvrtc_compile_all tools/nvrtc_compile_all.cpp)
target_link_libraries(orchard_nvrtc_compile_all PRIVATE orchard_cuda_kernels Threads::Threads)
orchard_set_warnings(orchard_nvrtc_compile_all)

# The CUDA device: the Metal runtime's plans on the CUDA backend (src/cuda/cuda_backend.cpp), which
# loads the driver with dlopen and registers Device::CUDA, started on first use where the machine has a GPU;
# float products go through cuBLAS, likewise loaded at run time (src/cuda/cublas_matmul.h), and float16
# and bfloat16 attention through a native kernel (src/cuda/flash_attention.h).
if(TARGET orchard_metal)
  add_library(orchard_cuda STATIC src/cuda/cuda_backend.cpp src/cuda/cublas_matmul.cpp src/cuda/flash_attention.cpp)
  target_include_directories(orchard_cuda PRIVATE src/metal metal)
  target_link_libraries(orchard_cuda PUBLIC orchard_core orchard_metal orchard_cuda_kernels PRIVATE ${CMAKE_DL_LIBS})
  orchard_set_warnings(orchard_cuda)
  add_library(Orchard::orchard_cuda ALIAS orchard_cuda)
endif()
