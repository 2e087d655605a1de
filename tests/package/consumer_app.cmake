# The consumer app shared by the find_package and add_subdirectory projects: links skipstep::skipstep (and
# skipstep::eigen when the package provides it) and checks the version it was built against.
add_executable(app "${CMAKE_CURRENT_LIST_DIR}/main.cpp")
target_link_libraries(app PRIVATE skipstep::skipstep)
if(TARGET skipstep::eigen)
  target_link_libraries(app PRIVATE skipstep::eigen)
  target_compile_definitions(app PRIVATE CONSUMER_HAS_EIGEN=1)
endif()
if(SKIPSTEP_EXPECTED_VERSION)
  target_compile_definitions(app PRIVATE "SKIPSTEP_EXPECTED_VERSION=\"${SKIPSTEP_EXPECTED_VERSION}\"")
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(app PRIVATE -Wall -Wextra -Wpedantic)
endif()
