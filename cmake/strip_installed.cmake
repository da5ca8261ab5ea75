# Runs at install time (cmake/install.cmake): for each installed binary F in
# DUCKBLOCK_STRIP_FILES, keep its debug information in .debug/F.debug beside
# it, strip F, and link the two (.gnu_debuglink); then run
# DUCKBLOCK_FOOTER_CMD (the extension's footer, which stripping dropped).
foreach(file IN LISTS DUCKBLOCK_STRIP_FILES)
  set(file "$ENV{DESTDIR}${file}")
  get_filename_component(dir "${file}" DIRECTORY)
  get_filename_component(name "${file}" NAME)
  set(debug "${dir}/.debug/${name}.debug")
  file(MAKE_DIRECTORY "${dir}/.debug")
  foreach(step "--only-keep-debug;${file};${debug}" "--strip-unneeded;${file}"
               "--add-gnu-debuglink=${debug};${file}")
    execute_process(COMMAND "${DUCKBLOCK_OBJCOPY}" ${step} RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "objcopy ${step} failed: ${err}")
    endif()
  endforeach()
  message(STATUS "Stripped: ${file} (debug information: ${debug})")
endforeach()
if(DUCKBLOCK_FOOTER_CMD)
  list(GET DUCKBLOCK_FOOTER_CMD 1 target)
  list(REMOVE_AT DUCKBLOCK_FOOTER_CMD 1)
  list(INSERT DUCKBLOCK_FOOTER_CMD 1 "$ENV{DESTDIR}${target}")
  execute_process(COMMAND ${DUCKBLOCK_FOOTER_CMD} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "appending the extension footer failed: ${err}")
  endif()
endif()
