# The Metal runtime (src/metal) and its kernels (metal/*.metal).
#
# - ORCHARD_METAL (Apple): the glue in src/metal/gpu (C++ over Apple's metal-cpp, third_party/)
#   runs the kernels on the GPU. Each kernel family's source is embedded and compiled at its first
#   use; when the Metal compiler runs, a precompiled metallib is embedded too and used instead.
# - ORCHARD_METAL_EMULATOR (any host): the same kernels compiled as C++ and run by the emulator, so
#   device="metal" works without a GPU (the test build turns it on).
# With neither, Metal reports itself unavailable, and orchard_metal holds only the runtime and its
# plans, for the CUDA device (ORCHARD_CUDA_KERNELS), which runs them; without that too, it is not built.
option(ORCHARD_METAL_EMULATOR "Run the Metal kernels on the CPU through the MSL emulator" OFF)
if(NOT ORCHARD_METAL AND NOT ORCHARD_METAL_EMULATOR AND NOT ORCHARD_CUDA_KERNELS)
  return()
endif()

find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(_codegen ${CMAKE_CURRENT_SOURCE_DIR}/tools/metal_codegen.py)
set(_generated ${CMAKE_CURRENT_BINARY_DIR}/metal_generated)
file(MAKE_DIRECTORY ${_generated})
file(GLOB ORCHARD_METAL_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.metal)
# The headers the kernels include: their own, and the op table they share with src/core.
file(GLOB ORCHARD_METAL_KERNEL_HEADERS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.h)
list(APPEND ORCHARD_METAL_KERNEL_HEADERS ${CMAKE_CURRENT_SOURCE_DIR}/src/core/op_table.h)

add_custom_command(OUTPUT ${_generated}/library_source.cpp
  COMMAND Python3::Interpreter ${_codegen} library ${_generated}/library_source.cpp ${CMAKE_CURRENT_SOURCE_DIR}/metal
  DEPENDS ${_codegen} ${ORCHARD_METAL_KERNELS} ${ORCHARD_METAL_KERNEL_HEADERS}
  COMMENT "Embedding the Metal kernel source")

file(GLOB ORCHARD_METAL_SOURCES CONFIGURE_DEPENDS src/metal/*.cpp)
add_library(orchard_metal STATIC ${ORCHARD_METAL_SOURCES} ${_generated}/library_source.cpp)
target_include_directories(orchard_metal PRIVATE src/metal metal)
target_link_libraries(orchard_metal PUBLIC orchard_core)
orchard_set_warnings(orchard_metal)

if(ORCHARD_METAL)
  # The metallib targets the package's deployment target, so that it loads on every macOS the package
  # runs on; the kernels are MSL 3.1, which macOS 14 introduced (the GPU backend needs 14 too).
  set(ORCHARD_METAL_DEPLOYMENT_TARGET ${CMAKE_OSX_DEPLOYMENT_TARGET})
  if(NOT ORCHARD_METAL_DEPLOYMENT_TARGET OR ORCHARD_METAL_DEPLOYMENT_TARGET VERSION_LESS 14.0)
    set(ORCHARD_METAL_DEPLOYMENT_TARGET 14.0)
  endif()
  file(GLOB ORCHARD_METAL_GPU_SOURCES CONFIGURE_DEPENDS src/metal/gpu/*.cpp)
  target_sources(orchard_metal PRIVATE ${ORCHARD_METAL_GPU_SOURCES})
  # metal-cpp passes completion handlers to Metal as blocks.
  set_source_files_properties(${ORCHARD_METAL_GPU_SOURCES} PROPERTIES COMPILE_OPTIONS "-fblocks")
  target_include_directories(orchard_metal PRIVATE src/metal/gpu)
  target_include_directories(orchard_metal SYSTEM PRIVATE third_party/metal-cpp)
  target_compile_definitions(orchard_metal PRIVATE ORCHARD_METAL_GPU=1)
  target_link_libraries(orchard_metal PUBLIC "-framework Metal" "-framework Foundation")
  # Probed by running it: `xcrun -f metal` finds a stub on Xcode 26 even without the separately
  # installed Metal toolchain. Without one, the sources are compiled at run time.
  execute_process(COMMAND xcrun -sdk macosx metal --version RESULT_VARIABLE _metal_rc OUTPUT_QUIET ERROR_QUIET)
  execute_process(COMMAND xcrun -sdk macosx metallib --version RESULT_VARIABLE _metallib_rc OUTPUT_QUIET ERROR_QUIET)
  if(_metal_rc EQUAL 0 AND _metallib_rc EQUAL 0)
    message(STATUS "Metal compiler found: embedding a metallib for macOS ${ORCHARD_METAL_DEPLOYMENT_TARGET}")
    set(_air_files)
    foreach(_kernel ${ORCHARD_METAL_KERNELS})
      get_filename_component(_stem ${_kernel} NAME_WE)
      add_custom_command(OUTPUT ${_generated}/${_stem}.air
        COMMAND xcrun -sdk macosx metal -std=metal3.1 -fno-fast-math
                -mmacosx-version-min=${ORCHARD_METAL_DEPLOYMENT_TARGET} -c ${_kernel} -o ${_generated}/${_stem}.air
        DEPENDS ${_kernel} ${ORCHARD_METAL_KERNEL_HEADERS})
      list(APPEND _air_files ${_generated}/${_stem}.air)
    endforeach()
    add_custom_command(OUTPUT ${_generated}/orchard.metallib
      COMMAND xcrun -sdk macosx metallib ${_air_files} -o ${_generated}/orchard.metallib DEPENDS ${_air_files})
    add_custom_command(OUTPUT ${_generated}/metallib.cpp
      COMMAND Python3::Interpreter ${_codegen} metallib ${_generated}/metallib.cpp ${_generated}/orchard.metallib
      DEPENDS ${_codegen} ${_generated}/orchard.metallib)
    target_sources(orchard_metal PRIVATE ${_generated}/metallib.cpp)
    target_compile_definitions(orchard_metal PRIVATE ORCHARD_HAS_METALLIB=1)
  else()
    message(STATUS "No Metal compiler (install Xcode's Metal toolchain for a precompiled metallib): "
                   "the kernels are compiled from source at run time, each family at its first use")
  endif()
  # Compiles every kernel family from source and builds every pipeline on this Mac's GPU (the macOS
  # workflow builds and runs it).
  add_executable(orchard_metal_compile_all EXCLUDE_FROM_ALL tools/metal_compile_all.cpp)
  set_source_files_properties(tools/metal_compile_all.cpp PROPERTIES COMPILE_OPTIONS "-fblocks")
  target_include_directories(orchard_metal_compile_all PRIVATE src/metal src/metal/gpu metal)
  target_include_directories(orchard_metal_compile_all SYSTEM PRIVATE third_party/metal-cpp)
  target_link_libraries(orchard_metal_compile_all PRIVATE orchard_metal)
  orchard_set_warnings(orchard_metal_compile_all)
endif()

if(ORCHARD_METAL_EMULATOR)
  set(_emulated_sources)
  foreach(_kernel ${ORCHARD_METAL_KERNELS})
    get_filename_component(_stem ${_kernel} NAME_WE)
    add_custom_command(OUTPUT ${_generated}/emulated_${_stem}.cpp
      COMMAND Python3::Interpreter ${_codegen} emulator ${_generated}/emulated_${_stem}.cpp ${_kernel}
      DEPENDS ${_codegen} ${_kernel})
    list(APPEND _emulated_sources ${_generated}/emulated_${_stem}.cpp)
  endforeach()
  # MSL attributes ([[buffer(0)]]...) mean nothing to a C++ compiler, and kernels need not use every
  # position parameter they declare.
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    set(ORCHARD_MSL_FLAGS -Wno-unknown-attributes -Wno-unused-parameter)
  else()
    set(ORCHARD_MSL_FLAGS -Wno-attributes -Wno-unused-parameter)
  endif()
  set_source_files_properties(${_emulated_sources} PROPERTIES COMPILE_OPTIONS "${ORCHARD_MSL_FLAGS}")
  target_sources(orchard_metal PRIVATE src/metal/emulator/emulator.cpp src/metal/emulator/emulated_backend.cpp
                 ${_emulated_sources})
  target_include_directories(orchard_metal PRIVATE src/metal/emulator src/metal/emulator/include)
  target_compile_definitions(orchard_metal PRIVATE ORCHARD_METAL_EMULATOR=1)
endif()

add_library(Orchard::orchard_metal ALIAS orchard_metal)
