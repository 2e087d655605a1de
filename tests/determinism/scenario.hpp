// The run both test_determinism and the skipstep_run_sampler helper perform: a 50-step stochastic DDIM sampler
// (η = 1, dynamic thresholding, v-prediction on a zero-terminal-SNR schedule) over a batch of float samples, with a
// smooth nonlinear predictor and philox_normal noise. The result must be the same bytes in every process.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "skipstep/skipstep.hpp"

namespace skipstep_determinism {

inline constexpr std::size_t batch = 4;
inline constexpr std::size_t per_sample = 1000;  // not a multiple of the 256-element noise block
inline constexpr std::size_t num_steps = 50;

/// A predictor that depends on every element of its sample (so batching mistakes would show) and on t.
inline void model(const std::vector<float>& x, std::int64_t t, std::span<float> out) {
  const std::size_t samples = x.size() / per_sample;
  for (std::size_t s = 0; s < samples; ++s) {
    double mean = 0.0;
    for (std::size_t k = 0; k < per_sample; ++k) mean += x[s * per_sample + k];
    mean /= static_cast<double>(per_sample);
    for (std::size_t k = 0; k < per_sample; ++k) {
      const std::size_t i = s * per_sample + k;
      out[i] = static_cast<float>(0.7 * std::tanh(x[i] - 0.5 * mean) + 0.2 * std::sin(0.01 * static_cast<double>(t) + k));
    }
  }
}

inline skipstep::ddim_sampler make_sampler(std::size_t samples) {
  skipstep::sampler_options opt;
  opt.prediction = skipstep::prediction_type::v;
  opt.processing = skipstep::x0_processing::dynamic_threshold(0.95, 1.5);
  opt.num_samples = samples;
  return skipstep::ddim_sampler(skipstep::noise_schedule<>::scaled_linear(1000).rescale_zero_terminal_snr(),
                                skipstep::timestep_schedule::trailing(1000, num_steps), skipstep::eta{1.0}, opt);
}

/// x_T for sample b: its own stream of the initial-noise generator (step index 0 of seed + 1).
inline std::vector<float> initial(std::uint64_t seed, std::size_t first_sample, std::size_t samples) {
  std::vector<float> x(samples * per_sample);
  const skipstep::philox_normal init(seed + 1);
  for (std::size_t s = 0; s < samples; ++s)
    init.fill(std::span<float>(x).subspan(s * per_sample, per_sample), first_sample + s, 0);
  return x;
}

/// The whole batch, noise from philox_normal(seed).
inline std::vector<float> run_batch(std::uint64_t seed) {
  auto x = initial(seed, 0, batch);
  make_sampler(batch).sample(model, x, skipstep::philox_normal(seed));
  return x;
}

}  // namespace skipstep_determinism
