/// @file
/// PNDM (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"; diffusers PNDMScheduler,
/// Stable Diffusion 1.x's default) as rows of the engine: the pseudo-linear-multistep PLMS (Adams–Bashforth on the
/// model outputs, orders 1–4) and its Runge–Kutta warm-up PRK (three four-stage steps). Every stage moves the sample
/// with the "pseudo" transfer of diffusers' _get_prev_sample from level t to level p:
///   x_p = √(ā_p/ā_t)·x − (ā_p − ā_t)·ε / (ā_t·√(1 − ā_p) + √(ā_t·(1 − ā_t)·ā_p)),
/// ε the combined model output (v-prediction converted with the stage's own source sample).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "skipstep/detail/error.hpp"
#include "skipstep/sampler.hpp"
#include "skipstep/schedule/sigma_grid.hpp"

namespace skipstep {

/// diffusers PNDMScheduler.set_timesteps: the model times in evaluation order. The base list is `spacing` with
/// diffusers' rules (leading i·⌊T/N⌋ + offset; linspace round(linspace(0, T−1, N)); trailing round(arange(T, 0,
/// −T/N)) − 1), ascending b_0 < ... < b_{N−1}. With skip_prk_steps: [b_{N−1}, b_{N−2}, b_{N−2}, b_{N−3}, ..., b_0]
/// (PLMS evaluates the second time twice). Without: the PRK times of the top four entries at half steps ⌊⌊T/N⌋/2⌋,
/// then [b_{N−4}, ..., b_0] (N ≥ 4 required; diffusers fails with a numpy broadcast error).
[[nodiscard]] inline std::vector<std::int64_t> pndm_timesteps(std::size_t num_train_timesteps, std::size_t num_steps,
                                                              bool skip_prk_steps = true,
                                                              timestep_spacing spacing = timestep_spacing::leading,
                                                              std::size_t steps_offset = 0) {
  constexpr const char* fn = "pndm_timesteps";
  if (num_steps == 0 || num_steps > num_train_timesteps)
    detail::throw_invalid(fn, "num_steps", "must be in [1, T = " + std::to_string(num_train_timesteps) + "]",
                          num_steps);
  if (skip_prk_steps && num_steps < 2)
    detail::throw_invalid(fn, "num_steps", "must be >= 2 for PLMS (its restart evaluates the second time twice)",
                          num_steps);
  if (!skip_prk_steps && num_steps < 4)
    detail::throw_invalid(fn, "num_steps", "must be >= 4 for the Runge-Kutta warm-up (skip_prk_steps = false)",
                          num_steps);
  const std::size_t ratio = num_train_timesteps / num_steps;
  std::vector<std::int64_t> base(num_steps);
  const double big_t = static_cast<double>(num_train_timesteps);
  for (std::size_t i = 0; i < num_steps; ++i) {
    switch (spacing) {
      case timestep_spacing::leading:
        base[i] = static_cast<std::int64_t>(i * ratio + steps_offset);
        break;
      case timestep_spacing::linspace:
        base[i] = static_cast<std::int64_t>(std::nearbyint(detail::numpy_linspace(0.0, big_t - 1.0, num_steps)[i]));
        break;
      case timestep_spacing::trailing: {
        const double step = -big_t / static_cast<double>(num_steps), delta = (big_t + step) - big_t;
        const std::size_t k = num_steps - 1 - i;  // arange(T, 0, −T/N) reversed
        const double v = k == 0 ? big_t : (k == 1 ? big_t + step : big_t + static_cast<double>(k) * delta);
        base[i] = static_cast<std::int64_t>(std::nearbyint(v)) - 1;
        break;
      }
      default:
        detail::throw_invalid(fn, "spacing", "is not a timestep_spacing value", static_cast<int>(spacing));
    }
  }
  if (base.back() >= static_cast<std::int64_t>(num_train_timesteps))
    detail::throw_invalid(fn, "steps_offset", "puts a model time outside [0, T)", steps_offset);
  std::vector<std::int64_t> out;
  if (skip_prk_steps) {
    out.push_back(base[num_steps - 1]);
    for (std::size_t k = num_steps - 1; k-- > 0;) {
      out.push_back(base[k]);
      if (k == num_steps - 2) out.push_back(base[k]);
    }
    return out;
  }
  const auto half = static_cast<std::int64_t>(ratio / 2);
  for (std::size_t b = 0; b < 3; ++b) {
    const std::int64_t top = base[num_steps - 1 - b];
    for (std::int64_t v : {top, top - half, top - half, top - 2 * half}) out.push_back(v);
  }
  for (std::size_t k = num_steps - 3; k-- > 0;) out.push_back(base[k]);
  return out;
}

namespace detail {

/// The PNDM transfer from level t to p as weights of its source sample and of the combined ε (see the file
/// comment); ā_p = final level when p < 0.
struct pndm_transfer {
  double source;   ///< √(ā_p/ā_t)
  double epsilon;  ///< −(ā_p − ā_t)/(ā_t·√(1 − ā_p) + √(ā_t·(1 − ā_t)·ā_p))
};
inline pndm_transfer pndm_transfer_between(double a_t, double a_p) {
  const double denom = a_t * std::sqrt(1.0 - a_p) + std::sqrt(a_t * (1.0 - a_t) * a_p);
  return {std::sqrt(a_p / a_t), -(a_p - a_t) / denom};
}

}  // namespace detail

/// PNDM with diffusers' rules on the model times of pndm_timesteps (PLMS: N + 1 evaluations, the second a Heun-like
/// restart that averages two outputs; PRK: 12 Runge–Kutta evaluations, then PLMS), every transfer to t − ⌊T/N⌋ (or
/// the final level: ā = 1, or ā_0 with with_final_alpha(alpha_cumprod_0)). Prediction: epsilon or v.
class pndm_sampler : public sampler {
 public:
  /// Builds the rows for N steps of `schedule`.
  template <class Real>
  pndm_sampler(const noise_schedule<Real>& schedule, std::size_t num_steps, bool skip_prk_steps = true,
               timestep_spacing spacing = timestep_spacing::leading, std::size_t steps_offset = 0,
               final_alpha after_last = final_alpha::one, sampler_options options = {})
      : sampler(build(schedule, num_steps, skip_prk_steps, spacing, steps_offset, after_last, options), options) {}

 private:
  template <class Real>
  static plan build(const noise_schedule<Real>& schedule, std::size_t num_steps, bool skip_prk, timestep_spacing spacing,
                    std::size_t offset, final_alpha after_last, const sampler_options& options) {
    constexpr const char* fn = "pndm_sampler";
    if (options.prediction != prediction_type::epsilon && options.prediction != prediction_type::v)
      detail::throw_invalid(fn, "options.prediction", "must be epsilon or v (PNDM works on epsilon)",
                            static_cast<int>(options.prediction));
    if (!options.processing.is_identity())
      detail::throw_invalid(fn, "options.processing", "must be none (PNDM has no x0 processing)",
                            static_cast<int>(options.processing.mode));
    const std::size_t big_t = schedule.num_train_timesteps();
    const std::vector<std::int64_t> times =
        detail::with_context(std::string("skipstep::") + fn,
                             [&] { return pndm_timesteps(big_t, num_steps, skip_prk, spacing, offset); });
    const auto stride = static_cast<std::int64_t>(big_t / num_steps);
    const double final_level = after_last == final_alpha::one ? 1.0 : schedule.alpha_cumprod(0);
    const auto level = [&](std::int64_t t) { return t >= 0 ? schedule.alpha_cumprod(static_cast<std::size_t>(t)) : final_level; };
    plan p{fn, {}, {}};
    p.history_slots = 5;  // ring of 3 appended outputs + PRK's second and third stages
    std::size_t appended = 0;  // model outputs PLMS has appended (diffusers' ets)
    const auto ets_slot = [](std::size_t j) { return static_cast<std::uint8_t>(j % 3); };
    // One evaluation: ε_comb = c_cur·m + Σ c_j·H_j, transferred from `source` (x or S) at level t to p.
    const auto add_row = [&](std::size_t step, std::int64_t eval_t, std::int64_t t, std::int64_t to, bool from_state,
                             double c_cur, std::vector<history_term> combo, int store, bool save, bool ends) {
      const double a_t = level(t), a_p = level(to);
      const detail::pndm_transfer w = detail::pndm_transfer_between(a_t, a_p);
      // ε = m (epsilon) or √ā_t·m + √(1 − ā_t)·source (v)
      const double ex = options.prediction == prediction_type::v ? std::sqrt(1.0 - a_t) : 0.0;
      const double em = options.prediction == prediction_type::v ? std::sqrt(a_t) : 1.0;
      affine_step c;
      c.pred = detail::prediction_coefficients_for(fn, "alpha_cumprod", options.prediction, a_t);
      c.pred.eps_from_sample = from_state ? 0.0 : w.source + w.epsilon * ex;
      c.pred.eps_from_model = w.epsilon * em * c_cur;
      c.eps_weight = 1.0;
      solver_row row{step, static_cast<double>(eval_t), ends, {}};
      if (from_state) row.extras.state_weight = w.source + w.epsilon * ex;
      for (const history_term& h : combo)
        row.extras.history[row.extras.history_reads++] = history_term{h.slot, w.epsilon * em * h.weight};
      row.extras.store_slot = store;
      row.extras.store_model = store >= 0 ? 1.0 : 0.0;
      row.extras.save_state = save;
      p.coefficients.push_back(c);
      p.rows.push_back(row);
    };
    const auto add_step = [&](std::int64_t t, std::int64_t to) {
      step_transition tr;
      tr.timestep = tr.source_timestep = t;
      tr.target_timestep = std::max<std::int64_t>(to, -1);
      tr.alpha_cumprod_from = level(t);
      tr.alpha_cumprod_to = level(to);
      tr.noise_allowed = false;
      p.transitions.push_back(tr);
      return p.transitions.size() - 1;
    };
    std::size_t e = 0;  // index into times
    if (!skip_prk) {
      const auto half = static_cast<std::int64_t>((big_t / num_steps) / 2);
      for (std::size_t b = 0; b < 3; ++b, e += 4) {
        const std::int64_t t = times[e];
        const std::size_t step = add_step(t, t - 2 * half);
        const int a_slot = ets_slot(appended);
        // a: ε = m_a from x (also saved as S) to t − h; b: m_b from S to t − h; c: m_c from S to t − 2h;
        // d: (m_a + 2 m_b + 2 m_c + m_d)/6 from S to t − 2h.
        add_row(step, times[e], t, t - half, false, 1.0, {}, a_slot, true, false);
        add_row(step, times[e + 1], t, t - half, true, 1.0, {}, 3, false, false);
        add_row(step, times[e + 2], t, t - 2 * half, true, 1.0, {}, 4, false, false);
        add_row(step, times[e + 3], t, t - 2 * half, true, 1.0 / 6.0,
                {{static_cast<std::uint8_t>(a_slot), 1.0 / 6.0}, {3, 1.0 / 3.0}, {4, 1.0 / 3.0}}, -1, false, true);
        ++appended;
      }
    }
    // PLMS: ε_comb over the newest output and up to three appended ones (Adams–Bashforth weights).
    static constexpr std::array<std::array<double, 4>, 4> ab{{{1.0, 0.0, 0.0, 0.0},
                                                               {3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0},
                                                               {23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0},
                                                               {55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0}}};
    bool restart_pending = skip_prk;  // PLMS alone: the second evaluation restarts the first step
    while (e < times.size()) {
      const std::int64_t t = times[e];
      if (skip_prk && e == 0) {
        const std::size_t step = add_step(t, t - stride);
        add_row(step, t, t, t - stride, false, 1.0, {}, ets_slot(appended), true, false);  // x_1' provisional
        ++appended;
        ++e;
        continue;
      }
      if (restart_pending && e == 1) {
        // Evaluated at t_1 on the provisional sample; restarts from S (at t_0) with (m + m_0)/2.
        const std::int64_t t0 = t + stride;
        add_row(p.transitions.size() - 1, t, t0, t, true, 0.5, {{ets_slot(0), 0.5}}, -1, false, true);
        restart_pending = false;
        ++e;
        continue;
      }
      const std::size_t step = add_step(t, t - stride);
      const std::size_t count = std::min<std::size_t>(appended + 1, 4);  // ets after appending this output
      std::vector<history_term> combo;
      for (std::size_t j = 1; j < count; ++j) combo.push_back({ets_slot(appended - j), ab[count - 1][j]});
      add_row(step, t, t, t - stride, false, ab[count - 1][0], combo, ets_slot(appended), false, true);
      ++appended;
      ++e;
    }
    return p;
  }
};

}  // namespace skipstep
