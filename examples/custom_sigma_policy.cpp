// Your own sigma policy: how much fresh noise each DDIM step keeps. A policy is any callable taking a
// skipstep::step_context (the two noise levels, the step index, ...) and returning sigma as a double, or a
// skipstep::sigma_choice to set the direction-term sigma and the std of the added noise separately.
//
// The policy below anneals eta from 1 (DDPM-like) at the first step to 0 (deterministic DDIM) at the last:
//   sigma_i = eta_i * sqrt((1 - a_s) / (1 - a_k)) * sqrt(1 - a_k / a_s),  eta_i = 1 - i / (N - 1)
// (Song et al. 2021, eq. 16). The program checks that the sampler's precomputed noise std matches this formula at
// every step, that an impossible policy is rejected, and that a run with an exact predictor ends on the data.
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <vector>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  const auto timesteps = skipstep::timestep_schedule::leading(1000, 10);

  auto annealed_eta = [](const skipstep::step_context& c) {
    const double eta = 1.0 - static_cast<double>(c.step_index) / static_cast<double>(c.num_steps - 1);
    return eta * skipstep::ddpm_sigma(c.alpha_cumprod_t, c.alpha_cumprod_prev);
  };
  const skipstep::ddim_sampler sampler(schedule, timesteps, annealed_eta);

  int failures = 0;
  for (std::size_t i = 0; i < sampler.num_steps(); ++i) {
    const auto& tr = sampler.transitions()[i];
    const double ak = tr.alpha_cumprod_from, as = tr.alpha_cumprod_to;
    const double eta = 1.0 - static_cast<double>(i) / static_cast<double>(sampler.num_steps() - 1);
    const double expected = tr.noise_allowed ? eta * std::sqrt((1 - as) / (1 - ak)) * std::sqrt(1 - ak / as) : 0.0;
    const double got = sampler.coefficients()[i].noise_std;
    if (std::abs(got - expected) > 1e-12 * (1.0 + expected)) {
      std::printf("custom_sigma_policy: FAILED: step %zu noise std %.17g, expected %.17g\n", i, got, expected);
      ++failures;
    }
  }

  // sigma^2 may not exceed 1 - a_s: a policy asking for more is rejected with std::domain_error naming the step.
  try {
    const skipstep::ddim_sampler bad(schedule, timesteps, [](const skipstep::step_context&) { return 2.0; });
    std::printf("custom_sigma_policy: FAILED: sigma = 2 was accepted\n");
    ++failures;
  } catch (const std::domain_error& e) {
    std::printf("custom_sigma_policy: rejected as expected: %s\n", e.what());
  }

  // Sample with it: exact predictor of data that is always 0.25 (see eigen_quickstart.cpp).
  std::vector<double> x(6);
  skipstep::philox_normal(5).fill(std::span<double>(x), 0, 0);
  sampler.sample([&](const std::vector<double>& xt, std::int64_t t) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    std::vector<double> eps(xt.size());
    for (std::size_t j = 0; j < xt.size(); ++j) eps[j] = (xt[j] - std::sqrt(a) * 0.25) / std::sqrt(1.0 - a);
    return eps;
  }, x, skipstep::philox_normal(6));
  for (double v : x) failures += std::abs(v - 0.25) < 1e-9 ? 0 : 1;

  std::printf("custom_sigma_policy: %zu steps, eta annealed 1 -> 0, %d failure(s)\n", sampler.num_steps(), failures);
  return failures == 0 ? 0 : 1;
}
