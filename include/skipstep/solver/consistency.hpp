/// @file
/// Consistency-model samplers on a VP schedule: LCM (Luo et al. 2023, "Latent Consistency Models"; diffusers
/// LCMScheduler) and TCD (Zheng et al. 2024, "Trajectory Consistency Distillation"; diffusers TCDScheduler), as one
/// affine row per step of the engine. A distilled network predicts x̂0 (through the usual prediction types); the
/// boundary condition mixes it with the sample, and the next level is reached by re-noising with fresh noise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/sampler.hpp"

namespace skipstep {

/// The model times of LCM and TCD (diffusers LCMScheduler/TCDScheduler.set_timesteps): the distillation's skipping
/// schedule t_j = j·⌊T/original_steps⌋ − 1 for j = 1..⌊original_steps·strength⌋, reversed, then N of them at the
/// indices ⌊k·L/N⌋, k = 0..N−1 (L the schedule's length). Requires L ≥ N (diffusers raises ValueError).
[[nodiscard]] inline std::vector<std::int64_t> consistency_timesteps(std::size_t num_train_timesteps,
                                                                     std::size_t num_steps,
                                                                     std::size_t original_steps = 50,
                                                                     double strength = 1.0) {
  constexpr const char* fn = "consistency_timesteps";
  if (original_steps == 0 || original_steps > num_train_timesteps)
    detail::throw_invalid(fn, "original_steps", "must be in [1, T = " + std::to_string(num_train_timesteps) + "]",
                          original_steps);
  if (!(strength > 0.0 && strength <= 1.0)) detail::throw_invalid(fn, "strength", "must be in (0, 1]", strength);
  const auto length = static_cast<std::size_t>(static_cast<double>(original_steps) * strength);
  if (num_steps == 0 || num_steps > length)
    detail::throw_invalid(fn, "num_steps",
                          "must be in [1, original_steps x strength = " + std::to_string(length) + "]", num_steps);
  const std::size_t k = num_train_timesteps / original_steps;
  std::vector<std::int64_t> t(num_steps);
  for (std::size_t i = 0; i < num_steps; ++i) {
    const auto index = static_cast<std::size_t>(std::floor(static_cast<double>(i) * static_cast<double>(length) /
                                                           static_cast<double>(num_steps)));
    t[i] = static_cast<std::int64_t>((length - index) * k) - 1;
  }
  return t;
}

namespace detail {

/// LCM's boundary-condition scalings at timestep t (Song et al. 2023, consistency models, with σ_data = ½;
/// diffusers get_scalings_for_boundary_condition_discrete): s = t·timestep_scaling, c_skip = ¼/(s² + ¼),
/// c_out = s/√(s² + ¼). With `float32` they are evaluated in float32 as diffusers does (README rule 13).
inline std::pair<double, double> lcm_scalings(std::int64_t t, double timestep_scaling, bool float32) {
  if (float32) {
    const float s = static_cast<float>(t) * static_cast<float>(timestep_scaling);
    const float q = s * s + 0.25f;
    return {static_cast<double>(0.25f / q), static_cast<double>(s / std::sqrt(q))};
  }
  const double s = static_cast<double>(t) * timestep_scaling;
  return {0.25 / (s * s + 0.25), s / std::sqrt(s * s + 0.25)};
}

inline std::vector<step_transition> consistency_transitions(std::span<const std::int64_t> timesteps) {
  std::vector<step_transition> out(timesteps.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].timestep = out[i].source_timestep = timesteps[i];
    out[i].target_timestep = i + 1 < out.size() ? timesteps[i + 1] : -1;
  }
  return out;
}

template <class Real>
void check_consistency_timesteps(const char* fn, const noise_schedule<Real>& schedule,
                                 std::span<const std::int64_t> timesteps) {
  if (timesteps.empty()) throw_invalid(fn, "timesteps.size()", "must be >= 1", timesteps.size());
  for (std::size_t i = 0; i < timesteps.size(); ++i) {
    if (timesteps[i] < 0 || static_cast<std::size_t>(timesteps[i]) >= schedule.num_train_timesteps())
      throw_invalid(fn, "timesteps[" + std::to_string(i) + "]",
                    "must be in [0, T = " + std::to_string(schedule.num_train_timesteps()) + ")", timesteps[i]);
    if (i > 0 && timesteps[i] >= timesteps[i - 1])
      throw_invalid(fn, "timesteps[" + std::to_string(i) + "]",
                    "must be below timesteps[" + std::to_string(i - 1) + "] = " + std::to_string(timesteps[i - 1]),
                    timesteps[i]);
  }
}

}  // namespace detail

/// LCM multistep sampling (Luo et al. 2023, Algorithm 1; diffusers LCMScheduler.step): at step i with ā = ā[t_i]
/// and the next listed timestep t_{i+1},
///   denoised = c_out(t_i)·P(x̂0) + c_skip(t_i)·x,   x_{i+1} = √ā[t_{i+1}]·denoised + √(1 − ā[t_{i+1}])·z,
/// and the last step returns `denoised` (no noise). P is the x̂0 processing (clip / thresholding). With the diffusers
/// convention the boundary scalings are float32, as diffusers computes them.
class lcm_sampler : public sampler {
 public:
  /// Builds the rows; `timesteps` from consistency_timesteps (or your own strictly decreasing list).
  template <class Real>
  lcm_sampler(const noise_schedule<Real>& schedule, std::span<const std::int64_t> timesteps,
              double timestep_scaling = 10.0, sampler_options options = {})
      : sampler(build(schedule, timesteps, timestep_scaling, options), options) {}

 private:
  template <class Real>
  static plan build(const noise_schedule<Real>& schedule, std::span<const std::int64_t> timesteps,
                    double timestep_scaling, const sampler_options& options) {
    constexpr const char* fn = "lcm_sampler";
    detail::check_consistency_timesteps(fn, schedule, timesteps);
    if (!(timestep_scaling > 0.0) || !std::isfinite(timestep_scaling))
      detail::throw_invalid(fn, "timestep_scaling", "must be finite and > 0", timestep_scaling);
    if (options.processing.use_clipped_model_output)
      detail::throw_invalid(fn, "options.processing.use_clipped_model_output", "is not used by LCM", true);
    const std::size_t n = timesteps.size();
    plan p{fn, detail::consistency_transitions(timesteps), std::vector<affine_step>(n)};
    for (std::size_t i = 0; i < n; ++i) {
      const auto t = static_cast<std::size_t>(timesteps[i]);
      const double a_t = schedule.alpha_cumprod(t);
      const double a_next = i + 1 < n ? schedule.alpha_cumprod(static_cast<std::size_t>(timesteps[i + 1])) : 1.0;
      const auto [c_skip, c_out] =
          detail::lcm_scalings(timesteps[i], timestep_scaling, options.convention == step_convention::diffusers);
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(detail::step_label(fn, i, p.transitions[i]), [&] {
        return detail::prediction_coefficients_for(fn, "alpha_cumprod", options.prediction, a_t);
      });
      const double scale = std::sqrt(a_next);
      c.x0_weight = scale * c_out;
      c.sample_weight = scale * c_skip;
      c.noise_std = i + 1 < n ? std::sqrt(1.0 - a_next) : 0.0;
      p.transitions[i].alpha_cumprod_from = a_t;
      p.transitions[i].alpha_cumprod_to = a_next;
      p.transitions[i].noise_allowed = i + 1 < n;
    }
    return p;
  }
};

/// TCD sampling (Zheng et al. 2024, strategic stochastic sampling; diffusers TCDScheduler.step) with γ = eta: at
/// step i, s = ⌊(1 − γ)·t_{i+1}⌋ (t_N = 0; computed in float32 as diffusers does), x̂0 and ε̂ from the prediction
/// at ā[t_i], then
///   x_s = √ā_s·P(x̂0) + √(1 − ā_s)·ε̂,   x_{i+1} = √(ā_{t_{i+1}}/ā_s)·x_s + √(1 − ā_{t_{i+1}}/ā_s)·z,
/// no noise at the last step (which lands on ā[0], diffusers' prev_timestep 0) or for γ = 0.
class tcd_sampler : public sampler {
 public:
  /// Builds the rows; γ = eta in [0, 1].
  template <class Real>
  tcd_sampler(const noise_schedule<Real>& schedule, std::span<const std::int64_t> timesteps, double eta = 0.3,
              sampler_options options = {})
      : sampler(build(schedule, timesteps, eta, options), options) {}

 private:
  template <class Real>
  static plan build(const noise_schedule<Real>& schedule, std::span<const std::int64_t> timesteps, double eta,
                    const sampler_options& options) {
    constexpr const char* fn = "tcd_sampler";
    detail::check_consistency_timesteps(fn, schedule, timesteps);
    if (!(eta >= 0.0 && eta <= 1.0)) detail::throw_invalid(fn, "eta", "must be in [0, 1]", eta);
    const std::size_t n = timesteps.size();
    plan p{fn, detail::consistency_transitions(timesteps), std::vector<affine_step>(n)};
    for (std::size_t i = 0; i < n; ++i) {
      const double a_t = schedule.alpha_cumprod(static_cast<std::size_t>(timesteps[i]));
      const std::int64_t prev_t = i + 1 < n ? timesteps[i + 1] : 0;
      const float product = static_cast<float>(1.0 - eta) * static_cast<float>(prev_t);
      const auto t_s = static_cast<std::size_t>(std::floor(product));
      const double a_prev = schedule.alpha_cumprod(static_cast<std::size_t>(prev_t));
      const double a_s = schedule.alpha_cumprod(t_s);
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(detail::step_label(fn, i, p.transitions[i]), [&] {
        return detail::prediction_coefficients_for(fn, "alpha_cumprod", options.prediction, a_t);
      });
      const bool noisy = eta > 0.0 && i + 1 < n;
      const double keep = noisy ? std::sqrt(a_prev / a_s) : 1.0;
      c.x0_weight = keep * std::sqrt(a_s);
      c.eps_weight = keep * std::sqrt(1.0 - a_s);
      c.noise_std = noisy ? std::sqrt(std::max(0.0, 1.0 - a_prev / a_s)) : 0.0;
      if (options.processing.use_clipped_model_output) {
        c.reeps_from_sample = 1.0 / std::sqrt(1.0 - a_t);
        c.reeps_from_x0 = -std::sqrt(a_t) / std::sqrt(1.0 - a_t);
      }
      p.transitions[i].alpha_cumprod_from = a_t;
      p.transitions[i].alpha_cumprod_to = noisy ? a_prev : a_s;
      p.transitions[i].noise_allowed = noisy;
    }
    return p;
  }
};

}  // namespace skipstep
