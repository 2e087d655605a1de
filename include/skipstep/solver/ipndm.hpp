/// @file
/// iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator", improved PNDM;
/// diffusers IPNDMScheduler, the DanceDiffusion v-model schedule) as rows of the engine: Adams–Bashforth on ε̂ up to
/// order 4 with a lower-order warm-up, each step the DDIM transfer of the combined ε,
///   e = Σ_j w_j·ε̂_{i−j},   x_{i+1} = α_{i+1}·(x_i − σ_i·e)/max(α_i, 1e-8) + σ_{i+1}·e,
/// w = (1), (3, −1)/2, (23, −16, 5)/12, (55, −59, 37, −9)/24.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <span>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/path.hpp"

namespace skipstep {

/// The levels (α_i, σ_i), i = 0..N, and the N model times of an iPNDM run.
struct ipndm_grid {
  std::vector<level> levels;      ///< N + 1 levels, from noise (σ_0) to the end (σ_N).
  std::vector<double> timesteps;  ///< t_i = atan2(σ_i, α_i)·2/π ∈ [0, 1], the network's time.
  /// N, the number of steps.
  [[nodiscard]] std::size_t size() const noexcept { return timesteps.size(); }
};

/// iPNDM levels from a σ list (diffusers `trained_betas`, which IPNDM reads as its per-step σ): α = √(1 − σ²),
/// t = atan2(σ, α)·2/π. N = sigmas.size() − 1 steps; each σ in [0, 1].
[[nodiscard]] inline ipndm_grid ipndm_grid_from_sigmas(std::span<const double> sigmas) {
  constexpr const char* fn = "ipndm_grid_from_sigmas";
  if (sigmas.size() < 2) detail::throw_invalid(fn, "sigmas.size()", "must be >= 2", sigmas.size());
  ipndm_grid g;
  for (std::size_t i = 0; i < sigmas.size(); ++i) {
    const double s = sigmas[i];
    if (!(s >= 0.0 && s <= 1.0)) detail::throw_invalid(fn, "sigmas[" + std::to_string(i) + "]", "must be in [0, 1]", s);
    g.levels.push_back(level{std::sqrt(1.0 - s * s), s});
  }
  for (std::size_t i = 0; i + 1 < g.levels.size(); ++i)
    g.timesteps.push_back(std::atan2(g.levels[i].sigma, g.levels[i].alpha) / std::numbers::pi * 2.0);
  return g;
}

/// diffusers IPNDMScheduler.set_timesteps(N): σ_i = sin²(s_i·π/2) on s = linspace(1, 0, N + 1) (the last exactly 0).
[[nodiscard]] inline ipndm_grid make_ipndm_grid(std::size_t num_steps) {
  if (num_steps == 0) detail::throw_invalid("make_ipndm_grid", "num_steps", "must be >= 1", num_steps);
  std::vector<double> sigmas;
  const auto s = detail::numpy_linspace(1.0, 0.0, num_steps + 1);
  for (std::size_t i = 0; i < num_steps; ++i) {
    const double v = std::sin(s[i] * std::numbers::pi / 2.0);
    sigmas.push_back(v * v);
  }
  sigmas.push_back(0.0);
  return ipndm_grid_from_sigmas(sigmas);
}

/// iPNDM on an ipndm_grid. The model output is read as diffusers does: prediction v gives ε̂ = σ·x + α·m (its
/// definition for v-models); epsilon gives ε̂ = m.
class ipndm_sampler : public sampler {
 public:
  /// Builds the rows; options.prediction must be v (the default here) or epsilon.
  explicit ipndm_sampler(const ipndm_grid& grid, sampler_options options = with_v())
      : sampler(build(grid, options), options) {}

  /// sampler_options with prediction v.
  [[nodiscard]] static sampler_options with_v() {
    sampler_options o;
    o.prediction = prediction_type::v;
    return o;
  }

 private:
  static plan build(const ipndm_grid& grid, const sampler_options& options) {
    constexpr const char* fn = "ipndm_sampler";
    const std::size_t n = grid.size();
    if (n == 0 || grid.levels.size() != n + 1)
      detail::throw_invalid(fn, "grid.levels.size()", "must be timesteps.size() + 1 >= 2", grid.levels.size());
    if (options.prediction != prediction_type::v && options.prediction != prediction_type::epsilon)
      detail::throw_invalid(fn, "options.prediction", "must be v or epsilon", static_cast<int>(options.prediction));
    if (!options.processing.is_identity())
      detail::throw_invalid(fn, "options.processing", "must be none", static_cast<int>(options.processing.mode));
    for (std::size_t i = 0; i <= n; ++i) {
      const level& l = grid.levels[i];
      if (!(l.alpha >= 0.0 && l.sigma >= 0.0) || !std::isfinite(l.alpha + l.sigma))
        detail::throw_invalid(fn, "grid.levels[" + std::to_string(i) + "]", "must be finite and >= 0", l.sigma);
    }
    static constexpr std::array<std::array<double, 4>, 4> ab{{{1.0, 0.0, 0.0, 0.0},
                                                               {3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0},
                                                               {23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0},
                                                               {55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0}}};
    plan p{fn, std::vector<step_transition>(n), std::vector<affine_step>(n)};
    p.rows.resize(n);
    p.history_slots = 3;
    const bool v = options.prediction == prediction_type::v;
    for (std::size_t i = 0; i < n; ++i) {
      const level a = grid.levels[i], b = grid.levels[i + 1];
      const double alpha = std::max(a.alpha, 1e-8);
      const double q = b.alpha / alpha, e = b.sigma - q * a.sigma;  // x' = q·x + e·(combined ε)
      const std::size_t count = std::min<std::size_t>(i + 1, 4);
      const std::array<double, 4>& w = ab[count - 1];
      const double ex = v ? a.sigma : 0.0, em = v ? a.alpha : 1.0;  // ε̂ of this evaluation
      affine_step& c = p.coefficients[i];
      c.pred = v ? prediction_coefficients{a.alpha, -a.sigma, a.sigma, a.alpha}
                 : prediction_coefficients{1.0 / alpha, -a.sigma / alpha, 0.0, 1.0};
      // x' = (q·(1 − w0·σ·ex/σ…)): written so that σ_0 = 1, α_0 = 0 gives x' = σ_1·x exactly.
      c.pred.eps_from_sample = q * (1.0 - w[0] * a.sigma * ex) + b.sigma * w[0] * ex;
      c.pred.eps_from_model = e * w[0] * em;
      c.eps_weight = 1.0;
      solver_row& row = p.rows[i];
      row = solver_row{i, grid.timesteps[i], true, {}};
      row.extras.store_slot = static_cast<int>(i % 3);
      row.extras.store_sample = ex;
      row.extras.store_model = em;
      for (std::size_t j = 1; j < count; ++j)
        row.extras.history[row.extras.history_reads++] = history_term{static_cast<std::uint8_t>((i - j) % 3), e * w[j]};
      step_transition& tr = p.transitions[i];
      tr.timestep = tr.source_timestep = static_cast<std::int64_t>(std::nearbyint(grid.timesteps[i]));
      tr.target_timestep = i + 1 < n ? static_cast<std::int64_t>(std::nearbyint(grid.timesteps[i + 1])) : -1;
      tr.alpha_cumprod_from = a.alpha * a.alpha;
      tr.alpha_cumprod_to = b.alpha * b.alpha;
      tr.noise_allowed = false;
    }
    return p;
  }
};

}  // namespace skipstep
