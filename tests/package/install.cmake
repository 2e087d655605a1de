# Usage: cmake -DBUILD_DIR=<skipstep build> -DPREFIX=<dir> [-DCONFIG=<cfg>] -P install.cmake
# Installs skipstep into a freshly emptied prefix, so the install-tree consumer never sees stale files.
foreach(_var BUILD_DIR PREFIX)
  if(NOT ${_var})
    message(FATAL_ERROR "install.cmake: ${_var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
set(_config_args "")
if(CONFIG)
  set(_config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${_config_args}
                RESULT_VARIABLE _result)
if(NOT _result EQUAL 0)
  message(FATAL_ERROR "install.cmake: cmake --install failed (${_result})")
endif()
