// The consumer app of the package tests (tests/package/CMakeLists.txt): built against skipstep found through
// find_package (build tree, install prefix) or add_subdirectory, then run by ctest. It samples through the public
// API, so the test proves an installed skipstep works, not only that its headers are found.
#include <skipstep/skipstep.hpp>
#include <skipstep/version.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

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
  // 20 deterministic DDIM steps with the exact noise predictor of data that is the single point `target`: the
  // sampler must land on it.
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::trailing(1000, 20));
  const double target = 0.75;
  auto network = [&](const std::vector<double>& x, std::int64_t t) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    std::vector<double> eps(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) eps[i] = (x[i] - std::sqrt(a) * target) / std::sqrt(1.0 - a);
    return eps;
  };
  std::vector<double> sample(8);
  skipstep::philox_normal(3).fill(std::span<double>(sample), 0, 0);
  sampler.sample(network, sample);
  for (double v : sample)
    if (std::abs(v - target) > 1e-9) {
      std::printf("consumer: FAILED: DDIM sample %g, expected %g\n", v, target);
      return 1;
    }
  std::printf("consumer: 20 DDIM steps landed on the target\n");
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
