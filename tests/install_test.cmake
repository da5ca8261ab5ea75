# ctest's install test: `cmake --install` the build tree into a fresh prefix,
# then configure, build and run tests/consumer against that prefix alone.
# Arguments (-D): BUILD_DIR, SOURCE_DIR (tests/consumer), WORK_DIR,
# GENERATOR, CXX_COMPILER, BUILD_TYPE, EXPECT_STRIPPED (DUCKBLOCK_INSTALL_STRIP),
# OBJDUMP.
cmake_minimum_required(VERSION 3.20)
foreach(var BUILD_DIR SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_test.cmake: ${var} is not set")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(JOIN " " cmd ${ARGN})
    message(FATAL_ERROR "failed (${rc}): ${cmd}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(config_args)
if(BUILD_TYPE)
  set(config_args --config ${BUILD_TYPE})
endif()
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})

foreach(f include/duckblock/format.h include/duckblock/store.h include/duckblock/page_reader.h
          include/duckblock/follower.h)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
# The core's internals are not part of the API (core/src/include_internal).
foreach(f include/duckblock/page_index.h include/duckblock/clean_close.h include/duckblock/env.h)
  if(EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "installed, but internal to the core: ${f}")
  endif()
endforeach()

# Only the fresh prefix is searched, so nothing can come from the build tree.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
message(STATUS "${last_output}")

# The command line, stripped with its debug information kept beside it (in
# a build that strips: DUCKBLOCK_INSTALL_STRIP, on unless Debug).
if(NOT EXISTS "${prefix}/bin/duckblock")
  message(FATAL_ERROR "not installed: bin/duckblock")
endif()
run("${prefix}/bin/duckblock" --version)
if(EXPECT_STRIPPED)
  foreach(f bin/duckblock lib/duckblock/duckblock.duckdb_extension)
    if(NOT EXISTS "${prefix}/${f}")
      if(f MATCHES "extension" AND NOT EXISTS "${prefix}/lib/cmake/duckblock/duckblockDuckDBTargets.cmake")
        continue()  # built without DuckDB
      endif()
      message(FATAL_ERROR "not installed: ${f}")
    endif()
    get_filename_component(d "${prefix}/${f}" DIRECTORY)
    get_filename_component(n "${prefix}/${f}" NAME)
    if(NOT EXISTS "${d}/.debug/${n}.debug")
      message(FATAL_ERROR "no debug information kept for ${f} (${d}/.debug/${n}.debug)")
    endif()
    run(${OBJDUMP} -h "${prefix}/${f}")
    if(last_output MATCHES "\\.debug_info" OR NOT last_output MATCHES "gnu_debuglink")
      message(FATAL_ERROR "${f} is not stripped, or has no .gnu_debuglink:\n${last_output}")
    endif()
  endforeach()
endif()

# The DuckDB layer and the extension, when built with DuckDB.
if(EXISTS "${prefix}/lib/cmake/duckblock/duckblockDuckDBTargets.cmake")
  if(NOT EXISTS "${WORK_DIR}/build/consumer_duckdb")
    message(FATAL_ERROR "duckblock::duckdb is installed but the consumer did not build against it")
  endif()
  run("${WORK_DIR}/build/consumer_duckdb" "${prefix}/lib/duckblock/duckblock.duckdb_extension" "${WORK_DIR}/run")
  message(STATUS "${last_output}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
