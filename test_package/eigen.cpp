// Conan test_package, skipstep::eigen: the same 10-step DDIM run as main.cpp on an Eigen vector (a point mass at
// 0.5 with its exact noise predictor, so DDIM lands on 0.5).
#include <skipstep/backend/eigen.hpp>
#include <skipstep/skipstep.hpp>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstdio>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::leading(1000, 10));
  Eigen::VectorXd x(3);
  x << 1.0, -2.0, 0.25;
  sampler.sample([&](const Eigen::VectorXd& xt, std::int64_t t) -> Eigen::VectorXd {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    return (xt.array() - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
  }, x);
  const double err = (x.array() - 0.5).abs().maxCoeff();
  if (err > 1e-9) {
    std::printf("test_package_eigen: FAILED: error %.3g\n", err);
    return 1;
  }
  std::printf("test_package_eigen: skipstep::eigen (Eigen %d.%d.%d) sampled onto 0.5: OK\n", EIGEN_WORLD_VERSION,
              EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION);
  return 0;
}
