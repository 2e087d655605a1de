// A LibTorch consumer of an exported skipstep: twenty deterministic DDIM steps on a torch::Tensor batch with a
// callable on tensors whose data is one point, so the result is checkable (DDIM with an exact ε lands on it).
#include <skipstep/backend/libtorch.hpp>
#include <skipstep/skipstep.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const auto schedule = skipstep::noise_schedule<>::linear(1000);
  skipstep::sampler_options options;
  options.num_samples = 2;
  const skipstep::ddim_sampler sampler(schedule, skipstep::timestep_schedule::trailing(1000, 20), skipstep::eta{0.0},
                                       options);
  const torch::Tensor target = torch::linspace(-1.0, 1.0, 8).reshape({2, 1, 2, 2});
  std::vector<double> levels(schedule.size());
  for (std::size_t t = 0; t < levels.size(); ++t) levels[t] = schedule.alpha_cumprod(t);
  const torch::Tensor abar = torch::tensor(levels);  // ᾱ_t, indexed by the int64 timesteps torch_predictor passes
  auto exact_eps = [&](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor a = abar.index_select(0, t).to(torch::kFloat32).view({-1, 1, 1, 1});
    return (x - a.sqrt() * target) / (1.0 - a).sqrt();
  };
  skipstep::torch_predictor eps(exact_eps, {2, 1, 2, 2});
  torch::Tensor x = torch::randn({2, 1, 2, 2}, torch::TensorOptions().dtype(torch::kFloat32));
  sampler.sample(eps, x);
  const float error = (x - target).abs().max().item<float>();
  std::printf("libtorch consumer: %zu DDIM steps on a torch::Tensor, max |x - target| = %.2g\n", sampler.num_steps(),
              error);
  return std::isfinite(error) && error < 1e-4f ? 0 : 1;
}
