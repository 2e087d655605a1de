/// @file
/// The DDPM posterior q(x_s | x_k, x̂0) between any two levels s < k (respaced DDPM; Ho et al. 2020 eq. 6–7,
/// Nichol & Dhariwal 2021 §4) and the ancestral step built on it, with every diffusers variance type.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "skipstep/detail/error.hpp"
#include "skipstep/prediction.hpp"
#include "skipstep/step/affine_step.hpp"

namespace skipstep {

/// The variance of the ancestral step (diffusers DDPMScheduler `variance_type`):
///  fixed_small: β̃ = (1−ā_s)/(1−ā_k)·(1 − ā_k/ā_s) (posterior variance), fixed_large: β = 1 − ā_k/ā_s,
///  *_log: the same computed through log/exp, learned: the model's variance v, learned_range:
///  exp(frac·log β + (1−frac)·log β̃) with frac = (v + 1)/2 (Nichol & Dhariwal 2021, eq. 15).
enum class variance_type {
  fixed_small,
  fixed_small_log,
  fixed_large,
  fixed_large_log,
  learned,
  learned_range
};

/// Parses diffusers' variance type names.
[[nodiscard]] inline variance_type parse_variance_type(std::string_view name) {
  if (name == "fixed_small")
    return variance_type::fixed_small;
  if (name == "fixed_small_log")
    return variance_type::fixed_small_log;
  if (name == "fixed_large")
    return variance_type::fixed_large;
  if (name == "fixed_large_log")
    return variance_type::fixed_large_log;
  if (name == "learned")
    return variance_type::learned;
  if (name == "learned_range")
    return variance_type::learned_range;
  detail::throw_invalid("parse_variance_type", "name", "is not a diffusers variance type", name);
}

/// diffusers' name of a variance type ("fixed_small", ..., "learned_range").
[[nodiscard]] inline const char* variance_type_name(variance_type type) noexcept {
  switch (type) {
    case variance_type::fixed_small:
      return "fixed_small";
    case variance_type::fixed_small_log:
      return "fixed_small_log";
    case variance_type::fixed_large:
      return "fixed_large";
    case variance_type::fixed_large_log:
      return "fixed_large_log";
    case variance_type::learned:
      return "learned";
    case variance_type::learned_range:
      return "learned_range";
  }
  return "unknown";
}

namespace detail {

/// A variance type for an error message: its diffusers name, or "variance_type(17)" for a value outside the enum.
[[nodiscard]] inline std::string describe_variance_type(variance_type type) {
  const std::string name = variance_type_name(type);
  return name != "unknown" ? name : "variance_type(" + std::to_string(static_cast<int>(type)) + ")";
}

}  // namespace detail

/// Posterior q(x_s | x_k, x0) = N(x0_coeff·x0 + sample_coeff·x_k, posterior_variance) for levels ā_k < ā_s:
///   α = ā_k/ā_s, β = 1 − α, x0_coeff = √ā_s·β/(1−ā_k), sample_coeff = √α·(1−ā_s)/(1−ā_k),
///   posterior_variance = max((1−ā_s)/(1−ā_k)·β, 1e-20) (Ho et al. 2020 eq. 7; diffusers DDPMScheduler.step
///   and _get_variance, including its 1e-20 floor).
struct ddpm_posterior {
  double x0_coeff = 0.0;            ///< coefficient of x0 in the posterior mean.
  double sample_coeff = 0.0;        ///< coefficient of x_k in the posterior mean.
  double posterior_variance = 0.0;  ///< β̃, the posterior variance ("fixed_small"), floored at 1e-20.
  double beta = 0.0;                ///< 1 − ā_k/ā_s, the "fixed_large" variance; 0 for equal levels.

  /// True for the six diffusers variance types (false for a value cast from outside the enum).
  [[nodiscard]] static constexpr bool is_known(variance_type type) noexcept {
    return static_cast<int>(type) >= 0 && static_cast<int>(type) <= static_cast<int>(variance_type::learned_range);
  }

  /// The std of the added noise for a fixed variance type (not learned/learned_range, which need the model).
  /// fixed_large_log is computed correctly as exp(½·log β) (diffusers takes √ of a log here and gets NaN).
  [[nodiscard]] double noise_std(variance_type type) const {
    if (beta == 0.0 && is_known(type)) return 0.0;  // equal levels: an identity step, no noise (not √1e-20)
    switch (type) {
      case variance_type::fixed_small:
        return std::sqrt(posterior_variance);
      case variance_type::fixed_small_log:
        return std::exp(0.5 * std::log(posterior_variance));
      case variance_type::fixed_large:
        return std::sqrt(beta);
      case variance_type::fixed_large_log:
        return beta > 0.0 ? std::exp(0.5 * std::log(beta)) : 0.0;
      case variance_type::learned:
      case variance_type::learned_range:
        break;
    }
    if (type == variance_type::learned || type == variance_type::learned_range)
      detail::throw_invalid("ddpm_posterior::noise_std", "type",
                            "needs the model's variance output (learned types)", variance_type_name(type));
    detail::throw_invalid("ddpm_posterior::noise_std", "type", "is not a variance_type value",
                          detail::describe_variance_type(type));
  }

  /// The std for a learned variance type given the model's value v at one element: learned: √v;
  /// learned_range: exp(½·(frac·log β + (1−frac)·log β̃)), frac = (v+1)/2.
  [[nodiscard]] double learned_noise_std(variance_type type, double v) const {
    if (beta == 0.0) return 0.0;  // equal levels: an identity step
    if (type == variance_type::learned)
      return std::sqrt(std::max(v, 0.0));
    const double frac = (v + 1.0) / 2.0;
    const double log_var =
        frac * std::log(std::max(beta, 1e-20)) + (1.0 - frac) * std::log(posterior_variance);
    return std::exp(0.5 * log_var);
  }
};

/// The posterior between levels ā_k (alpha_cumprod_t) and ā_s (alpha_cumprod_prev ≥ ā_k). Requires ā_k < 1, except
/// for two equal levels (also ā = 1 twice, a schedule whose first β round ā to 1): that is the identity step,
/// x_s = x_k with β = 0 and no noise.
[[nodiscard]] inline ddpm_posterior ddpm_posterior_at(double alpha_cumprod_t, double alpha_cumprod_prev) {
  constexpr const char* fn = "ddpm_posterior_at";
  if (!(alpha_cumprod_t >= 0.0 && alpha_cumprod_t <= 1.0))
    detail::throw_invalid(fn, "alpha_cumprod_t", "must be in [0, 1]", alpha_cumprod_t);
  if (!(alpha_cumprod_prev >= alpha_cumprod_t && alpha_cumprod_prev <= 1.0))
    detail::throw_invalid(fn, "alpha_cumprod_prev", "must be in [alpha_cumprod_t, 1]", alpha_cumprod_prev);
  ddpm_posterior p;
  if (alpha_cumprod_t == alpha_cumprod_prev) {
    // Equal levels (ā = 0 twice with T = 1 and zero terminal SNR, ā = 1 twice after β that round away): identity.
    p.sample_coeff = 1.0;
    p.posterior_variance = 1e-20;  // diffusers' floor, kept for learned_range's log; the std is 0 (beta == 0)
    return p;
  }
  if (alpha_cumprod_t == 1.0)
    detail::throw_invalid(fn, "alpha_cumprod_t", "must be < 1 unless alpha_cumprod_prev equals it",
                          alpha_cumprod_t);
  const double beta_prod_t = 1.0 - alpha_cumprod_t;
  const double beta_prod_prev = 1.0 - alpha_cumprod_prev;
  const double current_alpha = alpha_cumprod_t / alpha_cumprod_prev;
  p.beta = 1.0 - current_alpha;
  p.x0_coeff = (std::sqrt(alpha_cumprod_prev) * p.beta) / beta_prod_t;
  p.sample_coeff = std::sqrt(current_alpha) * beta_prod_prev / beta_prod_t;
  p.posterior_variance = std::max(beta_prod_prev / beta_prod_t * p.beta, 1e-20);
  return p;
}

/// Ancestral DDPM step from ā_t to ā_prev (Ho et al. 2020, Algorithm 2, respaced):
///   x_prev = x0_coeff·P(x̂0) + sample_coeff·x + σ·z, σ from `type` (0 when `add_noise` is false).
/// For learned types the std is per element: use apply_ddpm_learned_step.
[[nodiscard]] inline affine_step ddpm_step(prediction_type kind, double alpha_cumprod_t,
                                           double alpha_cumprod_prev, variance_type type,
                                           bool add_noise = true) {
  constexpr const char* fn = "ddpm_step";
  if (!ddpm_posterior::is_known(type))
    detail::throw_invalid(fn, "type", "is not a variance_type value", detail::describe_variance_type(type));
  const ddpm_posterior p = detail::with_context("skipstep::ddpm_step", [&] {
    return ddpm_posterior_at(alpha_cumprod_t, alpha_cumprod_prev);
  });
  affine_step c;
  // The identity step between equal levels never reads x̂0's map; sample prediction at ā = 1 has none.
  c.pred = (p.beta == 0.0 && kind == prediction_type::sample && alpha_cumprod_t == 1.0)
               ? prediction_coefficients{0.0, 1.0, 0.0, 0.0}
               : detail::prediction_coefficients_for(fn, "alpha_cumprod_t", kind, alpha_cumprod_t);
  c.x0_weight = p.x0_coeff;
  c.sample_weight = p.sample_coeff;
  const bool learned = type == variance_type::learned || type == variance_type::learned_range;
  c.noise_std = (add_noise && !learned) ? p.noise_std(type) : 0.0;
  if (add_noise && learned && p.beta != 0.0)
    c.noise_std = 1.0;  // scaled per element by apply_ddpm_learned_step
  return c;
}

/// Ancestral DDPM step with a learned variance: `model_variance` holds the model's variance output v per
/// element (learned) or its interpolation value in [−1, 1] (learned_range); the added noise at element i has
/// std posterior.learned_noise_std(type, v_i). One pass; no allocation.
template <class T, class Noise>
void apply_ddpm_learned_step(prediction_type kind, double alpha_cumprod_t, double alpha_cumprod_prev,
                             variance_type type, std::span<T> x, std::span<const T> model,
                             std::span<const T> model_variance, const x0_processing& processing,
                             std::size_t num_samples, Noise&& noise, std::size_t step_index,
                             bool add_noise = true, std::span<T> x0_out = {}, std::span<T> scratch = {}) {
  // Every check names apply_ddpm_learned_step, the function the caller called (not apply_step or ddpm_posterior_at).
  constexpr const char* fn = "apply_ddpm_learned_step";
  if (type != variance_type::learned && type != variance_type::learned_range)
    detail::throw_invalid(fn, "type", "must be learned or learned_range", detail::describe_variance_type(type));
  const std::size_t per_sample = detail::check_step_arguments<T, Noise>(fn, x, std::span<const T>(model), processing,
                                                                        num_samples, x0_out, scratch.size());
  detail::check_same_size(fn, x, model_variance.size(), "model_variance.size()");
  detail::check_noise_covers(fn, noise, num_samples, per_sample);
  const ddpm_posterior p =
      detail::with_context("skipstep::apply_ddpm_learned_step", [&] { return ddpm_posterior_at(alpha_cumprod_t, alpha_cumprod_prev); });
  const affine_step c = detail::with_context("skipstep::apply_ddpm_learned_step", [&] {
    return ddpm_step(kind, alpha_cumprod_t, alpha_cumprod_prev, type, add_noise);
  });
  if constexpr (std::is_same_v<std::remove_cvref_t<Noise>, no_noise>) {
    apply_step(c, x, model, processing, num_samples, no_noise{}, step_index, x0_out, scratch);
  } else {
    auto scaled = [&](std::span<T> out, noise_position at) {
      detail::draw_noise<T>(noise, out, at);
      const std::size_t base =
          static_cast<std::size_t>(at.sample) * per_sample + static_cast<std::size_t>(at.first_element);
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] =
            static_cast<T>(out[i] * p.learned_noise_std(type, static_cast<double>(model_variance[base + i])));
    };
    apply_step(c, x, model, processing, num_samples, scaled, step_index, x0_out, scratch);
  }
}

}  // namespace skipstep
