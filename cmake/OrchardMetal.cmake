# The Metal runtime (src/metal) and its kernels (metal/*.metal).
#
# - ORCHARD_METAL (Apple): the Objective-C++ glue runs the kernels on the GPU. The kernel source is
#   embedded and compiled at run time; when `xcrun metal` exists, a precompiled metallib is embedded
#   too and used instead.
# - ORCHARD_METAL_EMULATOR (any host): the same kernels compiled as C++ and run by the emulator, so
#   device="metal" works without a GPU (the test build turns it on).
# With neither, no orchard_metal library is built and Metal reports itself unavailable.
option(ORCHARD_METAL_EMULATOR "Run the Metal kernels on the CPU through the MSL emulator" OFF)
if(NOT ORCHARD_METAL AND NOT ORCHARD_METAL_EMULATOR)
  return()
endif()

find_package(Python3 REQUIRED COMPONENTS Interpreter)
set(_codegen ${CMAKE_CURRENT_SOURCE_DIR}/tools/metal_codegen.py)
set(_generated ${CMAKE_CURRENT_BINARY_DIR}/metal_generated)
file(MAKE_DIRECTORY ${_generated})
file(GLOB ORCHARD_METAL_KERNELS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.metal)
file(GLOB ORCHARD_METAL_KERNEL_HEADERS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/metal/*.h)

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
  enable_language(OBJCXX)
  target_sources(orchard_metal PRIVATE src/metal/metal_backend.mm)
  set_source_files_properties(src/metal/metal_backend.mm PROPERTIES COMPILE_OPTIONS "-fobjc-arc")
  target_compile_definitions(orchard_metal PRIVATE ORCHARD_METAL_GPU=1)
  target_link_libraries(orchard_metal PUBLIC "-framework Metal" "-framework Foundation")
  execute_process(COMMAND xcrun -sdk macosx -f metal RESULT_VARIABLE _no_metal_compiler OUTPUT_QUIET ERROR_QUIET)
  if(_no_metal_compiler EQUAL 0)
    set(_air_files)
    foreach(_kernel ${ORCHARD_METAL_KERNELS})
      get_filename_component(_stem ${_kernel} NAME_WE)
      add_custom_command(OUTPUT ${_generated}/${_stem}.air
        COMMAND xcrun -sdk macosx metal -std=metal3.1 -fno-fast-math -c ${_kernel} -o ${_generated}/${_stem}.air
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
  endif()
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
