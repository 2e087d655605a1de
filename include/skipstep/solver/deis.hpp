/// @file
/// DEIS, the diffusion exponential integrator sampler (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with
/// Exponential Integrator", §4 "ρAB-DEIS"; diffusers DEISMultistepScheduler, algorithm_type "deis", solver_type
/// "logrho") as rows of the engine. In ρ = σ/α (σ̃, the σ-space level) the probability-flow ODE is exactly
///   x_t/α_t = x_s/α_s + ∫_{ρ_s}^{ρ_t} ε̂(ρ) dρ,
/// and the k-th order rule replaces ε̂ by the Lagrange polynomial in log ρ through the current and k − 1 past
/// evaluations (a ring of ε̂ history buffers), so step i is
///   x_{i+1} = (α_t/α_{s0})·x_i + α_t·(c_0·ε̂_i + c_1·ε̂_{i−1} + c_2·ε̂_{i−2}),   c_j = ∫_{ρ_{s0}}^{ρ_t} ℓ_j(log ρ) dρ,
/// every weight computed once in double.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/path.hpp"
#include "skipstep/schedule/sigma_grid.hpp"
#include "skipstep/solver/euler.hpp"

namespace skipstep {

/// Options of the DEIS sampler, with diffusers' defaults (DEISMultistepScheduler).
struct deis_options {
  int order = 2;                  ///< solver_order, 1–3.
  bool lower_order_final = true;  ///< first order at the last step and at most second at the one before, when N < 15.
};

namespace detail {

/// I_p(a) = ∫_0^a e^v·v^p dv for p = 0, 1, 2 (a ≤ 0 on a descending grid; a = −inf where ρ_t = 0): by the series
/// Σ_n a^{n+p+1}/(n!·(n+p+1)) for |a| < 1/2 (no cancellation near a = 0), else in closed form
/// I_0 = e^a − 1, I_1 = a·e^a − I_0, I_2 = a²·e^a − 2·I_1, with their limits −1, 1, −2 at a = −inf.
inline std::array<double, 3> deis_moments(double a) {
  std::array<double, 3> out{};
  if (std::isinf(a) && a < 0.0) return {-1.0, 1.0, -2.0};
  if (std::abs(a) < 0.5) {
    for (int p = 0; p < 3; ++p) {
      double term = std::pow(a, p + 1), sum = 0.0;  // term = a^{n+p+1}/n!
      for (int n = 0; n < 40; ++n) {
        sum += term / static_cast<double>(n + p + 1);
        term *= a / static_cast<double>(n + 1);
      }
      out[static_cast<std::size_t>(p)] = sum;
    }
    return out;
  }
  const double ea = std::exp(a);
  out[0] = std::expm1(a);
  out[1] = a * ea - out[0];
  out[2] = a * a * ea - 2.0 * out[1];
  return out;
}

/// The ρAB-DEIS weights c_j = ∫_{ρ_{s0}}^{ρ_t} ℓ_j(log ρ) dρ of the Lagrange basis on the nodes ρ_{s0}, ρ_{s1}, ρ_{s2}
/// (the first `k` of them): with v = log(ρ/ρ_{s0}) the integral is ρ_{s0}·∫_0^a e^v ℓ_j(v) dv, a = log(ρ_t/ρ_{s0}),
/// ℓ_j expanded in powers of v and integrated by deis_moments. k = 1 gives c_0 = ρ_t − ρ_{s0} (DDIM). The
/// antiderivative form diffusers evaluates in float32 (its ind_fn) is the same integral.
inline std::array<double, 3> deis_weights(int k, double rho_t, const std::array<double, 3>& rho_s) {
  const double a = rho_t == 0.0 ? -std::numeric_limits<double>::infinity() : std::log(rho_t / rho_s[0]);
  const std::array<double, 3> mom = deis_moments(a);
  std::array<double, 3> c{};
  if (k == 1) {
    c[0] = rho_s[0] * mom[0];
    return c;
  }
  const double v1 = std::log(rho_s[1] / rho_s[0]);
  if (k == 2) {  // ℓ_0 = 1 − v/v1, ℓ_1 = v/v1
    c[0] = rho_s[0] * (mom[0] - mom[1] / v1);
    c[1] = rho_s[0] * (mom[1] / v1);
    return c;
  }
  const double v2 = std::log(rho_s[2] / rho_s[0]);
  // ℓ_0 = (v − v1)(v − v2)/(v1·v2), ℓ_1 = v(v − v2)/(v1(v1 − v2)), ℓ_2 = v(v − v1)/(v2(v2 − v1))
  c[0] = rho_s[0] * (v1 * v2 * mom[0] - (v1 + v2) * mom[1] + mom[2]) / (v1 * v2);
  c[1] = rho_s[0] * (mom[2] - v2 * mom[1]) / (v1 * (v1 - v2));
  c[2] = rho_s[0] * (mom[2] - v1 * mom[1]) / (v2 * (v2 - v1));
  return c;
}

}  // namespace detail

/// DEIS (ρAB-DEIS, orders 1–3) on a VP σ grid (make_multistep_grid; diffusers' DEIS grid ends at σ̃_min, its
/// final_sigma::sigma_min), with diffusers DEISMultistepScheduler's order rules: order min(i + 1, order) at step i,
/// and with lower_order_final and N < 15 first order at the last step and at most second at the one before. Per step
///   x_{i+1} = (α_{i+1}/α_i)·x_i + α_{i+1}·Σ_j c_j·ε̂_{i−j}   (c_j: detail::deis_weights),
/// ε̂ the model's noise prediction, re-derived from the processed x̂0 when thresholding is on
/// (ε̂ = (x − α·x̂0)/σ, as diffusers' convert_model_output). Differences from diffusers (README): the weights are
/// computed in double by moments of e^v (diffusers: float32 antiderivatives, numpy's log), and a grid may end at
/// σ = 0, where the weights take their limits (diffusers cannot end there: log 0). Order 1 is DDIM (η = 0) on the
/// same levels. Levels used together by a step of order ≥ 2 must differ (the Lagrange fit divides by log ratios).
class deis_sampler : public sampler {
 public:
  /// Builds the rows of `grid` (VP σ̃ levels; make_multistep_grid with final_sigma::sigma_min for diffusers').
  explicit deis_sampler(const sigma_grid& grid, deis_options solver = {}, sampler_options options = {})
      : sampler(build(grid, solver, options), adjusted(options)) {}

 private:
  static sampler_options adjusted(sampler_options o) {
    if (!o.processing.is_identity()) o.processing.use_clipped_model_output = true;  // ε̂ from the processed x̂0
    return o;
  }

  static plan build(const sigma_grid& grid, const deis_options& solver, const sampler_options& options_in) {
    constexpr const char* fn = "deis_sampler";
    const sampler_options options = adjusted(options_in);
    validate_sigma_grid(fn, grid);
    detail::check_sigma_solver_options(fn, options);
    if (solver.order < 1 || solver.order > 3)
      detail::throw_invalid(fn, "solver.order", "must be 1, 2 or 3", solver.order);
    if (options.processing.mode == x0_processing::kind::clip)
      detail::throw_invalid(fn, "options.processing", "supports none or dynamic_threshold (diffusers' thresholding)",
                            "clip");
    if (options.prediction == prediction_type::flow)
      detail::throw_invalid(fn, "options.prediction", "is flow: DEIS here runs on VP levels", "flow");
    const std::size_t n = grid.size();
    plan p{fn, detail::sigma_grid_transitions(grid, false), std::vector<affine_step>(n)};
    p.rows.resize(n);
    const std::size_t ring = static_cast<std::size_t>(std::max(solver.order - 1, 1));
    p.history_slots = solver.order > 1 ? ring : 0;
    for (std::size_t i = 0; i < n; ++i) {
      const level s0 = level::from_sigma_tilde(grid.sigmas[i]), t = level::from_sigma_tilde(grid.sigmas[i + 1]);
      const std::string where = detail::step_label(fn, i, p.transitions[i]);
      const bool small = solver.lower_order_final && n < 15;
      const bool lof = i + 1 == n && small, los = i + 2 == n && small;
      int k = 3;
      if (solver.order == 1 || i < 1 || lof)
        k = 1;
      else if (solver.order == 2 || i < 2 || los)
        k = 2;
      std::array<double, 3> rho_s{grid.sigmas[i], 0.0, 0.0};
      for (int j = 1; j < k; ++j) {
        rho_s[static_cast<std::size_t>(j)] = grid.sigmas[i - static_cast<std::size_t>(j)];
        for (int q = 0; q < j; ++q)
          if (rho_s[static_cast<std::size_t>(j)] == rho_s[static_cast<std::size_t>(q)])
            detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i - static_cast<std::size_t>(j)) + "]",
                                  "repeats a level that step " + std::to_string(i) + " (order " + std::to_string(k) +
                                      ") fits through; DEIS needs distinct levels",
                                  rho_s[static_cast<std::size_t>(j)]);
      }
      const std::array<double, 3> cw = detail::deis_weights(k, grid.sigmas[i + 1], rho_s);
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(where, [&] { return prediction_coefficients_on(fn, options.prediction, s0); });
      if (options.processing.use_clipped_model_output) {
        c.reeps_from_sample = 1.0 / s0.sigma;
        c.reeps_from_x0 = -s0.alpha / s0.sigma;
      }
      c.sample_weight = t.alpha / s0.alpha;
      c.eps_weight = t.alpha * cw[0];
      solver_row& row = p.rows[i];
      row = solver_row{i, grid.timesteps[i], true, {}};
      if (solver.order > 1) {
        row_extras& ex = row.extras;
        ex.store_slot = static_cast<int>(i % ring);
        if (options.processing.use_clipped_model_output) {
          ex.store_sample = c.reeps_from_sample;
          ex.store_x0 = c.reeps_from_x0;
        } else {
          ex.store_sample = c.pred.eps_from_sample;
          ex.store_model = c.pred.eps_from_model;
        }
        for (std::size_t j = 1; j < static_cast<std::size_t>(k); ++j)
          ex.history[ex.history_reads++] = history_term{static_cast<std::uint8_t>((i - j) % ring), t.alpha * cw[j]};
      }
    }
    return p;
  }
};

}  // namespace skipstep
