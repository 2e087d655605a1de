# ctest demo_dump_dir: `skipstep_demo --dump-npy DIR` without --out puts everything in DIR (the .npy files,
# results.json) and its last lines say so.   cmake -DDEMO=<skipstep_demo> -DDIR=<scratch dir> -P dump_dir_test.cmake
file(REMOVE_RECURSE "${DIR}")
execute_process(COMMAND "${DEMO}" --quick --n 100 --no-figure --dump-npy "${DIR}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "skipstep_demo exited ${rc}:\n${out}")
endif()
file(GLOB npy "${DIR}/*.npy")
list(LENGTH npy n)
if(NOT EXISTS "${DIR}/results.json" OR n EQUAL 0)
  message(FATAL_ERROR "expected results.json and the .npy files in ${DIR}; found ${n} .npy files")
endif()
get_filename_component(abs "${DIR}" ABSOLUTE)
if(NOT out MATCHES "wrote ${abs}/results.json" OR NOT out MATCHES "npy files \\(one per cell\\) to ${abs}")
  message(FATAL_ERROR "the run's last lines do not say that everything went to ${abs}:\n${out}")
endif()
message(STATUS "demo --dump-npy ${DIR}: results.json and ${n} .npy files there, as reported")
