// Classifier-free guidance (Ho & Salimans 2022): m = m_uncond + scale * (m_cond - m_uncond), as a predictor that
// wraps two predictors (classifier_free_guidance) or one network called on the doubled batch [x; x]
// (batched_classifier_free_guidance, how diffusers pipelines run it).
//
// Check: with exact noise predictors of two point-mass data sets, "cond" (every sample = c) and "uncond"
// (every sample = u), the guided prediction is the exact predictor of the point mass u + scale * (c - u), because
// eps is affine in the data value. Deterministic DDIM must therefore land on u + scale * (c - u).
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <vector>

int main() {
  const auto schedule = skipstep::noise_schedule<>::scaled_linear(1000);
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::trailing(1000, 30));
  const double c = 0.8, u = 0.2, scale = 3.0, expected = u + scale * (c - u);

  // eps of the point mass at `value`, written into out (writing predictor form).
  auto point_mass_eps = [&](double value, std::span<const double> x, std::int64_t t, std::span<double> out) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = (x[i] - std::sqrt(a) * value) / std::sqrt(1.0 - a);
  };
  using vec = std::vector<double>;
  auto cond = [&](const vec& x, std::int64_t t, std::span<double> out) { point_mass_eps(c, x, t, out); };
  auto uncond = [&](const vec& x, std::int64_t t, std::span<double> out) { point_mass_eps(u, x, t, out); };

  // 1. Two predictors.
  skipstep::classifier_free_guidance guided(cond, uncond, scale);
  vec x1 = {0.3, -1.2, 2.0, 0.0};
  sampler.sample(guided, x1);

  // 2. One network on [x; x], writing [m_uncond; m_cond].
  auto network = [&](std::span<const double> x2, std::int64_t t, std::span<double> out2) {
    const std::size_t n = x2.size() / 2;
    point_mass_eps(u, x2.first(n), t, out2.first(n));
    point_mass_eps(c, x2.subspan(n), t, out2.subspan(n));
  };
  skipstep::batched_classifier_free_guidance batched(network, scale);
  vec x2 = {0.3, -1.2, 2.0, 0.0};
  sampler.sample(batched, x2);

  int failures = 0;
  for (std::size_t i = 0; i < x1.size(); ++i) {
    failures += std::abs(x1[i] - expected) < 1e-9 ? 0 : 1;
    failures += std::abs(x2[i] - expected) < 1e-9 ? 0 : 1;
  }
  std::printf("guidance: scale %.1f: sampled %.6f and %.6f (batched), expected u + s(c - u) = %.6f: %s\n", scale,
              x1[0], x2[0], expected, failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
