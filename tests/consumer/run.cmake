# Installs the freshly built Orchard into a scratch prefix, then configures, builds and runs a tiny
# program that finds it with find_package(Orchard).
set(prefix ${BUILD_DIR}/consumer-test/prefix)
set(build ${BUILD_DIR}/consumer-test/build)
file(REMOVE_RECURSE ${BUILD_DIR}/consumer-test)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${build} -G ${GENERATOR} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${build})
run(${build}/consumer)
