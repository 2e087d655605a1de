/// @file
/// The Euler family on σ grids (Karras et al. 2022, Algorithms 1–2; k-diffusion; diffusers EulerDiscrete,
/// EulerAncestralDiscrete, HeunDiscrete and FlowMatchEulerDiscrete), as rows of the engine. In σ-space
/// (x̃ = x/α, σ̃ = σ/α) the probability-flow ODE is dx̃/dσ̃ = ε̂, so Euler is x̃' = x̃ + (σ̃' − σ̃)·ε̂: in the state
/// x = α·x̃ that is x' = (α'/α)·x + α'·(σ̃' − σ̃)·ε̂, one affine row per step (it *is* DDIM with η = 0). On a flow
/// path (α = 1 − s, σ = s) the same step is x' = x + (s' − s)·û.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/path.hpp"
#include "skipstep/schedule/sigma_grid.hpp"

namespace skipstep {

/// Karras et al.'s "churn" (Algorithm 2; diffusers EulerDiscreteScheduler.step's s_churn, s_tmin, s_tmax, s_noise):
/// at levels s_tmin ≤ σ̃ ≤ s_tmax the step first raises the noise to σ̂ = σ̃·(1 + γ), γ = min(s_churn/N, √2 − 1),
/// by adding s_noise·√(σ̂² − σ̃²)·z, then takes the Euler step from σ̂. The default (s_churn = 0) is deterministic.
struct euler_churn {
  double s_churn = 0.0;                                   ///< total churn over the run.
  double s_tmin = 0.0;                                    ///< lowest level that churns.
  double s_tmax = std::numeric_limits<double>::infinity();  ///< highest level that churns.
  double s_noise = 1.0;                                   ///< scale of the added noise.
};

namespace detail {

/// The transitions of a VP σ grid: levels as ā = α² and the model time rounded for integer-time callers.
inline std::vector<step_transition> sigma_grid_transitions(const sigma_grid& grid, bool flow) {
  std::vector<step_transition> out(grid.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    const level a = flow ? level::flow(grid.sigmas[i]) : level::from_sigma_tilde(grid.sigmas[i]);
    const level b = flow ? level::flow(grid.sigmas[i + 1]) : level::from_sigma_tilde(grid.sigmas[i + 1]);
    step_transition& t = out[i];
    t.timestep = t.source_timestep = static_cast<std::int64_t>(std::nearbyint(grid.timesteps[i]));
    t.target_timestep = i + 1 < out.size() ? static_cast<std::int64_t>(std::nearbyint(grid.timesteps[i + 1])) : -1;
    t.alpha_cumprod_from = a.alpha * a.alpha;
    t.alpha_cumprod_to = b.alpha * b.alpha;
    t.noise_allowed = true;
  }
  return out;
}

inline void check_sigma_solver_options(const char* fn, const sampler_options& options) {
  if (options.convention != step_convention::consistent && options.convention != step_convention::diffusers)
    throw_invalid(fn, "options.convention", "is not a step_convention value", static_cast<int>(options.convention));
}

}  // namespace detail

/// Euler on a VP σ grid (Karras et al. 2022, Algorithm 2; diffusers EulerDiscreteScheduler): per step, with
/// σ̂ = σ̃·(1 + γ) (γ from `churn`, 0 by default) and x̂0, ε̂ the prediction at level σ̃,
///   x̃_c = x̃ + s_noise·√(σ̂² − σ̃²)·z,   x̃' = x̃_c + (σ̃' − σ̂)·d,   d = (x̃_c − x̂0(x̃_c))/σ̂,
/// where x̂0 of the churned sample uses σ̂ for ε prediction and σ̃ for v prediction, as diffusers does; in the state
/// x = α·x̃ this is x' = a·x + b·m + c·z with scalars computed here in double. The model sees the state x (diffusers'
/// scale_model_input) at the grid's model time. x̂0 processing is refused (diffusers' Euler has none).
class euler_sampler : public sampler {
 public:
  /// Builds the rows of `grid` (make_sigma_grid or your own, validated). Prediction: epsilon, v or sample.
  explicit euler_sampler(const sigma_grid& grid, sampler_options options = {}, euler_churn churn = {})
      : sampler(build(grid, options, churn), options) {}

 private:
  static plan build(const sigma_grid& grid, const sampler_options& options, const euler_churn& churn) {
    constexpr const char* fn = "euler_sampler";
    validate_sigma_grid(fn, grid);
    detail::check_sigma_solver_options(fn, options);
    if (!options.processing.is_identity())
      detail::throw_invalid(fn, "options.processing", "must be none (Euler has no x0 processing)",
                            static_cast<int>(options.processing.mode));
    if (options.prediction == prediction_type::flow)
      detail::throw_invalid(fn, "options.prediction", "is flow: use flow_euler_sampler on a flow grid", "flow");
    if (!(churn.s_churn >= 0.0) || !std::isfinite(churn.s_churn))
      detail::throw_invalid(fn, "churn.s_churn", "must be finite and >= 0", churn.s_churn);
    if (!(churn.s_noise >= 0.0) || !std::isfinite(churn.s_noise))
      detail::throw_invalid(fn, "churn.s_noise", "must be finite and >= 0", churn.s_noise);
    if (std::isnan(churn.s_tmin) || std::isnan(churn.s_tmax))
      detail::throw_invalid(fn, "churn.s_tmin / s_tmax", "must not be NaN", churn.s_tmin);
    const std::size_t n = grid.size();
    plan p{fn, detail::sigma_grid_transitions(grid, false), std::vector<affine_step>(n)};
    p.rows.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double s = grid.sigmas[i], s_next = grid.sigmas[i + 1];
      const level at = level::from_sigma_tilde(s), next = level::from_sigma_tilde(s_next);
      const double gamma = (churn.s_tmin <= s && s <= churn.s_tmax)
                               ? std::min(churn.s_churn / static_cast<double>(n), std::sqrt(2.0) - 1.0)
                               : 0.0;
      const double s_hat = s * (gamma + 1.0);
      // x̂0 of the churned σ-space sample x̃_c: P·x̃_c + Q·m.
      double P = 0.0, Q = 0.0;
      switch (options.prediction) {
        case prediction_type::epsilon:
          P = 1.0, Q = -s_hat;
          break;
        case prediction_type::v:
          P = 1.0 / (s * s + 1.0), Q = -s / std::sqrt(s * s + 1.0);
          break;
        case prediction_type::sample:
          P = 0.0, Q = 1.0;
          break;
        default:
          detail::throw_invalid(fn, "options.prediction", "is not epsilon, v or sample",
                                static_cast<int>(options.prediction));
      }
      const double r = s_next / s_hat;  // x̃' = r·x̃_c + (1 − r)·x̂0(x̃_c)
      const double A = r + (1.0 - r) * P, B = (1.0 - r) * Q;
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(detail::step_label(fn, i, p.transitions[i]), [&] {
        return prediction_coefficients_on(fn, options.prediction, at);
      });
      // x' = α'·x̃' with x̃ = x/α: the whole step as x' = (α'A/α)·x + α'B·m + α'A·c_z·z, carried by the ε̂ term.
      c.pred.eps_from_sample = next.alpha * A / at.alpha;
      c.pred.eps_from_model = next.alpha * B;
      c.eps_weight = 1.0;
      c.noise_std = gamma > 0.0 ? next.alpha * A * churn.s_noise * std::sqrt(s_hat * s_hat - s * s) : 0.0;
      p.rows[i] = solver_row{i, grid.timesteps[i], true, {}};
    }
    return p;
  }
};

/// Ancestral Euler on a VP σ grid (k-diffusion sample_euler_ancestral; diffusers EulerAncestralDiscreteScheduler
/// at η = 1): per step σ_up = min(σ̃', η·√(σ̃'²·(σ̃² − σ̃'²)/σ̃²)), σ_down = √(σ̃'² − σ_up²), and
///   x̃' = x̃ + (σ_down − σ̃)·(x̃ − x̂0)/σ̃ + σ_up·z,
/// i.e. x' = α'·(σ_down/σ̃)/α·x + α'·(1 − σ_down/σ̃)·x̂0 + α'·σ_up·z. η = 0 is Euler without churn; η ≥ 0 finite.
/// Sample prediction is supported (diffusers raises NotImplementedError).
class euler_ancestral_sampler : public sampler {
 public:
  /// Builds the rows of `grid` with ancestral noise scale η.
  explicit euler_ancestral_sampler(const sigma_grid& grid, double eta = 1.0, sampler_options options = {})
      : sampler(build(grid, eta, options), options) {}

 private:
  static plan build(const sigma_grid& grid, double eta, const sampler_options& options) {
    constexpr const char* fn = "euler_ancestral_sampler";
    validate_sigma_grid(fn, grid);
    detail::check_sigma_solver_options(fn, options);
    if (!(eta >= 0.0) || !std::isfinite(eta)) detail::throw_invalid(fn, "eta", "must be finite and >= 0", eta);
    if (options.prediction == prediction_type::flow)
      detail::throw_invalid(fn, "options.prediction", "is flow: use flow_euler_sampler on a flow grid", "flow");
    const std::size_t n = grid.size();
    plan p{fn, detail::sigma_grid_transitions(grid, false), std::vector<affine_step>(n)};
    p.rows.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double s = grid.sigmas[i], s_next = grid.sigmas[i + 1];
      const level at = level::from_sigma_tilde(s), next = level::from_sigma_tilde(s_next);
      const double up_sq = s_next * s_next * (s * s - s_next * s_next) / (s * s);
      const double sigma_up = std::min(s_next, eta * std::sqrt(std::max(up_sq, 0.0)));
      const double sigma_down = std::sqrt(std::max(s_next * s_next - sigma_up * sigma_up, 0.0));
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(detail::step_label(fn, i, p.transitions[i]), [&] {
        return prediction_coefficients_on(fn, options.prediction, at);
      });
      const double r = sigma_down / s;
      c.sample_weight = next.alpha * r / at.alpha;
      c.x0_weight = next.alpha * (1.0 - r);
      c.noise_std = next.alpha * sigma_up;
      p.rows[i] = solver_row{i, grid.timesteps[i], true, {}};
    }
    return p;
  }
};

/// Heun's second-order method on a VP σ grid (Karras et al. 2022, Algorithm 1 without churn; diffusers
/// HeunDiscreteScheduler): with d = (x̃ − P(x̂0))/σ̃ (P the x̂0 processing, e.g. clipping a sample prediction),
///   x̃_e = x̃ + (σ̃' − σ̃)·d(x̃, σ̃),   x̃' = x̃ + (σ̃' − σ̃)·(d(x̃, σ̃) + d(x̃_e, σ̃'))/2,
/// two model evaluations per step (rows), except the last step, which is the Euler step (as in diffusers, whose
/// final level is 0). Row 1 saves x and stores d; row 2 reads both. 2N − 1 evaluations for N steps.
class heun_sampler : public sampler {
 public:
  /// Builds the rows of `grid`.
  explicit heun_sampler(const sigma_grid& grid, sampler_options options = {})
      : sampler(build(grid, options), options) {}

 private:
  static plan build(const sigma_grid& grid, const sampler_options& options) {
    constexpr const char* fn = "heun_sampler";
    validate_sigma_grid(fn, grid);
    detail::check_sigma_solver_options(fn, options);
    if (options.prediction == prediction_type::flow)
      detail::throw_invalid(fn, "options.prediction", "is flow: use a flow grid solver", "flow");
    if (options.processing.use_clipped_model_output)
      detail::throw_invalid(fn, "options.processing.use_clipped_model_output", "is not used by Heun", true);
    const std::size_t n = grid.size();
    plan p{fn, detail::sigma_grid_transitions(grid, false), {}};
    p.history_slots = 1;
    for (std::size_t i = 0; i < n; ++i) {
      const double s = grid.sigmas[i], s_next = grid.sigmas[i + 1], dt = s_next - s;
      const level at = level::from_sigma_tilde(s), next = level::from_sigma_tilde(s_next);
      const std::string where = detail::step_label(fn, i, p.transitions[i]);
      const auto pred_at = [&](level l) {
        return detail::with_context(where, [&] { return prediction_coefficients_on(fn, options.prediction, l); });
      };
      // d = (x − α·P(x̂0))/σ in the state x: the ε̂ re-derived from the processed x̂0.
      affine_step first;
      first.pred = pred_at(at);
      const bool two_stage = s_next > 0.0 && i + 1 < n;  // the last step is first order (diffusers)
      // x_e = α'·(x/α + dt·d) = (α'/α + α'·dt/σ)·x − α'·dt·α/σ·P(x̂0)
      first.sample_weight = next.alpha / at.alpha + next.alpha * dt / at.sigma;
      first.x0_weight = -next.alpha * dt * at.alpha / at.sigma;
      solver_row r1{i, grid.timesteps[i], !two_stage, {}};
      if (two_stage) {
        r1.extras.store_slot = 0;
        r1.extras.store_sample = 1.0 / at.sigma;
        r1.extras.store_x0 = -at.alpha / at.sigma;
        r1.extras.save_state = true;
      }
      p.coefficients.push_back(first);
      p.rows.push_back(r1);
      if (!two_stage) continue;
      // x' = α'·(S/α + dt/2·d1 + dt/2·d2), d2 = (x_e − α'·P(x̂0'))/σ' at the next level.
      affine_step second;
      second.pred = pred_at(next);
      second.sample_weight = next.alpha * 0.5 * dt / next.sigma;
      second.x0_weight = -next.alpha * 0.5 * dt * next.alpha / next.sigma;
      solver_row r2{i, grid.timesteps[i + 1], true, {}};
      r2.extras.state_weight = next.alpha / at.alpha;
      r2.extras.history_reads = 1;
      r2.extras.history[0] = history_term{0, next.alpha * 0.5 * dt};
      p.coefficients.push_back(second);
      p.rows.push_back(r2);
    }
    return p;
  }
};

/// Euler on a rectified-flow grid (diffusers FlowMatchEulerDiscreteScheduler): x' = x + (s' − s)·û with û the
/// velocity prediction (prediction_type::flow). With `stochastic` (diffusers `stochastic_sampling`) the step instead
/// re-noises the predicted clean sample to the next level: x' = (1 − s')·x̂0 + s'·z, x̂0 = x − s·û.
class flow_euler_sampler : public sampler {
 public:
  /// Builds the rows of a flow grid (make_flow_grid). options.prediction must be flow.
  explicit flow_euler_sampler(const sigma_grid& grid, sampler_options options = {}, bool stochastic = false)
      : sampler(build(grid, options, stochastic), with_flow(options)) {}

 private:
  static sampler_options with_flow(sampler_options o) {
    o.prediction = prediction_type::flow;
    return o;
  }
  static plan build(const sigma_grid& grid, sampler_options options, bool stochastic) {
    constexpr const char* fn = "flow_euler_sampler";
    options = with_flow(options);
    if (!options.processing.is_identity())
      detail::throw_invalid(fn, "options.processing", "must be none (flow Euler has no x0 processing)",
                            static_cast<int>(options.processing.mode));
    const std::size_t n = grid.size();
    if (n == 0) detail::throw_invalid(fn, "grid.timesteps.size()", "must be >= 1", n);
    if (grid.sigmas.size() != n + 1)
      detail::throw_invalid(fn, "grid.sigmas.size()", "must be timesteps.size() + 1", grid.sigmas.size());
    for (std::size_t i = 0; i <= n; ++i)
      if (!(grid.sigmas[i] >= 0.0 && grid.sigmas[i] <= 1.0))
        detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i) + "]", "must be in [0, 1]", grid.sigmas[i]);
    for (std::size_t i = 0; i < n; ++i)
      if (grid.sigmas[i] == grid.sigmas[i + 1] || !std::isfinite(grid.timesteps[i]))
        detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i + 1) + "]",
                              "must differ from the level before it (and model times be finite)", grid.sigmas[i + 1]);
    plan p{fn, detail::sigma_grid_transitions(grid, true), std::vector<affine_step>(n)};
    p.rows.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double s = grid.sigmas[i], s_next = grid.sigmas[i + 1];
      affine_step& c = p.coefficients[i];
      c.pred = prediction_coefficients_on(fn, prediction_type::flow, level::flow(s));
      if (stochastic) {
        c.x0_weight = 1.0 - s_next;
        c.noise_std = s_next;
      } else {
        // x + (s' − s)·(ε̂ − x̂0), since ε̂ − x̂0 = û exactly.
        c.sample_weight = 1.0;
        c.eps_weight = s_next - s;
        c.x0_weight = -(s_next - s);
      }
      p.rows[i] = solver_row{i, grid.timesteps[i], true, {}};
    }
    return p;
  }
};

}  // namespace skipstep
