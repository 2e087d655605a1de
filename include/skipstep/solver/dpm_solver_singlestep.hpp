/// @file
/// Single-step DPM-Solver and DPM-Solver++ (Lu et al. 2022, "DPM-Solver", Algorithms 1–2 (DPM-Solver-2/3), and
/// Lu et al. 2022b, "DPM-Solver++", Algorithm 1 (2S); diffusers DPMSolverSinglestepScheduler) as rows of the engine.
/// The grid's own levels are the intermediate points: an order list splits the N steps into blocks of k = 1, 2 or 3
/// steps, and a block of k steps is one k-th order single-step solve from its first sample S over k grid intervals,
/// whose i-th row evaluates the model at the i-th level and lands on the next one:
///   row 1: x_{b+1} = first-order step from S = x_b (saved into the engine's state S),
///   row 2: x_{b+2} = c_S·S + w_0·D_{b+1} + w_1·D_b   (D_b kept in history slot 0),
///   row 3: x_{b+3} = c_S·S + w_0·D_{b+2} + w_1·D_{b+1} + w_2·D_b   (D_{b+1} in slot 1),
/// D the processed x̂0 (DPM-Solver++) or ε̂ (DPM-Solver), every weight computed once in double. The engine needed no
/// extension: a row's state term and history reads express these blocks.
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
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"

namespace skipstep {

/// Options of the single-step DPM solvers, with diffusers' defaults (DPMSolverSinglestepScheduler).
struct dpm_singlestep_options {
  dpm_algorithm algorithm = dpm_algorithm::dpmsolver_pp;    ///< the family member.
  int order = 2;                                            ///< solver_order, 1–3 (SDE variants: 1–2).
  dpm_solver_type solver_type = dpm_solver_type::midpoint;  ///< second/third-order form.
  /// Shorter blocks at the end (see dpm_singlestep_order_list). false is honoured only when N is a multiple of the
  /// order and the grid does not end at σ = 0: diffusers' set_timesteps switches it on otherwise (reference
  /// README, surprise 17).
  bool lower_order_final = false;
};

/// The order of every step (diffusers DPMSolverSinglestepScheduler.get_order_list, after set_timesteps' switch of
/// lower_order_final): with lower_order_final (forced when N % order ≠ 0 or `final_zero`), order 3 gives
/// [1,2,3]·(N/3 − 1) + [1,2] + [1] (N % 3 = 0), [1,2,3]·⌊N/3⌋ + [1] (N % 3 = 1), [1,2,3]·⌊N/3⌋ + [1,2] (N % 3 = 2);
/// order 2 gives [1,2]·(N/2 − 1) + [1,1] (N even) or [1,2]·⌊N/2⌋ + [1]; without it the blocks repeat to the end.
/// When the grid ends at σ = 0 (`final_zero`) the last step is first order. Throws std::invalid_argument for an
/// order outside 1–3 or N = 0.
[[nodiscard]] inline std::vector<int> dpm_singlestep_order_list(std::size_t num_steps, int order,
                                                                 bool lower_order_final, bool final_zero) {
  constexpr const char* fn = "dpm_singlestep_order_list";
  if (order < 1 || order > 3) detail::throw_invalid(fn, "order", "must be 1, 2 or 3", order);
  if (num_steps == 0) detail::throw_invalid(fn, "num_steps", "must be >= 1", num_steps);
  const std::size_t n = num_steps, k = static_cast<std::size_t>(order);
  const bool lof = lower_order_final || final_zero || n % k != 0;
  std::vector<int> out;
  auto repeat = [&](std::size_t blocks) {
    for (std::size_t b = 0; b < blocks; ++b)
      for (int j = 1; j <= order; ++j) out.push_back(j);
  };
  if (order == 1) {
    out.assign(n, 1);
  } else if (!lof) {
    repeat(n / k);
  } else if (order == 3) {
    if (n % 3 == 0) {
      repeat(n / 3 - 1);
      out.insert(out.end(), {1, 2, 1});
    } else if (n % 3 == 1) {
      repeat(n / 3);
      out.push_back(1);
    } else {
      repeat(n / 3);
      out.insert(out.end(), {1, 2});
    }
  } else if (n % 2 == 0) {
    repeat(n / 2 - 1);
    out.insert(out.end(), {1, 1});
  } else {
    repeat(n / 2);
    out.push_back(1);
  }
  if (final_zero) out.back() = 1;
  return out;
}

/// Single-step DPM-Solver / DPM-Solver++ on a VP σ grid (make_multistep_grid: diffusers' singlestep set_timesteps
/// is its linspace grid), with diffusers' order list (dpm_singlestep_order_list). A block from S at level s_b of
/// k steps, row j landing on t, with h = λ_t − λ_{s_b} and r_j = (λ_{s_j} − λ_{s_b})/h:
///   order 2, ++ midpoint: x_t = (σ_t/σ_b)S − α_t(e^{−h} − 1)D_b − ½α_t(e^{−h} − 1)(D_1 − D_b)/r_1
///   order 2, ++ heun:     x_t = (σ_t/σ_b)S − α_t(e^{−h} − 1)D_b + α_t((e^{−h} − 1)/h + 1)(D_1 − D_b)/r_1
///   order 3, ++ midpoint: x_t = (σ_t/σ_b)S − α_t(e^{−h} − 1)D_b + α_t((e^{−h} − 1)/h + 1)(D_2 − D_b)/r_2
///   order 3, ++ heun: the midpoint's D1 term with D1 = (r_2·D1_0 − r_1·D1_1)/(r_2 − r_1) in place of D1_1, minus
///     α_t((e^{−h} − 1 + h)/h² − ½)·2(D1_1 − D1_0)/(r_2 − r_1), D1_0 = (D_1 − D_b)/r_1, D1_1 = (D_2 − D_b)/r_2;
/// DPM-Solver: the mirrored formulas in ε with α_t/α_b and e^{h}; the SDE variants (orders 1–2) as in
/// dpm_solver_sampler, drawing noise at every step. Coefficients at h = 0 and h = ∞ take their limits.
/// Differences from diffusers (README): DPM-Solver (ε) may end at σ = 0 (diffusers refuses final_sigmas_type
/// "zero" for it; the first-order limit is finite), and thresholded DPM-Solver re-derives ε̂ at the grid's level
/// (the diffusers source we read takes its training table at the integer timestep there; no reference case covers
/// it). SDE order 3 is refused (diffusers' third order has no SDE branch and fails). Levels a step fits through
/// must differ.
class dpm_solver_singlestep_sampler : public sampler {
 public:
  /// Builds the rows of `grid` (VP σ̃ levels).
  explicit dpm_solver_singlestep_sampler(const sigma_grid& grid, dpm_singlestep_options solver = {},
                                         sampler_options options = {})
      : sampler(build(grid, solver, options), adjusted(solver, options)), orders_(orders_of(grid, solver)) {}

  /// The order of every step (the blocks this sampler runs).
  [[nodiscard]] const std::vector<int>& order_list() const noexcept { return orders_; }

 private:
  static bool noise_space(dpm_algorithm a) { return detail::dpm_noise_space(a); }
  static bool stochastic(dpm_algorithm a) { return detail::dpm_stochastic(a); }
  static sampler_options adjusted(const dpm_singlestep_options& solver, sampler_options o) {
    return detail::dpm_adjusted_options(solver.algorithm, o);
  }

  static plan build(const sigma_grid& grid, const dpm_singlestep_options& solver, const sampler_options& options_in) {
    constexpr const char* fn = "dpm_solver_singlestep_sampler";
    const sampler_options options = adjusted(solver, options_in);
    validate_sigma_grid(fn, grid);
    detail::check_sigma_solver_options(fn, options);
    detail::check_dpm_options(fn, solver.order, solver.algorithm, solver.solver_type, options);
    if (options.prediction == prediction_type::flow)
      detail::throw_invalid(fn, "options.prediction", "is flow: this solver runs on VP levels", "flow");
    const std::size_t n = grid.size();
    const std::vector<int> orders = orders_of(grid, solver);
    plan p{fn, detail::sigma_grid_transitions(grid, false), std::vector<affine_step>(n)};
    p.rows.resize(n);
    p.history_slots = solver.order > 1 ? static_cast<std::size_t>(solver.order - 1) : 0;
    const bool eps = noise_space(solver.algorithm), sde = stochastic(solver.algorithm);
    const bool heun = solver.solver_type == dpm_solver_type::heun;
    const auto level_at = [&](std::size_t j) { return level::from_sigma_tilde(grid.sigmas[j]); };
    const auto lambda = [](level l) { return l.sigma == 0.0 ? std::numeric_limits<double>::infinity() : l.lambda(); };
    for (std::size_t i = 0; i < n; ++i) {
      const int k = orders[i];
      const std::size_t b = i + 1 - static_cast<std::size_t>(k);  // the block's first step
      const level s0 = level_at(i), t = level_at(i + 1), sb = level_at(b);
      const std::string where = detail::step_label(fn, i, p.transitions[i]);
      const double h = lambda(t) - lambda(sb);
      for (std::size_t j = b + 1; j <= i; ++j)
        if (!(lambda(level_at(j)) > lambda(level_at(j - 1))))
          detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(j) + "]",
                                "must be below grid.sigmas[" + std::to_string(j - 1) + "] (step " + std::to_string(i) +
                                    " of order " + std::to_string(k) + " fits through both)",
                                grid.sigmas[j]);
      const double e_minus = (t.sigma * sb.alpha) / (t.alpha * sb.sigma);  // e^{−h}, 0 at σ_t = 0
      affine_step& c = p.coefficients[i];
      c.pred = detail::with_context(where, [&] { return prediction_coefficients_on(fn, options.prediction, s0); });
      if (options.processing.use_clipped_model_output) {
        c.reeps_from_sample = 1.0 / s0.sigma;
        c.reeps_from_x0 = -s0.alpha / s0.sigma;
      }
      // cx: weight of the block's start sample; d0: of D_b; cd1, cd2: of the D1 / D2 expansions.
      double cx = 0.0, d0 = 0.0, cd1 = 0.0, cd2 = 0.0, cz = 0.0;
      const bool mid2 = k == 2 && !heun;  // order 2 midpoint: ½ of the first-order weight on D1
      if (!eps) {
        const double em1 = -(1.0 - e_minus);  // e^{−h} − 1
        if (!sde) {
          const detail::dpm_phi phi = detail::dpm_phi_minus(h);
          cx = t.sigma / sb.sigma;
          d0 = -t.alpha * em1;
          cd1 = mid2 ? -0.5 * t.alpha * em1 : t.alpha * phi.phi2;
          cd2 = -t.alpha * phi.phi3;
        } else {
          const double e2 = e_minus * e_minus, h2 = 2.0 * h;
          const double phi = std::isinf(h) ? 1.0 : (std::abs(h2) < 1e-4 ? h : (-std::expm1(-h2)) / (-h2) + 1.0);
          cx = t.sigma / sb.sigma * e_minus;
          d0 = t.alpha * (1.0 - e2);
          cd1 = heun ? t.alpha * phi : 0.5 * t.alpha * (1.0 - e2);
          cz = t.sigma * std::sqrt(std::max(0.0, 1.0 - e2));
        }
      } else {
        const double s_em1 = t.alpha * (sb.sigma / sb.alpha) - t.sigma;  // σ_t(e^h − 1), finite at σ_t = 0
        const detail::dpm_phi phi = detail::dpm_phi_plus(h);
        cx = t.alpha / sb.alpha;
        if (!sde) {
          d0 = -s_em1;
          cd1 = mid2 ? -0.5 * s_em1 : -t.sigma * phi.phi2;
          cd2 = -t.sigma * phi.phi3;
        } else {
          d0 = -2.0 * s_em1;
          cd1 = heun ? -2.0 * t.sigma * phi.phi2 : -s_em1;
          const double grown = t.alpha * sb.sigma / sb.alpha;  // σ_t·e^h
          cz = std::sqrt(std::max(0.0, grown * grown - t.sigma * t.sigma));
        }
      }
      // Weights of D_i (current), D_{b+1} (slot 1, order 3) and D_b (slot 0).
      double w_cur = d0, w_mid = 0.0, w_start = 0.0;
      if (k == 2) {
        const double r = (lambda(s0) - lambda(sb)) / h;
        w_cur = cd1 / r;
        w_start = d0 - cd1 / r;
      } else if (k == 3) {
        const double r0 = (lambda(s0) - lambda(sb)) / h, r1 = (lambda(level_at(b + 1)) - lambda(sb)) / h;
        w_cur = 0.0;
        w_start = d0;
        if (!heun) {  // cd1 on D1_1 = (D_cur − D_b)/r0
          w_cur += cd1 / r0;
          w_start -= cd1 / r0;
        } else {  // cd1·D1 + cd2·D2, D1 = (r0·D1_0 − r1·D1_1)/(r0 − r1), D2 = 2(D1_1 − D1_0)/(r0 − r1)
          const double on_10 = (cd1 * r0 - 2.0 * cd2) / (r0 - r1), on_11 = (2.0 * cd2 - cd1 * r1) / (r0 - r1);
          w_mid += on_10 / r1;
          w_start -= on_10 / r1;
          w_cur += on_11 / r0;
          w_start -= on_11 / r0;
        }
      }
      if (k == 1)
        c.sample_weight = cx;
      (eps ? c.eps_weight : c.x0_weight) = w_cur;
      c.noise_std = cz;
      solver_row& row = p.rows[i];
      row = solver_row{i, grid.timesteps[i], true, {}};
      row_extras& ex = row.extras;
      if (k > 1) ex.state_weight = cx;
      const bool continues = i + 1 < n && orders[i + 1] == k + 1;
      if (k == 1 && continues) ex.save_state = true;
      if (continues) {  // the next row of the block reads this row's D
        ex.store_slot = k - 1;
        if (!eps) {
          ex.store_x0 = 1.0;
        } else if (options.processing.use_clipped_model_output) {
          ex.store_sample = c.reeps_from_sample;
          ex.store_x0 = c.reeps_from_x0;
        } else {
          ex.store_sample = c.pred.eps_from_sample;
          ex.store_model = c.pred.eps_from_model;
        }
      }
      if (k >= 2) ex.history[ex.history_reads++] = history_term{0, w_start};
      if (k == 3) ex.history[ex.history_reads++] = history_term{1, w_mid};
    }
    return p;
  }

  static std::vector<int> orders_of(const sigma_grid& grid, const dpm_singlestep_options& solver) {
    return dpm_singlestep_order_list(grid.size(), solver.order, solver.lower_order_final, grid.sigmas.back() == 0.0);
  }

  std::vector<int> orders_;
};

}  // namespace skipstep
