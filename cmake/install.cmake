# What `cmake --install` puts beyond the core library (CMakeLists.txt):
#   bin/duckblock                           the command line
#   lib/duckblock/duckblock.duckdb_extension the DuckDB extension (LOAD it by path)
#   lib/libduckblock_duckdb.a, include/duckblock/duckdb_capture.h
#                                           duckblock::duckdb (open_replicated)
#   lib/cmake/duckblock/duckblockDuckDBTargets.cmake
# and, with DUCKBLOCK_INSTALL_STRIP (on unless CMAKE_BUILD_TYPE is Debug),
# strips the installed command line and extension, keeping their debug
# information beside them in .debug/<name>.debug (found by gdb through the
# .gnu_debuglink section it adds).

if(CMAKE_BUILD_TYPE STREQUAL "Debug")
  set(_duckblock_strip_default OFF)
else()
  set(_duckblock_strip_default ON)
endif()
option(DUCKBLOCK_INSTALL_STRIP "Strip installed binaries, keeping debug info in .debug/*.debug" ${_duckblock_strip_default})

install(TARGETS duckblock RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set(_duckblock_strip_files "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/$<TARGET_FILE_NAME:duckblock>")
set(_duckblock_footer_cmd "")
if(TARGET duckblock_duckdb)
  install(EXPORT duckblockDuckDBTargets NAMESPACE duckblock:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/duckblock)
endif()
if(TARGET duckblock_extension)
  install(FILES $<TARGET_FILE:duckblock_extension> DESTINATION ${CMAKE_INSTALL_LIBDIR}/duckblock)
  list(APPEND _duckblock_strip_files
       "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/duckblock/$<TARGET_FILE_NAME:duckblock_extension>")
  # Stripping rewrites the ELF file and drops DuckDB's metadata footer after
  # it; the footer goes on again afterwards.
  set(_duckblock_footer_cmd
      "$<TARGET_FILE:duckblock_append_footer>;\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/duckblock/$<TARGET_FILE_NAME:duckblock_extension>;v${PROJECT_VERSION};${DUCKBLOCK_EXTENSION_DUCKDB_VERSION};${DUCKBLOCK_EXTENSION_PLATFORM}")
endif()

if(DUCKBLOCK_INSTALL_STRIP)
  if(NOT CMAKE_OBJCOPY)
    message(FATAL_ERROR "DUCKBLOCK_INSTALL_STRIP needs objcopy (binutils); or pass -DDUCKBLOCK_INSTALL_STRIP=OFF")
  endif()
  install(CODE "
    set(DUCKBLOCK_OBJCOPY \"${CMAKE_OBJCOPY}\")
    set(DUCKBLOCK_STRIP_FILES \"${_duckblock_strip_files}\")
    set(DUCKBLOCK_FOOTER_CMD \"${_duckblock_footer_cmd}\")
    include(\"${PROJECT_SOURCE_DIR}/cmake/strip_installed.cmake\")
  ")
endif()
