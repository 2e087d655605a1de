# Conan build module (conanfile.py: cmake_build_modules), included by the skipstep-config.cmake that CMakeDeps
# generates, after the component targets exist. CMakeDeps does not check find_package(skipstep COMPONENTS ...), so
# a backend the package was created without would only fail at link time; this is the check skipstepConfig.cmake
# makes, at find time. A component exists if its target does (the recipe defines one per enabled option).
foreach(_skipstep_comp IN LISTS skipstep_FIND_COMPONENTS)
  if(TARGET skipstep::${_skipstep_comp} AND _skipstep_comp MATCHES "^(eigen|xtensor)$")
    set(skipstep_${_skipstep_comp}_FOUND TRUE)
    continue()
  endif()
  set(skipstep_${_skipstep_comp}_FOUND FALSE)
  if(_skipstep_comp MATCHES "^(eigen|xtensor)$")
    string(CONCAT _skipstep_why "skipstep was required with ${_skipstep_comp}=False "
                                "(conan: -o \"skipstep/*:${_skipstep_comp}=True\")")
  else()
    set(_skipstep_why "unknown component (skipstep has eigen and xtensor)")
  endif()
  if(skipstep_FIND_REQUIRED_${_skipstep_comp})
    set(skipstep_FOUND FALSE)
    string(APPEND skipstep_NOT_FOUND_MESSAGE
           "skipstep component '${_skipstep_comp}' is not available: ${_skipstep_why}. ")
  endif()
endforeach()
unset(_skipstep_comp)
unset(_skipstep_why)
