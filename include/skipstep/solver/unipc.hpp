/// @file
/// UniPC, the unified predictor-corrector (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for
/// Fast Sampling of Diffusion Models"; diffusers UniPCMultistepScheduler, scheduling_unipc_multistep.py) as rows of
/// the engine. With λ = log(α/σ), h = λ_t − λ_s and D the model output converted to x̂0 (data prediction,
/// `predict_x0`) or ε̂ (noise prediction), the predictor UniP-p from x_s is
///   x_t = (σ_t/σ_s)·x_s − α_t(e^{−h} − 1)·D_s − α_t·B(h)·Σ_{k<p} ρ_k·(D_{s_k} − D_s)/r_k      (data prediction)
///   x_t = (α_t/α_s)·x_s − σ_t(e^{h} − 1)·D_s − σ_t·B(h)·Σ_{k<p} ρ_k·(D_{s_k} − D_s)/r_k       (noise prediction)
/// with r_k = (λ_{s_k} − λ_s)/h over the past levels s_k, B(h) = ∓h (bh1) or e^{∓h} − 1 (bh2), and ρ solving the
/// order conditions R·ρ = b (Zhao et al. 2023, Theorem 3.1 and Algorithm 2; R_jk = r_k^{j−1}, b_j =
/// φ_j(∓h)·j!/B(h), φ_j(x) = Σ_{n≥1} xⁿ/(n + j)!). The corrector UniC-p uses the model output D_t at the predicted x_t
/// (the next step's evaluation, so it costs no network call) as one more node with r = 1:
///   x_t^c = (σ_t/σ_s)·x_s^c − α_t(e^{−h} − 1)·D_s − α_t·B(h)·(Σ_{k<p} ρ_k·(D_{s_k} − D_s)/r_k + ρ_p·(D_t − D_s)).
/// Both are linear in the saved corrected sample S = x_s^c, the current D and past D's, so step i is one row: the
/// corrector of x_i (into S) and the predictor from it, x_{i+1} = A_p·(A_c·S + ...) + ..., every weight in double.
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
#include "skipstep/solver/dpm_solver.hpp"
#include "skipstep/solver/euler.hpp"

namespace skipstep {

/// UniPC's B(h) (diffusers `solver_type`; Zhao et al. 2023, §3.3 and Appendix C).
enum class unipc_variant {
  bh1,  ///< B(h) = h (of the signed step, −h for data prediction), recommended for unconditional sampling.
  bh2,  ///< B(h) = e^h − 1 (signed likewise), the default.
};

/// Options of UniPC, with diffusers' defaults.
struct unipc_options {
  int order = 2;                                ///< solver_order p, 1–3 (the corrector makes the method order p + 1).
  unipc_variant variant = unipc_variant::bh2;   ///< solver_type.
  bool predict_x0 = true;                       ///< data prediction (x̂0) or noise prediction (ε̂).
  bool lower_order_final = true;                ///< order min(p, N − i) at step i (no N < 15 condition).
  bool use_corrector = true;                    ///< false: UniP alone (no corrector anywhere).
  /// Step indices j whose predicted sample is not corrected (diffusers `disable_corrector`: the corrector that
  /// would run at step j + 1 with that step's model output is skipped). Each must be < N − 1.
  std::vector<std::size_t> disable_corrector = {};
  grid_path path = grid_path::vp;  ///< the path of the grid's levels (flow: use_flow_sigmas).
};

namespace detail {

/// φ_j(x) = Σ_{n≥1} xⁿ/(n + j)! = (e^x − Σ_{n≤j} xⁿ/n!)/x^j for j = 1..3 (diffusers' h_phi_k after j updates):
/// by its series for |x| < 1, where the recursion φ_j = φ_{j−1}/x − 1/j! diffusers uses loses a factor 1/|x| per
/// step, and by that recursion from expm1 elsewhere.
inline std::array<double, 3> unipc_phi(double x) {
  std::array<double, 3> phi{};
  if (std::abs(x) < 1.0) {
    for (int j = 1; j <= 3; ++j) {
      double term = 1.0, sum = 0.0;  // term = xⁿ/(n + j)!
      for (int k = 1; k <= j; ++k) term /= k;
      for (int n = 1; n <= 30; ++n) {
        term *= x / (n + j);
        sum += term;
      }
      phi[static_cast<std::size_t>(j - 1)] = sum;
    }
    return phi;
  }
  double f = std::expm1(x) / x - 1.0, fact = 1.0;
  for (int j = 1; j <= 3; ++j) {
    phi[static_cast<std::size_t>(j - 1)] = f;
    fact *= j + 1;
    f = f / x - 1.0 / fact;
  }
  return phi;
}

/// Solves the n×n system a·y = b (n ≤ 3) by Gaussian elimination with partial pivoting, in double. Throws
/// std::invalid_argument naming `function` when a pivot is 0 (the nodes r_k are not distinct).
inline std::array<double, 3> solve_small(const char* function, std::array<std::array<double, 3>, 3> a,
                                         std::array<double, 3> b, std::size_t n) {
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r][c]) > std::abs(a[piv][c])) piv = r;
    if (!(std::abs(a[piv][c]) > 0.0) || !std::isfinite(a[piv][c]))
      throw_invalid(function, "grid", "gives a singular UniPC order system (repeated levels)", a[piv][c]);
    std::swap(a[c], a[piv]);
    std::swap(b[c], b[piv]);
    for (std::size_t r = c + 1; r < n; ++r) {
      const double f = a[r][c] / a[c][c];
      for (std::size_t k = c; k < n; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  std::array<double, 3> y{};
  for (std::size_t c = n; c-- > 0;) {
    double v = b[c];
    for (std::size_t k = c + 1; k < n; ++k) v -= a[c][k] * y[k];
    y[c] = v / a[c][c];
  }
  return y;
}

/// One UniP or UniC update from level s to level t as weights: x_t = sample·x_s + Σ_j weight[j]·D_j, weight[0] on D
/// at s, weight[k] on the k-th past node before s, and weight[3] on the corrector's new evaluation D_t.
struct unipc_update {
  double sample = 0.0;                ///< the weight of x_s.
  std::array<double, 4> weight = {};  ///< the weights of D_s, D_{s_1}, D_{s_2} and (corrector) D_t.
};

}  // namespace detail

/// UniPC multistep on a σ grid (VP or flow levels) with every rule of diffusers' UniPCMultistepScheduler: the
/// order warms up (min(i + 1, p) at step i), lower_order_final gives min(p, N − i), the corrector of step i uses
/// the order of the predictor it corrects and is off at step 0 and after the steps in disable_corrector, ρ = ½ for
/// the order-2 predictor and the order-1 corrector (diffusers' simplified forms), and ρ from R·ρ = b otherwise,
/// solved in double by Gaussian elimination (diffusers solves in float32 LAPACK; the difference is float32 rounding
/// of ρ, which its reference bounds absorb). The workspace holds p history buffers (D of the last p steps) and S.
/// Where diffusers gives NaN or ±inf, skipstep takes the limit or refuses:
///  - a last step to σ = 0 at order 1 is its limit h → ∞, x_N = x̂0 (data prediction; diffusers: NaN with bh1) or
///    x_N = α_N·(x^c − σ_s·ε̂)/α_s (noise prediction, σ_t(e^h − 1) = α_t·σ_s/α_s − σ_t; diffusers: 0·inf = NaN);
///  - a last step to σ = 0 at order ≥ 2 (lower_order_final = false) has no finite limit (r_k → 0): refused with
///    std::invalid_argument (diffusers: ±inf at order 2, LinAlgError at order 3);
///  - a step with h = 0 (a repeated final level, e.g. Karras with final sigma_min) is the identity, its limit
///    (diffusers: NaN at order 3, where b is 0/0).
/// Thresholding (dynamic_threshold) applies to x̂0 with predict_x0; noise prediction refuses any processing (diffusers
/// silently ignores `thresholding` there), and flow prediction needs a flow grid and predict_x0 (diffusers raises
/// without predict_x0, and on VP levels it would use σ̃ where the path has σ).
class unipc_sampler : public sampler {
 public:
  /// Builds the rows of `grid` (make_multistep_grid for VP levels, make_multistep_flow_grid with
  /// solver.path = flow). Throws std::invalid_argument naming the argument and value for a bad configuration.
  explicit unipc_sampler(const sigma_grid& grid, unipc_options solver = {}, sampler_options options = {})
      : sampler(build(grid, solver, options), options) {}

  /// The UniP order of step i of N (diffusers' `this_order`): min(p, i + 1, N − i) with lower_order_final, else
  /// min(p, i + 1) (the warm-up: step i has i earlier evaluations).
  [[nodiscard]] static int predictor_order(const unipc_options& solver, std::size_t i, std::size_t n) {
    std::size_t p = static_cast<std::size_t>(solver.order);
    if (solver.lower_order_final) p = std::min(p, n - i);
    return static_cast<int>(std::min(p, i + 1));
  }
  /// True when step i applies the corrector to x_i (diffusers' `use_corrector`): i ≥ 1 and i − 1 not disabled.
  [[nodiscard]] static bool corrects(const unipc_options& solver, std::size_t i) {
    if (!solver.use_corrector || i == 0) return false;
    return std::find(solver.disable_corrector.begin(), solver.disable_corrector.end(), i - 1) ==
           solver.disable_corrector.end();
  }

 private:
  static plan build(const sigma_grid& grid, const unipc_options& solver, const sampler_options& options) {
    constexpr const char* fn = "unipc_sampler";
    const bool flow = solver.path == grid_path::flow;
    if (solver.path != grid_path::vp && !flow)
      detail::throw_invalid(fn, "solver.path", "is not a grid_path value", static_cast<int>(solver.path));
    if (!flow) {
      validate_sigma_grid(fn, grid);
    } else {
      if (grid.timesteps.empty() || grid.sigmas.size() != grid.timesteps.size() + 1)
        detail::throw_invalid(fn, "grid.sigmas.size()", "must be timesteps.size() + 1 (>= 2)", grid.sigmas.size());
      for (std::size_t i = 0; i < grid.sigmas.size(); ++i)
        if (!(grid.sigmas[i] >= 0.0 && grid.sigmas[i] < 1.0) || (i > 0 && grid.sigmas[i] > grid.sigmas[i - 1]) ||
            (i + 1 < grid.sigmas.size() && grid.sigmas[i] == 0.0))
          detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i) + "]",
                                "must be in [0, 1) and non-increasing for a flow grid (> 0 before the last)",
                                grid.sigmas[i]);
    }
    detail::check_sigma_solver_options(fn, options);
    if (solver.order < 1 || solver.order > 3) detail::throw_invalid(fn, "solver.order", "must be 1, 2 or 3", solver.order);
    if (solver.variant != unipc_variant::bh1 && solver.variant != unipc_variant::bh2)
      detail::throw_invalid(fn, "solver.variant", "is not a unipc_variant value", static_cast<int>(solver.variant));
    const std::size_t n = grid.size();
    for (std::size_t j : solver.disable_corrector)
      if (j + 1 >= n)
        detail::throw_invalid(fn, "solver.disable_corrector",
                              "entries must be step indices < N - 1 = " + std::to_string(n - 1) +
                                  " (the corrector of step j runs at step j + 1)",
                              j);
    if (options.processing.mode == x0_processing::kind::clip)
      detail::throw_invalid(fn, "options.processing", "supports none or dynamic_threshold (diffusers' thresholding)",
                            "clip");
    if (!solver.predict_x0 && !options.processing.is_identity())
      detail::throw_invalid(fn, "options.processing", "must be none with predict_x0 = false (no x0 to process)",
                            static_cast<int>(options.processing.mode));
    if (options.processing.use_clipped_model_output)
      detail::throw_invalid(fn, "options.processing.use_clipped_model_output", "is not a UniPC option", true);
    if (options.prediction == prediction_type::flow && (!solver.predict_x0 || !flow))
      detail::throw_invalid(fn, "options.prediction",
                            "is flow: flow prediction needs a flow grid (solver.path = flow) and predict_x0 = true",
                            "flow");
    // Levels strictly decrease before the last one (a repeated interior level makes r_k = 0: no UniPC update).
    for (std::size_t i = 1; i < n; ++i)
      if (!(grid.sigmas[i] < grid.sigmas[i - 1]))
        detail::throw_invalid(fn, "grid.sigmas[" + std::to_string(i) + "]",
                              "must be below grid.sigmas[" + std::to_string(i - 1) + "] (UniPC needs distinct levels)",
                              grid.sigmas[i]);
    std::vector<level> lv(n + 1);
    std::vector<double> lambda(n + 1);
    for (std::size_t i = 0; i <= n; ++i) {
      lv[i] = flow ? level::flow(grid.sigmas[i]) : level::from_sigma_tilde(grid.sigmas[i]);
      lambda[i] = lv[i].sigma == 0.0 ? std::numeric_limits<double>::infinity() : lv[i].lambda();
    }
    const bool x0 = solver.predict_x0;
    const bool bh1 = solver.variant == unipc_variant::bh1;

    // One update from level s to level t of the given order: its past nodes are the levels past, past − 1, ... (the
    // order − 1 evaluations before s), and, for the corrector, the new evaluation at t is one more node (r = 1).
    const auto update = [&](std::size_t s, std::size_t t, std::size_t past, bool corrector, int order) {
      detail::unipc_update u;
      const level ls = lv[s], lt = lv[t];
      const double h = lambda[t] - lambda[s];
      if (h == 0.0) {  // a repeated level: the identity (the limit h → 0 of every term)
        u.sample = 1.0;
        return u;
      }
      if (std::isinf(h)) {  // σ_t = 0: only the first-order update has a limit
        if (order > 1 || corrector)
          detail::throw_invalid(fn, "solver.order on this step to sigma = 0",
                                "must be 1 there, as lower_order_final = true makes it: UniPC of order >= 2 has no "
                                "finite limit at h = inf (r_k -> 0; diffusers gives +-inf or LinAlgError); or end the "
                                "grid at sigma_min",
                                order);
        if (x0) {
          u.sample = 0.0;              // σ_t/σ_s
          u.weight[0] = lt.alpha;      // −α_t(e^{−h} − 1) = α_t
        } else {
          u.sample = lt.alpha / ls.alpha;
          u.weight[0] = -(lt.alpha * ls.sigma / ls.alpha - lt.sigma);  // −σ_t(e^h − 1)
        }
        return u;
      }
      const double hh = x0 ? -h : h;
      const double scale = x0 ? lt.alpha : lt.sigma;
      const double h_phi_1 = std::expm1(hh);
      const double b_h = bh1 ? hh : h_phi_1;
      u.sample = x0 ? lt.sigma / ls.sigma : lt.alpha / ls.alpha;
      u.weight[0] = -scale * h_phi_1;
      const std::size_t k_count = static_cast<std::size_t>(order) - 1;  // past nodes used
      if (k_count == 0 && !corrector) return u;
      std::array<double, 3> r{};
      for (std::size_t k = 0; k < k_count; ++k) r[k] = (lambda[past - k] - lambda[s]) / h;
      std::array<double, 3> rho{};
      if (!corrector && order == 2) {
        rho[0] = 0.5;
      } else if (corrector && order == 1) {
        rho[0] = 0.5;
      } else {
        const std::array<double, 3> phi = detail::unipc_phi(hh);
        const std::size_t m = corrector ? k_count + 1 : k_count;  // unknowns
        std::array<std::array<double, 3>, 3> a{};
        std::array<double, 3> b{};
        std::array<double, 3> nodes = r;
        if (corrector) nodes[k_count] = 1.0;
        double fact = 1.0;
        for (std::size_t j = 0; j < m; ++j) {
          fact *= static_cast<double>(j + 1);
          b[j] = phi[j] * fact / b_h;
          for (std::size_t k = 0; k < m; ++k) a[j][k] = std::pow(nodes[k], static_cast<double>(j));
        }
        rho = detail::solve_small(fn, a, b, m);
      }
      const double c = -scale * b_h;
      for (std::size_t k = 0; k < k_count; ++k) {  // c·ρ_k·(D_{s_k} − D_s)/r_k
        u.weight[k + 1] += c * rho[k] / r[k];
        u.weight[0] -= c * rho[k] / r[k];
      }
      if (corrector) {  // c·ρ_last·(D_t − D_s)
        u.weight[3] += c * rho[k_count];
        u.weight[0] -= c * rho[k_count];
      }
      return u;
    };

    plan p{fn, detail::sigma_grid_transitions(grid, flow), std::vector<affine_step>(n)};
    p.rows.resize(n);
    const std::size_t ring = static_cast<std::size_t>(solver.order);
    p.history_slots = ring;
    const auto slot = [&](std::size_t step) { return static_cast<std::uint8_t>(step % ring); };
    for (std::size_t i = 0; i < n; ++i) {
      const std::string where = detail::step_label(fn, i, p.transitions[i]);
      affine_step& core = p.coefficients[i];
      core.pred = detail::with_context(where, [&] { return prediction_coefficients_on(fn, options.prediction, lv[i]); });
      // total[j]: the weight of D_{i−j} in x_{i+1}; state[j]: its weight in the corrected x_i (the new S).
      std::array<double, 4> total{}, state{};
      double sample_weight = 0.0, state_weight = 0.0, state_keep = 0.0;
      const int po = predictor_order(solver, i, n);
      const detail::unipc_update pred =
          detail::with_context(where, [&] { return update(i, i + 1, i >= 1 ? i - 1 : 0, false, po); });
      const bool corr = corrects(solver, i);
      if (corr) {
        const int co = predictor_order(solver, i - 1, n);
        const detail::unipc_update c = detail::with_context(
            where + " (corrector)", [&] { return update(i - 1, i, i >= 2 ? i - 2 : 0, true, co); });
        // x_i^c = A_c·S + c.w[3]·D_i + c.w[0]·D_{i−1} + c.w[1]·D_{i−2} + c.w[2]·D_{i−3}
        state_keep = c.sample;
        state[0] = c.weight[3];
        for (std::size_t k = 0; k < 3; ++k) state[k + 1] = c.weight[k];
        state_weight = pred.sample * c.sample;
        for (std::size_t j = 0; j < 4; ++j) total[j] = pred.sample * state[j];
      } else {
        sample_weight = pred.sample;
      }
      for (std::size_t j = 0; j < 3; ++j) total[j] += pred.weight[j];
      // The core carries the current D (x̂0 or ε̂) and x; S and the past D's are the row's extras.
      core.sample_weight = sample_weight;
      (x0 ? core.x0_weight : core.eps_weight) = total[0];
      solver_row& row = p.rows[i];
      row = solver_row{i, grid.timesteps[i], true, {}};
      row_extras& ex = row.extras;
      ex.store_slot = static_cast<int>(slot(i));
      if (x0) {
        ex.store_x0 = 1.0;
      } else {
        ex.store_sample = core.pred.eps_from_sample;
        ex.store_model = core.pred.eps_from_model;
      }
      ex.state_weight = state_weight;
      for (std::size_t j = 1; j <= ring && j <= i; ++j)
        if (total[j] != 0.0 || state[j] != 0.0)
          ex.history[ex.history_reads++] = history_term{slot(i - j), total[j], state[j]};
      if (corr) {
        ex.combine_state = true;
        ex.state_from_state = state_keep;
        if (x0) {
          ex.state_from_x0 = state[0];
        } else {
          ex.state_from_sample = state[0] * core.pred.eps_from_sample;
          ex.state_from_model = state[0] * core.pred.eps_from_model;
        }
      } else if (i + 1 < n && corrects(solver, i + 1)) {
        ex.save_state = true;  // the next step corrects from this step's input
      }
    }
    return p;
  }
};

}  // namespace skipstep
