# The nanobind module orchard._core, laid out with the pure-Python package in
# ${ORCHARD_PYTHON_DIR}/orchard so tests import the freshly built package from the build tree.
find_package(Python 3.9 REQUIRED COMPONENTS Interpreter Development.Module)
execute_process(COMMAND "${Python_EXECUTABLE}" -m nanobind --cmake_dir
                OUTPUT_VARIABLE nanobind_ROOT OUTPUT_STRIP_TRAILING_WHITESPACE)
find_package(nanobind CONFIG REQUIRED)

set(ORCHARD_PYTHON_DIR ${CMAKE_BINARY_DIR}/python)
set(ORCHARD_PACKAGE_DIR ${ORCHARD_PYTHON_DIR}/orchard)

file(GLOB ORCHARD_BINDING_SOURCES CONFIGURE_DEPENDS src/python/*.cpp)
nanobind_add_module(_core NB_STATIC ${ORCHARD_BINDING_SOURCES})
target_include_directories(_core PRIVATE src/python)
target_link_libraries(_core PRIVATE orchard)
orchard_set_warnings(_core)
set_target_properties(_core PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ORCHARD_PACKAGE_DIR})
if(NOT APPLE)
  # Installed next to the scipy_openblas32 package in site-packages.
  set_target_properties(_core PROPERTIES INSTALL_RPATH "$ORIGIN/../scipy_openblas32/lib")
endif()

add_custom_target(orchard_python_sources ALL
  COMMAND ${CMAKE_COMMAND} -E copy_directory ${CMAKE_CURRENT_SOURCE_DIR}/python/orchard ${ORCHARD_PACKAGE_DIR}
  COMMENT "Copying the orchard Python package into the build tree")
add_dependencies(_core orchard_python_sources)

nanobind_add_stub(_core_stub
  MODULE orchard._core
  OUTPUT ${ORCHARD_PACKAGE_DIR}/_core.pyi
  PYTHON_PATH ${ORCHARD_PYTHON_DIR}
  DEPENDS _core)

if(SKBUILD)
  install(TARGETS _core LIBRARY DESTINATION orchard)
  install(FILES ${ORCHARD_PACKAGE_DIR}/_core.pyi DESTINATION orchard)
endif()
