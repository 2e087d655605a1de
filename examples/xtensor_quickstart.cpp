// xtensor quick start: ancestral DDPM sampling (fresh noise at every step) of a 2x3 xt::xarray in 25 steps.
//
// The "network" is the exact noise predictor of a toy data set whose every sample equals `target`:
// eps(x, t) = (x - sqrt(a_t) * target) / sqrt(1 - a_t). Whatever noise the steps add, the last DDPM step lands
// on the predicted clean sample, so x must end on `target`; the program checks it.
#include <skipstep/backend/xtensor.hpp>  // xt::xarray / xt::xtensor / xt::adapt become skipstep tensors
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>

int main() {
  const auto schedule = skipstep::noise_schedule<>::scaled_linear(1000);  // Stable Diffusion's betas
  const auto timesteps = skipstep::timestep_schedule::leading(1000, 25);
  const skipstep::ddpm_sampler sampler(schedule, timesteps);             // variance_type::fixed_small

  const xt::xarray<double> target = {{0.5, -0.5, 0.0}, {1.0, 0.25, -1.0}};
  auto network = [&](const xt::xarray<double>& x, std::int64_t t) -> xt::xarray<double> {
    const double a = schedule.alpha_cumprod(static_cast<std::size_t>(t));
    return (x - std::sqrt(a) * target) / std::sqrt(1.0 - a);
  };

  auto x = xt::xarray<double>::from_shape({2, 3});
  skipstep::philox_normal(1).fill(skipstep::elements(x), 0, 0);  // x_T from seed 1
  sampler.sample(network, x, skipstep::philox_normal(2));        // step noise from seed 2: reproducible

  double error = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) error = std::fmax(error, std::abs(x.flat(i) - target.flat(i)));
  std::printf("xtensor_quickstart: %zu DDPM steps, max |x - target| = %.2g\n", sampler.num_steps(), error);
  return error < 1e-9 ? 0 : 1;
}
