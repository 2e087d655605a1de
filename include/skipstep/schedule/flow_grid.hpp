/// @file
/// Rectified-flow grids (Liu et al. 2023; Esser et al. 2024, "Scaling Rectified Flow Transformers", SD3): the path
/// x_s = (1 − s)·x0 + s·ε with s ∈ [0, 1], so α = 1 − s and σ = s, and the network predicts the velocity
/// u = ε − x0. The levels s_i and model times t_i = s_i·T as diffusers' FlowMatchEulerDiscreteScheduler builds
/// them: a static shift s' = k·s/(1 + (k − 1)·s) (SD3: k = 3), or a resolution-dependent dynamic shift
/// s' = e^μ/(e^μ + (1/s − 1)) (exponential, Flux) or μ/(μ + (1/s − 1)) (linear), a terminal stretch, Karras /
/// exponential / Beta re-spacing, and inverted levels.
#pragma once

#include <cmath>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/schedule/noise_schedule.hpp"
#include "skipstep/schedule/sigma_grid.hpp"

namespace skipstep {

/// The dynamic time shift's form (diffusers `time_shift_type`).
enum class time_shift { exponential, linear };

/// Options of a flow grid, with diffusers' FlowMatchEulerDiscreteScheduler defaults.
struct flow_grid_options {
  std::size_t num_train_timesteps = 1000;  ///< T: model times are s·T.
  double shift = 1.0;                      ///< k of the static shift (used without dynamic shifting).
  bool use_dynamic_shifting = false;       ///< shift by μ instead (μ must then be given).
  std::optional<double> mu;                ///< μ of the dynamic shift (Flux: from the image sequence length).
  time_shift shift_type = time_shift::exponential;  ///< exponential (e^μ) or linear (μ) dynamic shift.
  std::optional<double> shift_terminal;    ///< stretch so that the last level is this value (LTX-Video).
  sigma_spacing levels = sigma_spacing::interpolated;  ///< interpolated = no re-spacing; karras/exponential/beta.
  bool invert = false;                     ///< levels 1 − s (from the data side up to noise), final level 1.
  double rho = 7.0;                        ///< Karras' ρ.
  double beta_a = 0.6;                     ///< Beta spacing's α.
  double beta_b = 0.6;                     ///< Beta spacing's β.
};

/// The static shift s' = k·s/(1 + (k − 1)·s) (Esser et al. 2024, §5.3.2; diffusers FlowMatchEulerDiscreteScheduler).
[[nodiscard]] inline double shift_level(double s, double k) noexcept { return k * s / (1.0 + (k - 1.0) * s); }

/// The dynamic shift of level s by μ: exponential e^μ/(e^μ + (1/s − 1)), linear μ/(μ + (1/s − 1)) (diffusers
/// `time_shift` with its σ = 1).
[[nodiscard]] inline double dynamic_shift_level(double s, double mu, time_shift type) noexcept {
  const double m = type == time_shift::exponential ? std::exp(mu) : mu;
  return m / (m + (1.0 / s - 1.0));
}

namespace detail {

inline void check_flow_options(const char* fn, const flow_grid_options& o) {
  if (o.num_train_timesteps == 0) throw_invalid(fn, "options.num_train_timesteps", "must be >= 1", o.num_train_timesteps);
  if (!o.use_dynamic_shifting && (!(o.shift > 0.0) || !std::isfinite(o.shift)))
    throw_invalid(fn, "options.shift", "must be finite and > 0", o.shift);
  if (o.use_dynamic_shifting) {
    if (!o.mu) throw_invalid(fn, "options.mu", "must be given with use_dynamic_shifting", "none");
    if (!std::isfinite(*o.mu) || (o.shift_type == time_shift::linear && !(*o.mu > 0.0)))
      throw_invalid(fn, "options.mu", "must be finite (and > 0 for the linear shift)", *o.mu);
  }
  if (o.shift_terminal && (!(*o.shift_terminal > 0.0 && *o.shift_terminal < 1.0)))
    throw_invalid(fn, "options.shift_terminal", "must be in (0, 1)", *o.shift_terminal);
}

/// Shift, terminal stretch and re-spacing of unshifted levels, in diffusers' order; then the final level.
inline sigma_grid finish_flow_grid(const char* fn, std::vector<double> s, const flow_grid_options& o) {
  for (double& v : s) v = o.use_dynamic_shifting ? dynamic_shift_level(v, *o.mu, o.shift_type) : shift_level(v, o.shift);
  if (o.shift_terminal) {  // 1 − s stretched so that the last level becomes shift_terminal
    const double scale = (1.0 - s.back()) / (1.0 - *o.shift_terminal);
    for (double& v : s) v = 1.0 - (1.0 - v) / scale;
  }
  if (o.levels == sigma_spacing::log_linear)
    throw_invalid(fn, "options.levels", "log_linear is not a flow re-spacing (use karras, exponential or beta)",
                  static_cast<int>(o.levels));
  if (o.levels != sigma_spacing::interpolated) {
    sigma_grid_options ramp;
    ramp.levels = o.levels;
    ramp.rho = o.rho;
    ramp.beta_a = o.beta_a;
    ramp.beta_b = o.beta_b;
    s = spaced_levels(fn, ramp, s.back(), s.front(), s.size());
  }
  sigma_grid g;
  const double big_t = static_cast<double>(o.num_train_timesteps);
  if (o.invert)
    for (double& v : s) v = 1.0 - v;
  g.timesteps.resize(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) g.timesteps[i] = s[i] * big_t;
  g.sigmas = std::move(s);
  g.sigmas.push_back(o.invert ? 1.0 : 0.0);
  for (std::size_t i = 0; i < g.sigmas.size(); ++i)
    if (!(g.sigmas[i] >= 0.0 && g.sigmas[i] <= 1.0))
      throw_invalid(fn, "level " + std::to_string(i), "must be in [0, 1] (check shift, mu and shift_terminal)",
                    g.sigmas[i]);
  return g;
}

}  // namespace detail

/// N flow levels as diffusers' FlowMatchEulerDiscreteScheduler.set_timesteps(N) builds them: the model times
/// linspace(T·s_max, T·s_min, N) of the training range (s_max = 1 and s_min = 1/T, each shifted once already unless
/// shifting is dynamic), divided by T, then shifted (again), stretched, re-spaced; the final level is 0 (or 1 when
/// inverted). The double shift of the terminal level is diffusers' and kept (SD3, k = 3: the last level before 0 is
/// shift(shift(1/T)) = 0.00893), because models were tuned with it.
[[nodiscard]] inline sigma_grid make_flow_grid(std::size_t num_steps, const flow_grid_options& options = {}) {
  constexpr const char* fn = "make_flow_grid";
  detail::check_flow_options(fn, options);
  if (num_steps == 0) detail::throw_invalid(fn, "num_steps", "must be >= 1", num_steps);
  const double big_t = static_cast<double>(options.num_train_timesteps);
  const auto init = [&](double s) { return options.use_dynamic_shifting ? s : shift_level(s, options.shift); };
  const double t_max = init(1.0) * big_t, t_min = init(1.0 / big_t) * big_t;
  std::vector<double> s = detail::numpy_linspace(t_max, t_min, num_steps);
  for (double& v : s) v /= big_t;
  return detail::finish_flow_grid(fn, std::move(s), options);
}

/// A flow grid from the caller's unshifted levels (diffusers `set_timesteps(sigmas=...)`, Flux pipelines pass
/// linspace(1, 1/N, N)); they must lie in (0, 1] and decrease. Shift, stretch and re-spacing apply as above.
[[nodiscard]] inline sigma_grid flow_grid_from_levels(std::span<const double> levels,
                                                      const flow_grid_options& options = {}) {
  constexpr const char* fn = "flow_grid_from_levels";
  detail::check_flow_options(fn, options);
  if (levels.empty()) detail::throw_invalid(fn, "levels.size()", "must be >= 1", levels.size());
  for (std::size_t i = 0; i < levels.size(); ++i) {
    if (!(levels[i] > 0.0 && levels[i] <= 1.0))
      detail::throw_invalid(fn, "levels[" + std::to_string(i) + "]", "must be in (0, 1]", levels[i]);
    if (i > 0 && !(levels[i] < levels[i - 1]))
      detail::throw_invalid(fn, "levels[" + std::to_string(i) + "]",
                            "must be below levels[" + std::to_string(i - 1) + "] = " + detail::format_value(levels[i - 1]),
                            levels[i]);
  }
  return detail::finish_flow_grid(fn, std::vector<double>(levels.begin(), levels.end()), options);
}

/// The flow levels of diffusers' multistep solvers with `use_flow_sigmas` (DPMSolverMultistep, UniPC; Wan 2.1): the
/// N largest of the shifted levels k·s/(1 + (k − 1)·s) at s = 1 − linspace(1, 1/T, N + 1), from the noisiest down,
/// model times ⌊s·T⌋ (diffusers casts them to int64), final level 0.
[[nodiscard]] inline sigma_grid make_multistep_flow_grid(std::size_t num_steps, double flow_shift,
                                                         std::size_t num_train_timesteps = 1000) {
  constexpr const char* fn = "make_multistep_flow_grid";
  if (num_steps == 0) detail::throw_invalid(fn, "num_steps", "must be >= 1", num_steps);
  if (num_train_timesteps == 0) detail::throw_invalid(fn, "num_train_timesteps", "must be >= 1", num_train_timesteps);
  if (!(flow_shift > 0.0) || !std::isfinite(flow_shift))
    detail::throw_invalid(fn, "flow_shift", "must be finite and > 0", flow_shift);
  const double big_t = static_cast<double>(num_train_timesteps);
  const auto alphas = detail::numpy_linspace(1.0, 1.0 / big_t, num_steps + 1);
  sigma_grid g;
  for (std::size_t i = 0; i < num_steps; ++i) {
    const double s = shift_level(1.0 - alphas[num_steps - i], flow_shift);
    g.sigmas.push_back(s);
    g.timesteps.push_back(std::floor(s * big_t));
  }
  g.sigmas.push_back(0.0);
  return g;
}

}  // namespace skipstep
