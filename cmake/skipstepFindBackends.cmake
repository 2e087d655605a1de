# Finds skipstep's optional backend libraries, quietly. Shared by the top-level CMakeLists.txt (build tree and
# add_subdirectory users) and by the installed skipstepConfig.cmake (find_package users).
#
# After skipstep_find_backends():
#   SKIPSTEP_HAVE_EIGEN    TRUE if the target Eigen3::Eigen exists (Eigen 3.4 or 5.x)
#   SKIPSTEP_HAVE_XTENSOR  TRUE if the target xtensor exists (xtensor's exported target has no namespace)
# A target that already exists (the parent project found the library first) is used as is. To turn a backend off,
# set CMAKE_DISABLE_FIND_PACKAGE_Eigen3 / CMAKE_DISABLE_FIND_PACKAGE_xtensor.
macro(skipstep_find_backends)
  if(NOT TARGET Eigen3::Eigen)
    # Eigen 5's version file rejects a plain `3.4` request and Eigen 3.4's may not understand ranges: try both.
    find_package(Eigen3 3.4...<6 QUIET NO_MODULE)
    if(NOT Eigen3_FOUND)
      find_package(Eigen3 3.4 QUIET NO_MODULE)
    endif()
  endif()
  if(TARGET Eigen3::Eigen)
    set(SKIPSTEP_HAVE_EIGEN TRUE)
  else()
    set(SKIPSTEP_HAVE_EIGEN FALSE)
  endif()

  if(NOT TARGET xtensor)
    find_package(xtensor QUIET)
  endif()
  if(TARGET xtensor)
    set(SKIPSTEP_HAVE_XTENSOR TRUE)
  else()
    set(SKIPSTEP_HAVE_XTENSOR FALSE)
  endif()
endmacro()
