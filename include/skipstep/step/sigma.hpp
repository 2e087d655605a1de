/// @file
/// Sigma policies: how much fresh noise a step from level ā_k down to ā_s keeps (Song et al. 2021, eq. 12/16).
/// A policy is any callable taking a `step_context` and returning either a double σ (shapes the mean and is the
/// std of the added noise) or a `sigma_choice` (the two separately, e.g. the DDIM paper's σ̂ row).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skipstep/detail/error.hpp"

namespace skipstep {

/// Everything a sigma policy may look at for one step from training level t (ā_k) to the next level (ā_s).
struct step_context {
  double alpha_cumprod_t;     ///< ā_k, the level the step starts from.
  double alpha_cumprod_prev;  ///< ā_s, the level it lands on (1 for the clean end).
  std::size_t step_index;     ///< i = 0..N−1.
  std::size_t num_steps;      ///< N.
  std::int64_t timestep;      ///< t_i, the model's timestep.
  std::int64_t prev_timestep; ///< the target timestep, −1 for "after the last entry".
};

/// A policy's full answer: σ inside the DDIM direction term √(1 − ā_s − σ²), and the std of the added noise.
struct sigma_choice {
  double sigma = 0.0;      ///< σ_t of Song et al. eq. 12 (shapes the mean).
  double noise_std = 0.0;  ///< std of the Gaussian noise added after the mean.
};

/// σ of the DDPM posterior between the two levels: √((1−ā_s)/(1−ā_k) · (1 − ā_k/ā_s)) (Song et al. 2021, eq. 16
/// with η = 1; diffusers DDIMScheduler._get_variance, evaluated in that order). 0 when ā_k = ā_s or ā_k = 1.
[[nodiscard]] inline double ddpm_sigma(double alpha_cumprod_t, double alpha_cumprod_prev) noexcept {
  const double beta_t = 1.0 - alpha_cumprod_t;
  if (beta_t == 0.0 || alpha_cumprod_t == alpha_cumprod_prev) return 0.0;
  const double variance = ((1.0 - alpha_cumprod_prev) / beta_t) * (1.0 - alpha_cumprod_t / alpha_cumprod_prev);
  return variance > 0.0 ? std::sqrt(variance) : 0.0;
}

/// The η family (Song et al. 2021, eq. 16): σ = η·√((1−ā_s)/(1−ā_k))·√(1 − ā_k/ā_s). η = 0 is deterministic DDIM,
/// η = 1 the DDPM posterior. η must be finite and ≥ 0 (η > 1 is allowed while σ² ≤ 1 − ā_s holds at every step).
struct eta {
  double value = 0.0;  ///< η.
  /// η must be finite and ≥ 0 (std::invalid_argument otherwise).
  explicit eta(double v = 0.0) : value(v) {
    if (!(v >= 0.0) || !std::isfinite(v)) detail::throw_invalid("eta", "value", "must be finite and >= 0", v);
  }
  /// σ for the step described by `c`.
  [[nodiscard]] double operator()(const step_context& c) const noexcept {
    return value == 0.0 ? 0.0 : value * ddpm_sigma(c.alpha_cumprod_t, c.alpha_cumprod_prev);
  }
};

/// The DDIM paper's "larger variance" row σ̂ (Song et al. 2021, §5.1, Table 1; DDPM's fixed_large): the mean of
/// η = 1 (σ = DDPM posterior σ in the direction term) with added noise of std σ̂ = √(1 − ā_k/ā_s). σ̂ itself
/// cannot go into the direction term: 1 − ā_s − σ̂² < 0 on some steps.
struct larger_variance {
  /// {σ of η = 1, σ̂} for the step described by `c`.
  [[nodiscard]] sigma_choice operator()(const step_context& c) const noexcept {
    const double r = c.alpha_cumprod_t == c.alpha_cumprod_prev ? 0.0 : 1.0 - c.alpha_cumprod_t / c.alpha_cumprod_prev;
    return {ddpm_sigma(c.alpha_cumprod_t, c.alpha_cumprod_prev), r > 0.0 ? std::sqrt(r) : 0.0};
  }
};

/// A per-step list of σ values, σ_i for step i (e.g. tuned offline). Its size must equal the number of steps N.
struct sigma_list {
  std::vector<double> values;  ///< σ_i for step i.
  /// values[c.step_index]; throws std::invalid_argument unless values.size() equals c.num_steps.
  [[nodiscard]] double operator()(const step_context& c) const {
    if (values.size() != c.num_steps)
      detail::throw_invalid("sigma_list", "sigma_list.values.size()",
                            "must equal the number of steps N = " + std::to_string(c.num_steps), values.size());
    return values[c.step_index];
  }
};

/// A callable usable as a sigma policy.
template <class P>
concept SigmaPolicy = std::invocable<const P&, const step_context&> &&
                      (std::convertible_to<std::invoke_result_t<const P&, const step_context&>, double> ||
                       std::convertible_to<std::invoke_result_t<const P&, const step_context&>, sigma_choice>);

namespace detail {

/// Validates the σ and the noise std of one step that lands on level ā_s = alpha_cumprod_prev: both finite and
/// ≥ 0, and σ² ≤ 1 − ā_s (the radicand of DDIM's direction term, Song et al. 2021 eq. 12), up to a relative 1e-12
/// of rounding (which the step clamps). Throws std::domain_error naming `function`, the field and the value.
inline void check_sigma_choice(std::string_view function, std::string_view sigma_name, std::string_view noise_name,
                               const sigma_choice& s, double alpha_cumprod_prev) {
  if (!(s.sigma >= 0.0) || !std::isfinite(s.sigma))
    throw_domain(function, sigma_name, "must be finite and >= 0", s.sigma);
  if (!(s.noise_std >= 0.0) || !std::isfinite(s.noise_std))
    throw_domain(function, noise_name, "must be finite and >= 0", s.noise_std);
  const double room = 1.0 - alpha_cumprod_prev;
  if (s.sigma * s.sigma > room * (1.0 + 1e-12) + 1e-300)
    throw_domain(function, sigma_name, "must satisfy sigma^2 <= 1 - alpha_cumprod_prev = " + format_value(room),
                 s.sigma);
}

/// Evaluates a policy and validates its answer with check_sigma_choice. Throws std::domain_error naming the
/// policy's field and the value (the sampler puts its own name, the step and the timestep in front).
template <SigmaPolicy P>
[[nodiscard]] sigma_choice evaluate_sigma(const P& policy, const step_context& c) {
  sigma_choice s;
  using result = std::invoke_result_t<const P&, const step_context&>;
  if constexpr (std::convertible_to<result, sigma_choice> && !std::convertible_to<result, double>) {
    s = policy(c);
  } else {
    const double v = static_cast<double>(policy(c));
    s = {v, v};
  }
  const std::string where =
      "sigma policy at step " + std::to_string(c.step_index) + " (t = " + std::to_string(c.timestep) + ")";
  check_sigma_choice(where, "sigma policy's sigma", "sigma policy's noise_std", s, c.alpha_cumprod_prev);
  return s;
}

}  // namespace detail
}  // namespace skipstep
