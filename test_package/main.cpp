// Conan test_package: a 10-step DDIM run through the installed headers. The data is a point mass at 0.5, whose
// exact noise predictor is eps(x, t) = (x - sqrt(a_t)*0.5)/sqrt(1 - a_t); DDIM then lands on 0.5 exactly.
#include <skipstep/skipstep.hpp>

// skipstep::skipstep is dependency-free: no backend's compile definitions may reach a core-only consumer.
#if defined(XTENSOR_USE_XSIMD) || defined(XTENSOR_USE_TBB) || defined(EIGEN_MPL2_ONLY)
#error "skipstep::skipstep carries a backend's compile definitions"
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::leading(1000, 10));
  std::vector<double> x = {1.0, -2.0, 0.25};
  sampler.sample([&](const std::vector<double>& xt, std::int64_t t) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    std::vector<double> eps(xt.size());
    for (std::size_t i = 0; i < xt.size(); ++i) eps[i] = (xt[i] - std::sqrt(a) * 0.5) / std::sqrt(1.0 - a);
    return eps;
  }, x);
  for (double v : x)
    if (std::abs(v - 0.5) > 1e-9) {
      std::printf("test_package: FAILED: got %.17g, expected 0.5\n", v);
      return 1;
    }
  std::printf("test_package: skipstep %s sampled 3 values onto 0.5: OK\n", skipstep::version_string);
  return 0;
}
