// The consumer app of the package tests (tests/package/CMakeLists.txt): built against skipstep found through
// find_package (build tree, install prefix) or add_subdirectory, then run by ctest.
//
// TODO(lead): extend it to run a tiny sampler through the public API once <skipstep/skipstep.hpp> is
// complete, so the test proves that an installed skipstep actually samples, not only that its headers are
// found.
#include <skipstep/version.hpp>

#if __has_include(<skipstep/skipstep.hpp>)
#include <skipstep/skipstep.hpp>
#endif

#if defined(CONSUMER_HAS_EIGEN)
#include <Eigen/Core>
#if __has_include(<skipstep/backend/eigen.hpp>)
#include <skipstep/backend/eigen.hpp>
#endif
#endif

#include <cstdio>
#include <cstring>

int main() {
  std::printf("consumer: skipstep %s (SKIPSTEP_VERSION=%d)\n", skipstep::version_string, SKIPSTEP_VERSION);
#if defined(SKIPSTEP_EXPECTED_VERSION)
  if (std::strcmp(skipstep::version_string, SKIPSTEP_EXPECTED_VERSION) != 0) {
    std::printf("consumer: FAILED: header version %s != CMake package version %s\n", skipstep::version_string,
                SKIPSTEP_EXPECTED_VERSION);
    return 1;
  }
#endif
  static_assert(SKIPSTEP_VERSION ==
                SKIPSTEP_VERSION_MAJOR * 10000 + SKIPSTEP_VERSION_MINOR * 100 + SKIPSTEP_VERSION_PATCH);
#if defined(CONSUMER_HAS_EIGEN)
  const Eigen::VectorXd x = Eigen::VectorXd::LinSpaced(4, 0.0, 3.0);
  if (x.sum() != 6.0) {
    std::printf("consumer: FAILED: Eigen through skipstep::eigen gives sum %g, expected 6\n", x.sum());
    return 1;
  }
  std::printf("consumer: skipstep::eigen linked\n");
#endif
  std::printf("consumer: OK\n");
  return 0;
}
