// Eigen quick start: 50 deterministic DDIM steps from Gaussian noise to a sample, with Eigen vectors as tensors.
//
// The "network" is a stand-in you replace with yours: it is the exact noise predictor of a toy data set whose
// every sample equals `target`, eps(x, t) = (x - sqrt(a_t) * target) / sqrt(1 - a_t) with a_t = alpha_cumprod(t).
// With an exact predictor DDIM lands on the data, so the program checks that x ends on `target`.
#include <skipstep/backend/eigen.hpp>  // Eigen::Matrix / Array / Map become skipstep tensors
#include <skipstep/skipstep.hpp>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstdio>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);            // DDPM's betas, T = 1000
  const auto timesteps = skipstep::timestep_schedule::trailing(1000, 50);    // evaluate the model 50 times
  const skipstep::ddim_sampler sampler(schedule, timesteps, skipstep::eta{0.0});  // eta = 0: deterministic

  const Eigen::VectorXf target = Eigen::VectorXf::LinSpaced(8, -1.0f, 1.0f);
  auto network = [&](const Eigen::VectorXf& x, std::int64_t t) -> Eigen::VectorXf {
    const auto a = static_cast<float>(schedule.alpha_cumprod(static_cast<std::size_t>(t)));
    return (x - std::sqrt(a) * target) / std::sqrt(1.0f - a);
  };

  Eigen::VectorXf x(8);  // x_T ~ N(0, I), reproducible: element j of (seed 42, stream 0, step 0)
  skipstep::philox_normal(42).fill(skipstep::elements(x), /*stream=*/0, /*step=*/0);
  sampler.sample(network, x);

  const float error = (x - target).cwiseAbs().maxCoeff();
  std::printf("eigen_quickstart: %zu DDIM steps, max |x - target| = %.2g\n", sampler.num_steps(), error);
  return error < 1e-4f ? 0 : 1;
}
