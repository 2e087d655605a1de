// Conan test_package, skipstep::xtensor: the same 10-step DDIM run as main.cpp on an xt::xarray (a point mass at
// 0.5 with its exact noise predictor, so DDIM lands on 0.5).
#include <skipstep/backend/xtensor.hpp>
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::leading(1000, 10));
  xt::xarray<double> x = {1.0, -2.0, 0.25};
  sampler.sample([&](const xt::xarray<double>& xt_, std::int64_t t) -> xt::xarray<double> {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    return (xt_ - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
  }, x);
  double err = 0.0;
  for (double v : x) err = std::fmax(err, std::abs(v - 0.5));
  if (err > 1e-9) {
    std::printf("test_package_xtensor: FAILED: error %.3g\n", err);
    return 1;
  }
  std::printf("test_package_xtensor: skipstep::xtensor (xtensor %d.%d.%d) sampled onto 0.5: OK\n",
              XTENSOR_VERSION_MAJOR, XTENSOR_VERSION_MINOR, XTENSOR_VERSION_PATCH);
  return 0;
}
