/// @file
/// The DDIM generalized step (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12) as coefficients of
/// the shared affine kernel. Covers sampling (ā_prev > ā_t), inversion (ā_prev < ā_t) and every prediction type.
#pragma once

#include <algorithm>
#include <cmath>

#include "skipstep/detail/error.hpp"
#include "skipstep/prediction.hpp"
#include "skipstep/step/affine_step.hpp"
#include "skipstep/step/sigma.hpp"

namespace skipstep {

/// DDIM step from level ā_t to ā_prev (Song et al. 2021, eq. 12; diffusers DDIMScheduler.step):
///   x_prev = √ā_prev·x̂0 + √(1 − ā_prev − σ²)·ε̂ + σ_z·z,
/// with x̂0, ε̂ from the prediction type (prediction_coefficients_at) and σ, σ_z from the sigma policy. The radicand
/// is clamped at 0 against rounding only: a σ with σ² > 1 − ā_prev is rejected by the policy check. With
/// use_clipped_model_output, ε̂ = (x − √ā_t·x̂0)/√(1 − ā_t). σ must be valid (detail::check_sigma_choice): a NaN,
/// negative or too large σ or noise std throws std::domain_error naming ddim_step. The same formula with ā_prev < ā_t and σ = 0 is the
/// DDIM inversion step (Song et al. 2021 §4.3; diffusers DDIMInverseScheduler.step).
[[nodiscard]] inline affine_step ddim_step(prediction_type kind, double alpha_cumprod_t, double alpha_cumprod_prev,
                                           sigma_choice sigma = {}) {
  constexpr const char* fn = "ddim_step";
  if (!(alpha_cumprod_prev >= 0.0 && alpha_cumprod_prev <= 1.0))
    detail::throw_invalid(fn, "alpha_cumprod_prev", "must be in [0, 1]", alpha_cumprod_prev);
  affine_step c;
  c.pred = detail::prediction_coefficients_for(fn, "alpha_cumprod_t", kind, alpha_cumprod_t);
  detail::check_sigma_choice(fn, "sigma.sigma", "sigma.noise_std", sigma, alpha_cumprod_prev);
  c.x0_weight = std::sqrt(alpha_cumprod_prev);
  c.eps_weight = std::sqrt(std::max(0.0, 1.0 - alpha_cumprod_prev - sigma.sigma * sigma.sigma));
  c.noise_std = sigma.noise_std;
  if (alpha_cumprod_t < 1.0) {
    const double sb = std::sqrt(1.0 - alpha_cumprod_t);
    c.reeps_from_sample = 1.0 / sb;
    c.reeps_from_x0 = -std::sqrt(alpha_cumprod_t) / sb;
  } else {
    c.reeps_from_sample = c.pred.eps_from_sample;  // ā_t = 1: no noise to re-derive; keep the model's ε̂ map.
    c.reeps_from_x0 = 0.0;
  }
  return c;
}

}  // namespace skipstep
