// DDIM inversion round trip (Song et al. 2021 §4.3; Mokady et al. 2023): ddim_inverse_sampler runs the
// deterministic DDIM step upwards, data -> noise, over the same timesteps a ddim_sampler walks down; sampling the
// inverted latent back reproduces the input up to the discretization error of the two ODE solves.
//
// The data set is Gaussian, x0 ~ N(0, s^2 I), with the exact noise predictor
//   eps(x, t) = sqrt(1 - a) * x / (a * s^2 + 1 - a),  a = alpha_cumprod(t)
// (the posterior mean of eps given x_t). The program checks that the latent is noise-like (its scale grows to
// 1/s) and that the round-trip error shrinks as the number of steps grows (about like 1/N: DDIM is a first-order
// solver), below 1e-2 at 250 steps.
#include <skipstep/skipstep.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  const auto schedule = skipstep::noise_schedule<>::scaled_linear(1000);
  const double s = 0.5;
  auto network = [&](const std::vector<double>& x, std::int64_t t) {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    std::vector<double> eps(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) eps[i] = std::sqrt(1.0 - a) * x[i] / (a * s * s + 1.0 - a);
    return eps;
  };
  const std::vector<double> x0 = {0.4, -0.3, 0.7, -0.6, 0.1, 0.0};

  int failures = 0;
  double previous_error = INFINITY;
  for (std::size_t steps : {10, 50, 250}) {
    const auto timesteps = skipstep::timestep_schedule::leading(1000, steps);
    std::vector<double> x = x0;
    skipstep::ddim_inverse_sampler(schedule, timesteps).sample(network, x);  // x0 -> latent
    const double latent_scale = std::abs(x[2] / x0[2]);                      // x_T / x0 for this data: 1/s
    skipstep::ddim_sampler(schedule, timesteps).sample(network, x);          // latent -> x0
    double error = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) error = std::max(error, std::abs(x[i] - x0[i]));
    std::printf("inversion_round_trip: %3zu steps: latent/x0 = %.3f, max round-trip error = %.2e\n", steps,
                latent_scale, error);
    if (!(latent_scale > 1.5 && latent_scale < 2.5) || !(error < previous_error)) ++failures;
    previous_error = error;
  }
  if (!(previous_error < 1e-2)) ++failures;
  std::printf("inversion_round_trip: %s\n", failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
