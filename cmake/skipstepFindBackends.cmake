# Finds skipstep's optional backend libraries. Shared by the top-level CMakeLists.txt (build tree and
# add_subdirectory users) and by the installed skipstepConfig.cmake (find_package users).
#
#   skipstep_find_backends(EIGEN <AUTO|ON|OFF> XTENSOR <AUTO|ON|OFF>)
#
# Each mode is the value SKIPSTEP_WITH_EIGEN / SKIPSTEP_WITH_XTENSOR had when skipstep was configured (the installed
# config records it), so a package manager decides which backend targets exist, not whatever happens to be on the
# consumer's machine:
#   AUTO  look for the library quietly, use it if found (a plain `cmake --install`: the old behaviour)
#   ON    look for it; the caller reports an error if it is missing (vcpkg feature / Conan option enabled)
#   OFF   never look: the backend target is not defined, even if the library is installed
#
# After the call:
#   SKIPSTEP_HAVE_EIGEN    TRUE if the target Eigen3::Eigen exists (Eigen 3.4 or 5.x) and the mode is not OFF
#   SKIPSTEP_HAVE_XTENSOR  TRUE if the target xtensor exists (xtensor's exported target has no namespace) and the
#                          mode is not OFF
# A target that already exists (the parent project found the library first) is used as is. In AUTO mode,
# CMAKE_DISABLE_FIND_PACKAGE_Eigen3 / CMAKE_DISABLE_FIND_PACKAGE_xtensor still turn a backend off.

# skipstep_backend_mode(<out var> <value> <option name>): AUTO, ON or OFF from AUTO or any CMake boolean.
function(skipstep_backend_mode out value option)
  string(TOUPPER "${value}" _upper)
  if(_upper STREQUAL "AUTO" OR _upper STREQUAL "")
    set(${out} AUTO PARENT_SCOPE)
  elseif(_upper MATCHES "^(ON|YES|TRUE|Y|1)$")
    set(${out} ON PARENT_SCOPE)
  elseif(_upper MATCHES "^(OFF|NO|FALSE|N|0)$")
    set(${out} OFF PARENT_SCOPE)
  else()
    message(FATAL_ERROR "skipstep: ${option} must be AUTO, ON or OFF (got '${value}')")
  endif()
endfunction()

macro(skipstep_find_backends)
  cmake_parse_arguments(_skipstep_fb "" "EIGEN;XTENSOR" "" ${ARGN})
  skipstep_backend_mode(_skipstep_fb_EIGEN "${_skipstep_fb_EIGEN}" SKIPSTEP_WITH_EIGEN)
  skipstep_backend_mode(_skipstep_fb_XTENSOR "${_skipstep_fb_XTENSOR}" SKIPSTEP_WITH_XTENSOR)

  set(SKIPSTEP_HAVE_EIGEN FALSE)
  if(NOT _skipstep_fb_EIGEN STREQUAL "OFF")
    if(NOT TARGET Eigen3::Eigen)
      # Eigen 5's version file rejects a plain `3.4` request and Eigen 3.4's may not understand ranges: try both.
      find_package(Eigen3 3.4...<6 QUIET NO_MODULE)
      if(NOT Eigen3_FOUND)
        find_package(Eigen3 3.4 QUIET NO_MODULE)
      endif()
    endif()
    if(TARGET Eigen3::Eigen)
      set(SKIPSTEP_HAVE_EIGEN TRUE)
    endif()
  endif()

  set(SKIPSTEP_HAVE_XTENSOR FALSE)
  if(NOT _skipstep_fb_XTENSOR STREQUAL "OFF")
    if(NOT TARGET xtensor)
      find_package(xtensor QUIET)
    endif()
    if(TARGET xtensor)
      set(SKIPSTEP_HAVE_XTENSOR TRUE)
    endif()
  endif()
endmacro()
