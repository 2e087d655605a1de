/// @file
/// DPM-Solver and DPM-Solver++ multistep (Lu et al. 2022, "DPM-Solver" and "DPM-Solver++"; diffusers
/// DPMSolverMultistepScheduler) as rows of the engine. With λ = log(α/σ) and h = λ_t − λ_s, the exact solution of the
/// probability-flow ODE in data prediction is x_t = (σ_t/σ_s)·x_s + σ_t·∫ e^λ x̂0(λ) dλ; the k-th order rule fits x̂0
/// through the current and k − 1 past evaluations (a ring of history buffers), so step i is
///   x_{i+1} = c_x·x_i + w_0·D_i + w_1·D_{i−1} + w_2·D_{i−2} (+ c_z·z for the SDE variants),
/// D the processed x̂0 (DPM-Solver++) or ε̂ (DPM-Solver), every weight computed once in double.
#pragma once

#include <algorithm>
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

/// Which member of the family (diffusers `algorithm_type`).
enum class dpm_algorithm {
  dpmsolver_pp,      ///< DPM-Solver++: data prediction (the default).
  dpmsolver,         ///< DPM-Solver: noise prediction.
  sde_dpmsolver_pp,  ///< SDE-DPM-Solver++ (stochastic; orders 1–2).
  sde_dpmsolver,     ///< SDE-DPM-Solver (stochastic; orders 1–2).
};

/// How the second-order term is formed (diffusers `solver_type`).
enum class dpm_solver_type { midpoint, heun };

/// Which Gaussian path the grid's levels are on.
enum class grid_path {
  vp,    ///< levels are σ̃ of a VP path (make_sigma_grid): α = 1/√(1 + σ̃²), σ = σ̃·α.
  flow,  ///< levels are s of a rectified flow (make_flow_grid): α = 1 − s, σ = s.
};

/// Options of the multistep DPM solvers, with diffusers' defaults.
struct dpm_solver_options {
  dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;  ///< the family member.
  int order = 2;                                          ///< solver_order, 1–3 (SDE variants: 1–2).
  dpm_solver_type solver_type = dpm_solver_type::midpoint;  ///< second-order form.
  bool lower_order_final = true;  ///< first order at the last step and second at the one before it, when N < 15.
  bool euler_at_final = false;    ///< first order at the last step whatever N.
  grid_path path = grid_path::vp;  ///< the path of the grid's levels.
};

namespace detail {

/// True for the noise-prediction members (DPM-Solver, SDE-DPM-Solver).
[[nodiscard]] inline bool dpm_noise_space(dpm_algorithm a) noexcept {
  return a == dpm_algorithm::dpmsolver || a == dpm_algorithm::sde_dpmsolver;
}
/// True for the stochastic members.
[[nodiscard]] inline bool dpm_stochastic(dpm_algorithm a) noexcept {
  return a == dpm_algorithm::sde_dpmsolver_pp || a == dpm_algorithm::sde_dpmsolver;
}
/// The sampler options a DPM-family solver runs with: its ε̂ comes from the processed x̂0 when there is processing
/// (diffusers convert_model_output), i.e. use_clipped_model_output.
[[nodiscard]] inline sampler_options dpm_adjusted_options(dpm_algorithm a, sampler_options o) {
  if (dpm_noise_space(a) && !o.processing.is_identity()) o.processing.use_clipped_model_output = true;
  return o;
}

/// The option checks both DPM-Solver samplers (multistep and single-step) share: the order, the enum values (a cast
/// from an int can hold any), SDE order 3 (diffusers' third order has no SDE form) and clipping (diffusers' DPM
/// schedulers threshold or do nothing).
inline void check_dpm_options(const char* fn, int order, dpm_algorithm algorithm, dpm_solver_type solver_type,
                              const sampler_options& options) {
  if (order < 1 || order > 3) throw_invalid(fn, "solver.order", "must be 1, 2 or 3", order);
  if (static_cast<int>(algorithm) < 0 || static_cast<int>(algorithm) > 3)
    throw_invalid(fn, "solver.algorithm", "is not a dpm_algorithm value", static_cast<int>(algorithm));
  if (dpm_stochastic(algorithm) && order == 3)
    throw_invalid(fn, "solver.order", "must be 1 or 2 for the SDE variants (diffusers' third order has no SDE form)",
                  order);
  if (solver_type != dpm_solver_type::midpoint && solver_type != dpm_solver_type::heun)
    throw_invalid(fn, "solver.solver_type", "is not a dpm_solver_type value", static_cast<int>(solver_type));
  if (options.processing.mode == x0_processing::kind::clip)
    throw_invalid(fn, "options.processing", "supports none or dynamic_threshold (diffusers' thresholding)", "clip");
}

/// (e^{−h} − 1)/h + 1 and (e^{−h} − 1 + h)/h² − ½ of DPM-Solver++'s second- and third-order terms, by their series
/// near h = 0 (both → 0) and their limits at h = +inf (1 and −½): diffusers evaluates them as written, which is
/// NaN at h = 0 (a repeated level).
struct dpm_phi {
  double phi2;  ///< (e^{−h} − 1)/h + 1
  double phi3;  ///< (e^{−h} − 1 + h)/h² − ½
};
inline dpm_phi dpm_phi_minus(double h) {
  if (std::isinf(h)) return {1.0, -0.5};
  if (std::abs(h) < 1e-4)  // series: φ2 = h/2 − h²/6 + ..., φ3 = −h/6 + h²/24 − ...
    return {h / 2.0 - h * h / 6.0, -h / 6.0 + h * h / 24.0};
  const double em = std::expm1(-h);
  return {em / h + 1.0, (em + h) / (h * h) - 0.5};
}
/// (e^h − 1)/h − 1 and (e^h − 1 − h)/h² − ½ of DPM-Solver's terms (limits at h → 0).
inline dpm_phi dpm_phi_plus(double h) {
  if (std::abs(h) < 1e-4) return {h / 2.0 + h * h / 6.0, h / 6.0 + h * h / 24.0};
  const double ep = std::expm1(h);
  return {ep / h - 1.0, (ep - h) / (h * h) - 0.5};
}

}  // namespace detail

/// Multistep DPM-Solver / DPM-Solver++ on a σ grid (VP or flow levels), with every rule of diffusers'
/// DPMSolverMultistepScheduler: the order warms up (order min(i + 1, solver_order) at step i), lower_order_final
/// and euler_at_final, and the last step is first order whenever the grid ends at σ = 0 (as diffusers does for
/// final_sigmas_type "zero"). Second order (Lu et al. 2022b, Algorithm 2, with D1 = (D_i − D_{i−1})/r0,
/// r0 = h_{i−1}/h_i):
///   ++ midpoint: x_t = (σ_t/σ_s)x − α_t(e^{−h} − 1)D0 − ½α_t(e^{−h} − 1)D1
///   ++ heun:     x_t = (σ_t/σ_s)x − α_t(e^{−h} − 1)D0 + α_t((e^{−h} − 1)/h + 1)D1
/// third order adds − α_t((e^{−h} − 1 + h)/h² − ½)D2; the SDE variants replace σ_t/σ_s by (σ_t/σ_s)e^{−h},
/// (e^{−h} − 1) by −(1 − e^{−2h}) and add σ_t√(1 − e^{−2h})·z (DPM-Solver: the mirrored formulas in ε with e^{h}).
/// The coefficients at h = 0 and h = ∞ take their limits (diffusers gives NaN at h = 0: README's differences).
/// x̂0 processing (thresholding) applies to D; DPM-Solver re-derives ε̂ from the processed x̂0, as diffusers does.
class dpm_solver_sampler : public sampler {
 public:
  /// Builds the rows of `grid` (make_sigma_grid for VP levels, make_flow_grid with options.path = flow).
  explicit dpm_solver_sampler(const sigma_grid& grid, dpm_solver_options solver = {}, sampler_options options = {})
      : sampler(build(grid, solver, options), adjusted(solver, options)) {}

 private:
  static bool noise_space(dpm_algorithm a) { return detail::dpm_noise_space(a); }
  static bool stochastic(dpm_algorithm a) { return detail::dpm_stochastic(a); }
  static sampler_options adjusted(const dpm_solver_options& solver, sampler_options o) {
    return detail::dpm_adjusted_options(solver.algorithm, o);
  }

  static plan build(const sigma_grid& grid, const dpm_solver_options& solver, const sampler_options& options_in) {
    constexpr const char* fn = "dpm_solver_sampler";
    const sampler_options options = adjusted(solver, options_in);
    if (solver.path == grid_path::vp) {
      validate_sigma_grid(fn, grid);
    } else {
      if (grid.timesteps.empty() || grid.sigmas.size() != grid.timesteps.size() + 1)
        detail::throw_invalid(fn, "grid.sigmas.size()", "must be timesteps.size() + 1 (>= 2)", grid.sigmas.size());
      for (std::size_t i = 0; i < grid.sigmas.size(); ++i)
        if (!(grid.sigmas[i] >= 0.0 && grid.sigmas[i] <= 1.0) || (i > 0 && !(grid.sigmas[i] < grid.sigmas[i - 1])))
          detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i) + "]",
                                "must be in [0, 1] and decreasing for a flow grid", grid.sigmas[i]);
    }
    detail::check_sigma_solver_options(fn, options);
    detail::check_dpm_options(fn, solver.order, solver.algorithm, solver.solver_type, options);
    const bool flow = solver.path == grid_path::flow;
    const std::size_t n = grid.size();
    const auto level_at = [&](double v) { return flow ? level::flow(v) : level::from_sigma_tilde(v); };
    plan p{fn, detail::sigma_grid_transitions(grid, flow), std::vector<affine_step>(n)};
    p.rows.resize(n);
    const std::size_t ring = static_cast<std::size_t>(std::max(solver.order - 1, 1));
    p.history_slots = solver.order > 1 ? ring : 0;
    const bool eps = noise_space(solver.algorithm), sde = stochastic(solver.algorithm);
    const auto lambda = [](level l) { return l.sigma == 0.0 ? std::numeric_limits<double>::infinity() : l.lambda(); };
    for (std::size_t i = 0; i < n; ++i) {
      const level s0 = level_at(grid.sigmas[i]), t = level_at(grid.sigmas[i + 1]);
      const std::string where = detail::step_label(fn, i, p.transitions[i]);
      // The order this step uses (diffusers DPMSolverMultistepScheduler.step).
      const bool last = i + 1 == n, second_last = i + 2 == n;
      const bool lof = last && (solver.euler_at_final || (solver.lower_order_final && n < 15) || t.sigma == 0.0);
      const bool los = second_last && solver.lower_order_final && n < 15;
      const std::size_t warm = std::min<std::size_t>(i, static_cast<std::size_t>(solver.order));
      int k = 3;
      if (solver.order == 1 || warm < 1 || lof)
        k = 1;
      else if (solver.order == 2 || warm < 2 || los)
        k = 2;
      const double h = lambda(t) - lambda(s0);
      // e^{−h} = σ̃_t/σ̃_s exactly in ratios (0 at σ_t = 0, no inf·0).
      const double e_minus = (t.sigma * s0.alpha) / (t.alpha * s0.sigma);
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(where, [&] { return prediction_coefficients_on(fn, options.prediction, s0); });
      if (options.processing.use_clipped_model_output) {
        c.reeps_from_sample = 1.0 / s0.sigma;
        c.reeps_from_x0 = -s0.alpha / s0.sigma;
      }
      // Weights of D0 (current), the plain x term and the noise; w1, w2 for the D1/D2 expansions below.
      double cx = 0.0, d0 = 0.0, cd1 = 0.0, cd2 = 0.0, cz = 0.0;
      const bool heun = solver.solver_type == dpm_solver_type::heun;
      if (!eps) {
        const double em1 = -(1.0 - e_minus);  // e^{−h} − 1
        if (!sde) {
          const detail::dpm_phi phi = detail::dpm_phi_minus(h);
          cx = t.sigma / s0.sigma;
          d0 = -t.alpha * em1;
          cd1 = (k == 2 && !heun) ? -0.5 * t.alpha * em1 : t.alpha * phi.phi2;
          cd2 = -t.alpha * phi.phi3;
        } else {
          const double e2 = e_minus * e_minus;  // e^{−2h}
          const double h2 = 2.0 * h;
          // (1 − e^{−2h})/(−2h) + 1, → h as h → 0 and 1 as h → ∞
          const double phi = std::isinf(h) ? 1.0 : (std::abs(h2) < 1e-4 ? h : (-std::expm1(-h2)) / (-h2) + 1.0);
          cx = t.sigma / s0.sigma * e_minus;
          d0 = t.alpha * (1.0 - e2);
          cd1 = heun ? t.alpha * phi : 0.5 * t.alpha * (1.0 - e2);
          cz = t.sigma * std::sqrt(std::max(0.0, 1.0 - e2));
        }
      } else {
        const double s_em1 = t.alpha * (s0.sigma / s0.alpha) - t.sigma;  // σ_t·(e^h − 1), finite at σ_t = 0
        const detail::dpm_phi phi = detail::dpm_phi_plus(h);
        cx = t.alpha / s0.alpha;
        if (!sde) {
          d0 = -s_em1;
          cd1 = (k == 2 && !heun) ? -0.5 * s_em1 : -t.sigma * phi.phi2;
          cd2 = -t.sigma * phi.phi3;
        } else {
          d0 = -2.0 * s_em1;
          cd1 = heun ? -2.0 * t.sigma * phi.phi2 : -s_em1;
          const double grown = t.alpha * s0.sigma / s0.alpha;  // σ_t·e^h
          cz = std::sqrt(std::max(0.0, grown * grown - t.sigma * t.sigma));  // σ_t·√(e^{2h} − 1)
        }
      }
      // D1, D2 as combinations of D_i (current), D_{i−1}, D_{i−2} (slots of the ring).
      double w0 = d0, w1 = 0.0, w2 = 0.0;
      if (k >= 2) {
        const level s1 = level_at(grid.sigmas[i - 1]);
        const double r0 = (lambda(s0) - lambda(s1)) / h;
        if (k == 2) {
          w0 += cd1 / r0;
          w1 -= cd1 / r0;
        } else {
          const level s2 = level_at(grid.sigmas[i - 2]);
          const double r1 = (lambda(s1) - lambda(s2)) / h;
          // D1_0 = (D0 − D1)/r0, D1_1 = (D1 − D2)/r1; D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1); D2 = (D1_0 − D1_1)/(r0 + r1)
          const double a0 = 1.0 / r0, a1 = 1.0 / r1;  // D1_0 = a0·(m0 − m1), D1_1 = a1·(m1 − m2)
          const double g = r0 / (r0 + r1), q = 1.0 / (r0 + r1);
          // D1 = (1 + g)·D1_0 − g·D1_1 ; D2 = q·(D1_0 − D1_1)
          const double c10 = cd1 * (1.0 + g) + cd2 * q, c11 = -cd1 * g - cd2 * q;  // weights of D1_0 and D1_1
          w0 += c10 * a0;
          w1 += -c10 * a0 + c11 * a1;
          w2 += -c11 * a1;
        }
      }
      if (!eps) {
        c.sample_weight = cx;
        c.x0_weight = w0;
      } else {
        c.sample_weight = cx;
        c.eps_weight = w0;
      }
      c.noise_std = cz;
      solver_row& row = p.rows[i];
      row = solver_row{i, grid.timesteps[i], true, {}};
      if (solver.order > 1) {
        row_extras& ex = row.extras;
        ex.store_slot = static_cast<int>(i % ring);
        if (!eps) {
          ex.store_x0 = 1.0;
        } else if (options.processing.use_clipped_model_output) {
          ex.store_sample = c.reeps_from_sample;
          ex.store_x0 = c.reeps_from_x0;
        } else {
          ex.store_sample = c.pred.eps_from_sample;
          ex.store_model = c.pred.eps_from_model;
        }
        if (w1 != 0.0 && i >= 1) ex.history[ex.history_reads++] = history_term{static_cast<std::uint8_t>((i - 1) % ring), w1};
        if (w2 != 0.0 && i >= 2) ex.history[ex.history_reads++] = history_term{static_cast<std::uint8_t>((i - 2) % ring), w2};
      }
    }
    return p;
  }
};

}  // namespace skipstep
